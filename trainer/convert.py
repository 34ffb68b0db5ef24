"""Convert CelebAMask-HQ (either layout) into the LaPa layout with LaPa's 11 classes."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.data.celebamask import CelebAMaskDataset
from trainer.data.imageio import atomic_write_bytes, write_image, write_label
from trainer.data.lapa import UNFINISHED_CONVERSION
from trainer.errors import DatasetError, ImageReadError, LabelMapError

__all__ = [
    "ConvertIncomplete",
    "convert_celebamask_to_lapa",
    "split_names",
    "SKIPPED_NAME",
    "UNFINISHED_NAME",
]

log = logging.getLogger(__name__)

_JPEG_MAGIC = b"\xff\xd8\xff"
# Written into the destination when pairs were skipped, so the dataset itself says it is short.
SKIPPED_NAME = "convert_skipped.txt"
# Written into the destination before the first pair and removed when the run ends, so a
# conversion killed midway leaves a folder that every reader refuses (``LapaDataset``).
UNFINISHED_NAME = UNFINISHED_CONVERSION


class ConvertIncomplete(DatasetError):
    """Some pairs could not be converted; the others were written.

    Attributes:
        counts: split name -> pairs written.
        skipped: one "file: reason" line per pair left out.
    """

    def __init__(self, message: str, counts: dict[str, int], skipped: list[str]) -> None:
        super().__init__(message)
        self.counts = counts
        self.skipped = skipped


def split_names(
    names: list[str], split: str, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Assign names to splits at random (seeded); ``split`` gets what val and test do not.

    Returns:
        split name -> sorted names; "val" / "test" appear only when their fraction is > 0.
    """
    for what, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{what} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("val_fraction + test_fraction must leave some images for the main split")
    taken = {"val"} if val_fraction > 0 else set()
    taken |= {"test"} if test_fraction > 0 else set()
    if split in taken:
        raise ValueError(f"split {split!r} is also a held-out split; name the main split otherwise")
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    n_val = round(val_fraction * len(names))
    n_test = round(test_fraction * len(names))
    out: dict[str, list[str]] = {split: sorted(shuffled[n_val + n_test :])}
    if val_fraction > 0:
        out["val"] = sorted(shuffled[:n_val])
    if test_fraction > 0:
        out["test"] = sorted(shuffled[n_val : n_val + n_test])
    return out


def _stored_size(data: bytes, path: Path) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception as exc:  # a reader already decoded it; this only guards the header
        raise ImageReadError(f"{path}: unreadable image header ({exc})") from None


def _refuse_a_second_split(dst: Path, split_of: dict[str, str]) -> None:
    """Raise before anything is written when a face of this conversion already sits in another
    split of ``dst`` (an earlier conversion with another seed or other fractions): it would be
    in two splits, trained on and validated on."""
    if not dst.is_dir():
        return
    for folder in sorted(
        p for p in dst.iterdir() if (p / "images").is_dir() or (p / "labels").is_dir()
    ):
        for kind in ("images", "labels"):
            if not (folder / kind).is_dir():
                continue
            for path in sorted((folder / kind).iterdir()):
                split = split_of.get(path.stem)
                if split is not None and split != folder.name:
                    raise DatasetError(
                        f"{path}: {path.stem} is already in split {folder.name!r} of {dst}, and "
                        f"this conversion puts it in {split!r}, so it would be in both (an "
                        "earlier conversion with another --seed or other fractions?); convert "
                        "into an empty folder, or remove the earlier one first"
                    )


def convert_celebamask_to_lapa(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    split: str = "train",
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write a CelebAMask-HQ folder as ``dst/{split}/{images,labels}`` in LaPa classes.

    Labels are mapped with ``celebamask_to_lapa`` (left/right swapped, ears to skin) and written
    as 8-bit 'L' PNGs. A JPEG whose pixels are used as they are is copied byte for byte (no
    re-compression); any other image, or one resized to its 512-px masks (official per-part
    layout), is encoded as JPEG at quality 95. Every file is written atomically.

    Args:
        src: CelebAMask-HQ folder in the merged or the per-part layout.
        dst: LaPa dataset root to write into (created if missing; same-named files replaced).
        split: split that receives the images not held out.
        val_fraction: share of the images written to ``val`` (seeded random choice).
        test_fraction: share of the images written to ``test``.
        seed: seed of the random split.
        progress: called as ``progress(done, total)`` after each image.

    A pair whose image or label cannot be read or is inconsistent is skipped with one warning
    line and the rest are converted; the run then ends with :class:`ConvertIncomplete` naming
    the skipped pairs, which are also listed in ``dst/convert_skipped.txt`` (removed by a run
    that converts everything). While it runs, ``dst/convert_unfinished.txt`` marks the folder
    as half written: a run that is killed leaves it, and ``LapaDataset`` refuses such a folder.

    Returns:
        split name -> number of pairs written.

    Raises:
        ConvertIncomplete: some pairs were skipped (its ``counts`` say what was written).
        LabelMapError: an image has no label (raised before anything is written).
        DatasetError: ``src`` is in neither CelebAMask-HQ layout, or a face of it is already in
            another split of ``dst`` (raised before anything is written).
    """
    dataset = CelebAMaskDataset(src, label_set="lapa", require_labels=True)
    dst = Path(dst)
    assignment = split_names(dataset.names, split, val_fraction, test_fraction, seed)
    split_of = {name: s for s, names in assignment.items() for name in names}
    _refuse_a_second_split(dst, split_of)
    counts = {s: 0 for s in assignment}
    skipped: list[str] = []
    unfinished = dst / UNFINISHED_NAME
    atomic_write_bytes(
        unfinished,
        f"a conversion from {Path(src).resolve()} into this folder started and has not finished; "
        "run `faceparse convert` again\n".encode(),
    )
    for i in range(len(dataset)):
        try:
            sample = dataset[i]  # decodes and checks the image and its label
        except (ImageReadError, LabelMapError) as exc:
            log.warning("skipping %s", exc)
            skipped.append(str(exc))
            continue
        assert sample.label is not None
        out = dst / split_of[sample.name]
        data = sample.image_path.read_bytes()
        h, w = sample.image.shape[:2]
        image_path = out / "images" / f"{sample.name}.jpg"
        if data.startswith(_JPEG_MAGIC) and _stored_size(data, sample.image_path) == (w, h):
            atomic_write_bytes(image_path, data)
        else:
            write_image(image_path, sample.image, quality=95)
        write_label(out / "labels" / f"{sample.name}.png", sample.label)
        counts[split_of[sample.name]] += 1
        if progress is not None:
            progress(i + 1, len(dataset))
    listing = dst / SKIPPED_NAME
    if not skipped:
        listing.unlink(missing_ok=True)
        unfinished.unlink()
        return counts
    atomic_write_bytes(listing, "".join(line + "\n" for line in skipped).encode("utf-8"))
    unfinished.unlink()
    shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
    raise ConvertIncomplete(
        f"{len(skipped)} of {len(dataset)} pairs skipped, {sum(counts.values())} written to "
        f"{dst}: {shown} (all listed in {listing}); fix or remove them and convert again",
        counts,
        skipped,
    )
