"""One labeled (or unlabeled) face as every dataset reader of this package returns it."""

from __future__ import annotations

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
