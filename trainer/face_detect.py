"""Face finders: a photo in, every face in it out (:class:`trainer.faces.Face`), offline.

A finder is any callable ``finder(image) -> list[Face]`` with a ``name``. The registry maps
names to factories; :func:`get_finder` builds one once per process and caches it.

- ``whole-image``: the whole image is one face (an aligned crop); what ``--framing whole``
  means, as a finder, and what the tests use for their synthetic faces.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from trainer.errors import FaceParseError
from trainer.faces import Face

FaceFinder = Callable[[np.ndarray], list[Face]]


class FinderError(FaceParseError):
    """A face finder is unknown or cannot run here; the message says what to install."""


class WholeImageFinder:
    """Every image is one face, framed edge to edge (an aligned face crop)."""

    name = "whole-image"

    def __call__(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        return [Face(box=(0.0, 0.0, float(w), float(h)), box_framing=(0.5, 0.5, 1.0))]


FINDERS: dict[str, Callable[[], FaceFinder]] = {
    "whole-image": WholeImageFinder,
}
DEFAULT_FINDER = "whole-image"


@functools.cache
def get_finder(name: str | None = None) -> FaceFinder:
    """The named finder (default :data:`DEFAULT_FINDER`), built once per process.

    Raises:
        FinderError: unknown, or its package is missing.
    """
    name = name or DEFAULT_FINDER
    try:
        factory = FINDERS[name]
    except KeyError:
        raise FinderError(f"unknown face finder {name!r}; choose one of {sorted(FINDERS)}") from None
    return factory()
