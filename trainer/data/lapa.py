"""The LaPa dataset layout: ``{root}/{split}/{images,labels,landmarks}``.

Images may have any extension of ``IMAGE_EXTENSIONS``; the label of ``images/<stem>.<ext>`` is
``labels/<stem>.png`` (8-bit class indices, LaPa's 11 classes) and its optional landmarks are
``landmarks/<stem>.txt`` (LaPa's format: a first line ``106``, then one ``x y`` pair a line).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from trainer.data.folders import images_by_stem, refuse_labels_without_images
from trainer.data.imageio import read_image, read_label
from trainer.data.sample import NamedSamples, Sample
from trainer.errors import DatasetError, LabelMapError
from trainer.labels import LAPA, LabelSet

# Left in a dataset folder by a ``faceparse convert`` that has not finished (killed midway).
UNFINISHED_CONVERSION = "convert_unfinished.txt"

__all__ = ["LapaDataset", "Sample", "read_landmarks"]

log = logging.getLogger(__name__)

_LAYOUT_HINT = (
    "expected the LaPa layout {root}/{split}/images/ with labels/<stem>.png "
    "(and optionally landmarks/<stem>.txt) beside it"
)


def read_landmarks(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a LaPa landmark file.

    Accepts the LaPa format (a count line, then one ``x y`` pair a line), the same numbers all on
    one line, or bare ``x y`` pairs without the count.

    Returns:
        (N, 2) float32 array of (x, y) pixel coordinates.

    Raises:
        DatasetError: the file cannot be read or its numbers do not form (x, y) pairs.
    """
    path = Path(path)
    try:
        values = [float(tok) for tok in path.read_text(encoding="utf-8").replace(",", " ").split()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable landmark file ({exc})") from None
    if values and len(values) % 2 == 1:
        count = values[0]
        # A leading count is only trusted when it matches the pairs that follow it.
        if count.is_integer() and 2 * int(count) == len(values) - 1:
            values = values[1:]
        else:
            raise DatasetError(
                f"{path}: {len(values)} numbers do not form a count line followed by x y pairs"
            )
    if not values:
        raise DatasetError(f"{path}: empty landmark file")
    return np.asarray(values, dtype=np.float32).reshape(-1, 2)


class LapaDataset(NamedSamples):
    """One split of a LaPa-layout dataset, read lazily.

    Args:
        root: the dataset folder holding ``train/``, ``val/``, ``test/``.
        split: which split folder to read.
        require_labels: when True, every image must have ``labels/<stem>.png``.

    Raises:
        DatasetError: the split or its ``images/`` folder is missing, two images share a stem,
            or an interrupted ``faceparse convert`` left the folder half written.
        LabelMapError: an image has no label, or a label no image, while labels are required
            (raised here, at scan time).

    ``dataset[i]`` is a :class:`Sample` whose label is (H, W) uint8 with values 0..10, checked to
    match the image's size.
    """

    label_set: LabelSet = LAPA

    def __init__(
        self, root: str | os.PathLike[str], split: str = "train", require_labels: bool = True
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.require_labels = require_labels
        split_dir = self.root / split
        if (self.root / UNFINISHED_CONVERSION).is_file():
            raise DatasetError(
                f"{self.root}: a conversion into this folder was interrupted and it is half "
                f"written (see {UNFINISHED_CONVERSION}); run `faceparse convert` again"
            )
        images_dir = split_dir / "images"
        if not images_dir.is_dir():
            missing = split_dir if not split_dir.is_dir() else images_dir
            raise DatasetError(f"{missing}: folder not found; {_LAYOUT_HINT}")
        self.images_dir = images_dir
        self.labels_dir = split_dir / "labels"
        self.landmarks_dir = split_dir / "landmarks"

        by_stem = images_by_stem(images_dir)
        if require_labels:
            refuse_labels_without_images(self.labels_dir, images_dir, by_stem)

        self.names: list[str] = list(by_stem)
        self.image_paths: list[Path] = list(by_stem.values())
        self.label_paths: list[Path | None] = []
        for stem, image_path in by_stem.items():
            label_path = self.labels_dir / f"{stem}.png"
            if label_path.is_file():
                self.label_paths.append(label_path)
            elif require_labels:
                # finetune, evaluate and convert need a label for every image; Python callers
                # that want the unlabeled ones too pass require_labels=False.
                raise LabelMapError(
                    f"{image_path}: no label; expected {label_path}; label it or move it out "
                    f"of {image_path.parent}"
                )
            else:
                self.label_paths.append(None)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> Sample:
        image_path = self.image_paths[index]
        label_path = self.label_paths[index]
        image = read_image(image_path)
        label = None
        if label_path is not None:
            label = read_label(
                label_path, num_classes=LAPA.num_classes, expected_size=image.shape[:2]
            )
        landmarks_path = self.landmarks_dir / f"{self.names[index]}.txt"
        landmarks = read_landmarks(landmarks_path) if landmarks_path.is_file() else None
        return Sample(
            image=image,
            label=label,
            name=self.names[index],
            image_path=image_path,
            label_path=label_path,
            landmarks=landmarks,
        )

    def __repr__(self) -> str:
        return f"LapaDataset({str(self.root)!r}, split={self.split!r}, {len(self)} images)"
