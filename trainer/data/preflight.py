"""Read a fine-tune's labeled faces once before its first step, so that bad data stops the run
in seconds rather than when a batch or the first validation reaches it, an epoch in.

The readers are lazy: a truncated photo or a label of the wrong size is otherwise found only
when it is drawn, and the steps trained before it are lost (fine-tuning does not resume).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from trainer.data.sample import NamedSamples
from trainer.errors import ImageReadError

log = logging.getLogger(__name__)

READERS = 2  # decoding threads: the image codecs release the GIL


def check_labeled_faces(
    train: NamedSamples | None, val: NamedSamples | None, val_limit: int | None = None
) -> None:
    """Read every training sample and every validation label that the run will use.

    A training photo must be readable (the loader cannot skip one); a validation photo that
    cannot be read is left to the validation, which skips it with a warning as ``evaluate``
    does, but its label, when the photo reads, must be right.

    Args:
        train: the training samples (None: already read, e.g. by the face crops).
        val: the validation samples, or None.
        val_limit: only the first ``val_limit`` validation samples are used.

    Raises:
        ImageReadError: a training photo is unreadable (the message names the file).
        LabelMapError, DatasetError: a label is missing, unreadable, of the wrong size or holds
            a class out of range (the first in the samples' order).
    """
    count = (len(train) if train is not None else 0) + (
        0 if val is None else min(len(val), val_limit if val_limit is not None else len(val))
    )
    if count:
        log.info("reading the %d labeled faces before training", count)
    if train is not None:
        for _ in _read_all(train, len(train), skip_unreadable=False):
            pass
    if val is not None:
        limit = len(val) if val_limit is None else min(val_limit, len(val))
        for _ in _read_all(val, limit, skip_unreadable=True):
            pass


def _read_all(samples: NamedSamples, count: int, skip_unreadable: bool) -> Iterator[None]:
    """Read ``samples[:count]`` on a few threads; the first error in order is raised."""

    def read(i: int) -> None:
        try:
            samples[i]
        except ImageReadError:
            if not skip_unreadable:
                raise

    with ThreadPoolExecutor(READERS, thread_name_prefix="faceparse-check") as pool:
        yield from pool.map(read, range(count))
