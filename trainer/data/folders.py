"""A plain folder of unlabeled images, scanned recursively."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from trainer.data.imageio import is_image_path
from trainer.errors import DatasetError, LabelMapError

log = logging.getLogger(__name__)

# Files a photo folder commonly holds beside its images; not worth a warning each.
_QUIET = {".ds_store", "thumbs.db", "desktop.ini"}
# Notes and credits that sit beside photos (the demo project's SOURCES.md, a team's README):
# skipped without a warning line each time the folder is read.
_QUIET_SUFFIXES = {".md", ".txt", ".csv", ".json"}


def list_images(
    roots: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], warn: bool = True
) -> list[Path]:
    """Every image file under one or more folders, recursively, sorted by path.

    Hidden folders (".faceparse", ".git") are skipped. A non-image file gets one warning line
    (unless ``warn`` is False: a second scan of the same folders), never an exception (notes
    and credits, ``.md .txt .csv .json``, none).

    Raises:
        DatasetError: a root is not a folder.
    """
    if isinstance(roots, str | os.PathLike):
        roots = [roots]
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: not a folder of images")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith("."):
                    continue
                if is_image_path(path):
                    found.append(path)
                elif (
                    warn
                    and name.lower() not in _QUIET
                    and path.suffix.lower() not in _QUIET_SUFFIXES
                ):
                    log.warning("skipping %s: not an image file", path)
    return sorted(found)


def images_by_stem(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """stem -> image file of one folder (not recursive), sorted by name.

    Hidden files are skipped and non-images get one warning line each.

    Raises:
        DatasetError: two images share a stem (``a.jpg`` and ``a.png``), so a label named after
            the stem would belong to both.
    """
    found: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        path = Path(entry.path)
        if not is_image_path(path):
            log.warning("skipping %s: not an image file", path)
            continue
        if path.stem in found:
            raise DatasetError(
                f"{found[path.stem]} and {path.name} share the stem {path.stem!r}, so a label "
                f"named {path.stem}.png would belong to both; rename one of them"
            )
        found[path.stem] = path
    return found


def refuse_labels_without_images(labels_dir: Path, images_dir: Path, stems: Iterable[str]) -> None:
    """Raise when ``labels_dir`` holds a ``<stem>.png`` label whose image is not among ``stems``
    (the images of ``images_dir``): left out silently, a run would train or score on fewer
    faces than its labels.

    Raises:
        LabelMapError: naming the first such label and how many there are.
    """
    if not labels_dir.is_dir():
        return
    known = set(stems)
    orphans = sorted(
        entry.path
        for entry in os.scandir(labels_dir)
        if entry.name.lower().endswith(".png")
        and not entry.name.startswith(".")
        and Path(entry.name).stem not in known
    )
    if orphans:
        first = Path(orphans[0])
        more = f" ({len(orphans) - 1} more like it)" if len(orphans) > 1 else ""
        raise LabelMapError(
            f"{first}: a label without an image{more}; expected {images_dir / first.stem}.<jpg, "
            f"png, ...>; add the image or move the label out of {labels_dir}"
        )
