"""One labeled (or unlabeled) face, and the one protocol for sequences of named faces.

Every reader of this package (``LapaDataset``, ``CelebAMaskDataset``), the face crops of the
photos (``FaceCropSamples``), the desktop app's project faces and every view of them is a
:class:`NamedSamples`: a sequence of :class:`Sample` whose ``names`` are known without reading a
file, so a subset can be chosen, recorded and looked up by name before anything is loaded.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Sample:
    """A face image with its label map and optional landmarks.

    Attributes:
        image: (H, W, 3) uint8 RGB, EXIF orientation applied.
        label: (H, W) uint8 class indices of the reader's label set, or None when unlabeled.
        name: the sample's id (file stem), unique within its dataset.
        image_path: the image file.
        label_path: the label file (for the per-part CelebAMask-HQ layout, the folder of parts),
            or None when unlabeled.
        landmarks: (N, 2) float32 (x, y) pixel coordinates, or None when not available.
    """

    image: np.ndarray
    label: np.ndarray | None
    name: str
    image_path: Path
    label_path: Path | None
    landmarks: np.ndarray | None = None


class NamedSamples(Sequence[Sample]):
    """Samples whose names are listed up front: ``names[i] == self[i].name``.

    A subclass sets ``names`` and implements ``__getitem__`` (which may read files lazily);
    ``subset`` and ``select`` give lazy views that keep the names.
    """

    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @abstractmethod
    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        """The ``index``-th sample (read on access by the lazy readers)."""

    def subset(self, indices: Iterable[int]) -> SampleSubset:
        """A lazy view of the items at ``indices``, in that order."""
        return SampleSubset(self, indices)

    def select(self, names: Iterable[str]) -> SampleSubset:
        """A lazy view of the items called ``names``, in that order.

        Raises:
            KeyError: a name is not in this sequence (the message names it).
        """
        position = {n: i for i, n in enumerate(self.names)}
        indices = []
        for name in names:
            if name not in position:
                raise KeyError(f"no sample named {name!r} among {len(self.names)}")
            indices.append(position[name])
        return SampleSubset(self, indices)


class SampleSubset(NamedSamples):
    """A lazy view of some items of a :class:`NamedSamples` (nothing loads to list them).

    Args:
        source: the samples viewed.
        indices: positions in ``source`` of the items kept, in order.
    """

    def __init__(self, source: NamedSamples, indices: Iterable[int]) -> None:
        self.source = source
        self.indices = list(indices)
        self.names = [source.names[i] for i in self.indices]

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        return self.source[self.indices[index]]


class SampleList(NamedSamples):
    """Samples already in memory, named by their own ``name``.

    Raises:
        TypeError: an item is not a :class:`Sample`.
    """

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.samples = list(samples)
        for i, sample in enumerate(self.samples):
            if not isinstance(sample, Sample):
                raise TypeError(
                    f"item {i} is a {type(sample).__name__}, not a trainer.data.sample.Sample; "
                    "wrap images and labels as Sample(image, label, name, image_path, label_path)"
                )
        self.names = [s.name for s in self.samples]

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        return self.samples[index]


def as_named(samples: Sequence[Sample]) -> NamedSamples:
    """``samples`` as :class:`NamedSamples`: itself if it is one, else a :class:`SampleList`
    (which reads every item once to learn its name).

    Raises:
        TypeError: an item is not a :class:`Sample`.
    """
    return samples if isinstance(samples, NamedSamples) else SampleList(samples)
