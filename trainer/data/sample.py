"""One labeled (or unlabeled) face as every dataset reader of this package returns it."""

from __future__ import annotations

from collections.abc import Sequence
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


class SampleSubset(Sequence[Sample]):
    """A lazy view of some items of a reader, keeping their names (nothing loads to list them).

    Args:
        source: any sequence of Samples (a dataset reader).
        indices: positions in ``source`` of the items kept, in order.
        names: the kept items' names, same order as ``indices``.
    """

    def __init__(self, source: Sequence[Sample], indices: Sequence[int], names: Sequence[str]):
        self.source = source
        self.indices = list(indices)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        return self.source[self.indices[i]]
