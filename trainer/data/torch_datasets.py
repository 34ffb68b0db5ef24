"""torch Datasets over the readers: fixed-size tensors, repeatable augmentation.

Each item's random numbers come from ``np.random.default_rng((seed, epoch, index))``, so an item
looks the same whichever DataLoader worker builds it and whatever order the items are drawn in;
call ``set_epoch`` at the start of every epoch to get fresh augmentations.

Persistent DataLoader workers keep the copy of the dataset they started with and never see a later
``set_epoch``; wrap the sampler in :class:`EpochSampler` instead, which hands each index over as an
``(epoch, index)`` pair, so the epoch travels with the index to whichever worker builds the item.
That keeps the workers alive across epochs (a labeled subset of 10 faces is one step per epoch,
and re-forking every worker each step costs more than the step on a GPU) with the same items.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from trainer.data.imageio import read_image
from trainer.data.sample import Sample
from trainer.data.transforms import TrainAugment, label_to_tensor, resize_square, to_tensor
from trainer.errors import DatasetError, ImageReadError, LabelMapError

__all__ = ["EpochSampler", "ParsingDataset", "UnlabeledDataset", "worker_context"]

Item = int | tuple[int, int]


def worker_context(num_workers: int) -> str | None:
    """Start method for DataLoader workers: "forkserver" where the platform has one.

    A plain fork copies the locks other threads hold at that moment (tqdm's monitor, a GUI, the
    trainer's own worker thread in the app) into the worker, which can then wait on one forever:
    seen here as a worker that never delivered a batch. The forkserver forks from a clean,
    single-threaded server process. None (the platform default) without workers or a forkserver.
    """
    if num_workers <= 0 or "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    return "forkserver"


class _EpochSeeded:
    seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentations the next items get (call once per epoch)."""
        self.epoch = int(epoch)

    def _split(self, item: Item) -> tuple[int, int]:
        """(epoch, position) of an item: a plain position uses the epoch set by ``set_epoch``."""
        if isinstance(item, tuple):
            return int(item[0]), int(item[1])
        return self.epoch, int(item)

    def _rng(self, index: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, epoch, int(index)))


class EpochSampler(Sampler[tuple[int, int]]):
    """Tags every index of ``base`` with the current epoch: yields ``(epoch, index)``.

    Args:
        base: the sampler whose order is kept (RandomSampler, DistributedSampler, ...).

    ``set_epoch`` sets the tag and is passed on to ``base`` when it has one (a
    DistributedSampler reshuffles by epoch). Use with the datasets of this module.
    """

    def __init__(self, base: Sampler[int]) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]


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

    def __getitem__(self, item: Item) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = self._split(item)
        index = self.indices[i]
        sample = self.source[index]
        if sample.label is None:
            raise LabelMapError(f"{sample.image_path}: no label, but ParsingDataset needs one")
        if self.augment is None:
            image, label = resize_square(sample.image, self.size, sample.label)
        else:
            # Seeded by the source index, so a face keeps its augmentations in any subset.
            image, label = self.augment(sample.image, sample.label, self._rng(index, epoch))
        assert label is not None
        return to_tensor(image), label_to_tensor(label)


class UnlabeledDataset(_EpochSeeded, Dataset):
    """Unlabeled images as (3, size, size) float32 tensors in [0, 1] (stage-1 pretraining).

    A photo that cannot be read (``ImageReadError``: damaged, not an image, over the pixel limit)
    does not stop a run: the next readable photo in the list stands in for it, and
    :meth:`read` says which one was unreadable, so the caller can warn once and count it.

    Args:
        paths: image files (e.g. from ``trainer.data.folders.list_images``).
        size: output side in pixels; images are resized to size×size.
        augment_flip: flip half of the images horizontally (when ``augment`` is None).
        seed: base seed of the flips and augmentations.
        augment: the fine-tune's geometry and colour augmentation (``TrainAugment`` without a
            label set) in place of the plain resize and flip.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        size: int,
        augment_flip: bool = True,
        seed: int = 0,
        augment: TrainAugment | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.size = size
        self.augment_flip = augment_flip
        self.seed = int(seed)
        self.epoch = 0
        self.augment = augment
        if augment is not None and augment.size != size:
            raise ValueError(f"augment produces {augment.size} px but the dataset size is {size}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: Item) -> torch.Tensor:
        return self.read(item)[0]

    def read(self, item: Item) -> tuple[torch.Tensor, int]:
        """An item and the position of the unreadable photo it replaces.

        Returns:
            (image (3, size, size) float32, -1 when the item's own photo was read, else the
            item's position, whose photo could not be read and was replaced by the next
            readable one).

        Raises:
            DatasetError: no photo in the list can be read.
        """
        epoch, index = self._split(item)
        first: ImageReadError | None = None
        for offset in range(len(self.paths)):
            position = (index + offset) % len(self.paths)
            try:
                return self._load(position, epoch), (index if offset else -1)
            except ImageReadError as exc:
                first = first or exc
        raise self._none_readable(first)

    def check_readable(self) -> None:
        """Raise DatasetError unless at least one photo can be read (reads until one does)."""
        first: ImageReadError | None = None
        for path in self.paths:
            try:
                read_image(path)
                return
            except ImageReadError as exc:
                first = first or exc
        raise self._none_readable(first)

    def _none_readable(self, first: ImageReadError | None) -> DatasetError:
        folders = sorted({str(p.parent) for p in self.paths})
        where = ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")
        return DatasetError(
            f"none of the {len(self.paths)} photos under {where} could be read "
            f"(the first: {first}); give a folder of image files"
        )

    def _load(self, index: int, epoch: int) -> torch.Tensor:
        if self.augment is not None:
            image, _ = self.augment(read_image(self.paths[index]), None, self._rng(index, epoch))
            return to_tensor(image)
        image, _ = resize_square(read_image(self.paths[index]), self.size)
        if self.augment_flip and self._rng(index, epoch).random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
        return to_tensor(image)
