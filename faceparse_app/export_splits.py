"""The names and splits of a LaPa export: a flat, safe name per photo, and the seeded split that
keeps a photo exported before in its split (so a model trained on one export's train set is
never tested on its own images), keyed by the photo whether it is exported whole or per face."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceparse_app.export_files import MANIFEST_NAME, NAMES_CSV, NO_IMAGE_SPLITS, SPLITS, read_names

# Letters and digits of any script stay; separators, punctuation and controls become '_'.
_UNSAFE = re.compile(r"[^\w.-]+")


def export_name(relpath: str) -> str:
    """A flat, file-system-safe name for an image relpath ('a/b c.png' -> 'a__b_c').

    Unicode letters and digits are kept (NFC): 'ünï 顔.jpg' -> 'ünï_顔'.
    """
    relpath = unicodedata.normalize("NFC", relpath)
    stem = relpath.rsplit(".", 1)[0] if "." in relpath.rsplit("/", 1)[-1] else relpath
    parts = [_UNSAFE.sub("_", p).strip("._") for p in stem.split("/")]
    return "__".join(p for p in parts if p) or "image"


def unique_names(relpaths: Sequence[str]) -> list[str]:
    """export_name of each relpath, made unique (case-insensitively) with -2, -3, ..."""
    taken: set[str] = set()
    names = []
    for relpath in relpaths:
        base = export_name(relpath)
        name, k = base, 2
        while name.casefold() in taken:
            name, k = f"{base}-{k}", k + 1
        taken.add(name.casefold())
        names.append(name)
    return names


def split_of(
    n: int, val_fraction: float, test_fraction: float, seed: int, kept: Sequence[str | None] = ()
) -> list[str]:
    """The split of each of n items (in their given order), drawn with a seeded permutation.

    ``kept[i]``, where given, is item i's split in an earlier export: it stays there (a model
    trained on that export's train set is never tested on its own images), and only the other
    items are drawn, to bring each split as close to its share as the kept ones allow.
    """
    if not (0.0 <= val_fraction <= 1.0 and 0.0 <= test_fraction <= 1.0):
        raise ValueError("val_fraction and test_fraction must lie in [0, 1]")
    if val_fraction + test_fraction > 1.0:
        raise ValueError("val_fraction + test_fraction must not exceed 1")
    n_test = int(round(n * test_fraction))
    n_val = min(int(round(n * val_fraction)), n - n_test)
    split = [s if s in SPLITS else None for s in [*kept, *[None] * (n - len(kept))]]
    n_test = max(0, n_test - split.count("test"))
    n_val = max(0, n_val - split.count("val"))
    fresh = [i for i, s in enumerate(split) if s is None]
    order = np.random.default_rng(seed).permutation(len(fresh))
    for rank, j in enumerate(order):
        split[fresh[j]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return [str(s) for s in split]


def earlier_splits(out: Path, previous: dict[str, str | None], settings: dict) -> dict[str, str]:
    """Original relpath -> split in the earlier export in out, when it drew its split with the
    same seed and fractions (or did not record them: an export from before they were kept):
    those of names.csv, and those of photos it drew but gave no image (per face: no face)."""
    if NAMES_CSV not in previous:
        return {}
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
        recorded, no_image = manifest.get("split"), manifest.get(NO_IMAGE_SPLITS) or {}
    except (OSError, ValueError, AttributeError):
        return {}
    if recorded not in (None, settings):
        return {}
    kept = {str(k): v for k, v in no_image.items() if v in SPLITS} if isinstance(no_image, dict) else {}
    return {**kept, **read_names(out / NAMES_CSV)}
