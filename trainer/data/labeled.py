"""Opening a labeled dataset folder: LaPa's layout, or CelebAMask-HQ read in LaPa's classes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from trainer.data.sample import NamedSamples
from trainer.errors import DatasetError, FaceParseError

log = logging.getLogger(__name__)


def detect_format(root: str | os.PathLike[str]) -> str:
    """"lapa" or "celebamask" from a dataset folder's contents.

    Raises:
        DatasetError: the folder is of neither layout.
    """
    root = Path(root)
    if (root / "train" / "images").is_dir():
        return "lapa"
    if any((root / d).is_dir() for d in ("masks", "CelebAMask-HQ-mask-anno", "CelebA-HQ-img")):
        return "celebamask"
    splits = sorted(d.name for d in root.iterdir() if (d / "images").is_dir()) if root.is_dir() else []
    if splits:  # a LaPa layout that holds no training split, e.g. a test set alone
        raise DatasetError(
            f"{root}: a LaPa dataset without a train split (it has {', '.join(splits)}); "
            "training reads train/images and train/labels"
        )
    _refuse_a_round_trip_folder(root)
    raise DatasetError(
        f"{root}: neither a LaPa dataset (train/images/, train/labels/) nor CelebAMask-HQ "
        "(images/ + masks/, or CelebA-HQ-img/ + CelebAMask-HQ-mask-anno/)"
    )


def _refuse_a_round_trip_folder(root: Path) -> None:
    """Name the folder to pass when ``root`` is a FaceParse Studio project (or its store) or one
    split of a LaPa tree, such as the app's export; return when it is neither.

    Raises:
        DatasetError: with the command or folder to use instead.
    """
    # A project keeps its store in .faceparse/ (the app's layout, read by path: no app import).
    project = root.parent if root.name == ".faceparse" else root
    if (project / ".faceparse" / "project.sqlite").is_file():
        raise DatasetError(
            f"{root}: a FaceParse Studio project, not a dataset: export its labels first "
            f"(`faceparse-studio export {project} OUT`, or File -> Export LaPa... in the app), "
            "then pass OUT"
        )
    if (root / "images").is_dir() and (root / "labels").is_dir():
        raise DatasetError(
            f"{root}: one split of a LaPa dataset ({root.name}/images, {root.name}/labels); "
            f"pass its parent {root.parent}"
        )


def open_split(root: str | os.PathLike[str], split: str) -> NamedSamples:
    """A LaPa split, or a CelebAMask-HQ folder (which has no splits) read in LaPa classes.

    Raises:
        FaceParseError: the folder is missing; DatasetError: the LaPa split is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FaceParseError(f"{root}: dataset folder not found")
    if not (root / split / "images").is_dir():
        _refuse_a_round_trip_folder(root)
        try:
            fmt = detect_format(root)
        except FaceParseError:
            fmt = "lapa"  # let the LaPa reader name the folder that is missing
        if fmt == "celebamask":
            from trainer.data.celebamask import CelebAMaskDataset

            dataset = CelebAMaskDataset(root, label_set="lapa")
            log.warning(
                "%s: a CelebAMask-HQ folder has no splits, so split %r does not apply: all %d "
                "images are scored (`faceparse convert --test-fraction` holds some out)",
                root, split, len(dataset),
            )  # fmt: skip
            return dataset
    from trainer.data.lapa import LapaDataset

    return LapaDataset(root, split=split)


def open_training_data(
    root: str | os.PathLike[str], data_format: str = "auto", val_split: str | None = "val"
) -> tuple[NamedSamples, NamedSamples | None]:
    """The training split and the validation split (None when there is none) of a folder.

    Args:
        root: the dataset folder.
        data_format: "lapa", "celebamask" or "auto".
        val_split: the LaPa split to validate on; None or "" for none. CelebAMask-HQ folders
            have none (convert one with ``faceparse convert --val-fraction`` to validate).

    Raises:
        DatasetError: the folder is missing or of neither layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    fmt = detect_format(root) if data_format == "auto" else data_format
    if fmt == "lapa":
        from trainer.data.lapa import LapaDataset

        train = LapaDataset(root, split="train")
        val = None
        if val_split:
            if (root / val_split / "images").is_dir():
                val = LapaDataset(root, split=val_split)
            else:
                log.warning(
                    "%s: no %s/images folder; training without validation (the best checkpoint "
                    "will be the last one)", root, val_split,
                )
        return train, val
    if fmt == "celebamask":
        from trainer.data.celebamask import CelebAMaskDataset

        log.warning(
            "%s: CelebAMask-HQ has no validation split here; training without validation. "
            "Convert it with `faceparse convert --val-fraction` to validate.", root,
        )
        return CelebAMaskDataset(root, label_set="lapa"), None
    raise DatasetError(f"unknown data format {fmt!r}; use lapa, celebamask or auto")
