"""torch Datasets over the readers: fixed-size tensors, repeatable augmentation.

Each item's random numbers come from ``np.random.default_rng((seed, epoch, index))``, so an item
looks the same whichever DataLoader worker builds it and whatever order the items are drawn in;
call ``set_epoch`` at the start of every epoch to get fresh augmentations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from trainer.data.imageio import read_image
from trainer.data.sample import Sample
from trainer.data.transforms import TrainAugment, label_to_tensor, resize_square, to_tensor
from trainer.errors import LabelMapError

__all__ = ["ParsingDataset", "UnlabeledDataset"]


class _EpochSeeded:
    seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentations the next items get (call once per epoch)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, int(index)))


class ParsingDataset(_EpochSeeded, Dataset):
    """Labeled faces as (image, label) tensors.

    Args:
        samples_source: a reader (LapaDataset, CelebAMaskDataset) or any sequence whose items are
            :class:`Sample` objects with labels.
        size: output side in pixels.
        augment: training augmentation; None gives a plain resize (evaluation).
        seed: base seed of the augmentation.
        indices: optional indices into ``samples_source`` (a labeled subset); default all.

    Items: image (3, size, size) float32 in [0, 1] and label (size, size) int64.
    """

    def __init__(
        self,
        samples_source: Sequence[Sample],
        size: int,
        augment: TrainAugment | None = None,
        seed: int = 0,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.source = samples_source
        self.size = size
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.indices = list(range(len(samples_source)) if indices is None else indices)
        if augment is not None and augment.size != size:
            raise ValueError(f"augment produces {augment.size} px but the dataset size is {size}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.indices[i]
        sample = self.source[index]
        if sample.label is None:
            raise LabelMapError(f"{sample.image_path}: no label, but ParsingDataset needs one")
        if self.augment is None:
            image, label = resize_square(sample.image, self.size, sample.label)
        else:
            # Seeded by the source index, so a face keeps its augmentations in any subset.
            image, label = self.augment(sample.image, sample.label, self._rng(index))
        assert label is not None
        return to_tensor(image), label_to_tensor(label)


class UnlabeledDataset(_EpochSeeded, Dataset):
    """Unlabeled images as (3, size, size) float32 tensors in [0, 1] (stage-1 pretraining).

    Args:
        paths: image files (e.g. from ``trainer.data.folders.list_images``).
        size: output side in pixels; images are resized to size×size.
        augment_flip: flip half of the images horizontally.
        seed: base seed of the flips.
    """

    def __init__(
        self, paths: Sequence[Path], size: int, augment_flip: bool = True, seed: int = 0
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.size = size
        self.augment_flip = augment_flip
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image, _ = resize_square(read_image(self.paths[index]), self.size)
        if self.augment_flip and self._rng(index).random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
        return to_tensor(image)
