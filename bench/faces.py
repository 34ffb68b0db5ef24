"""The study's faces: CelebAMask-HQ dev in LaPa classes with mirrored sides fixed, the seeded
val / pool split, and the sets of faces joined into one.

The data stage (``prepare_data``) writes ``<out>/data/train`` (the 600-face pool) and
``<out>/data/val`` (100 faces) once and leaves a done marker. Masks whose eyes and brows are
already on the viewer's side (mirrored faces whose left/right classes were never swapped; 50 of
700) are detected by the mean x of each left/right pair and fixed by swapping LaPa 2↔3, 4↔5;
masks with only one side visible have no evidence either way and are kept as converted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import load_done, mark_done, require
from bench.recipes import StudySettings
from trainer.data.celebamask import CelebAMaskDataset
from trainer.data.imageio import atomic_write_bytes, write_label
from trainer.data.lapa import LapaDataset
from trainer.data.sample import NamedSamples, Sample
from trainer.labels import LAPA

log = logging.getLogger("study")


class Joined(NamedSamples):
    """Several named sample sequences read as one (e.g. a LaPa train and val split)."""

    def __init__(self, *parts: NamedSamples) -> None:
        self.parts = parts
        self.names = [n for p in parts for n in p.names]

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        for part in self.parts:
            if i < len(part):
                return part[i]
            i -= len(part)
        raise IndexError(i)


def validation_faces(data: Path, limit: int | None = None) -> Sequence[Sample]:
    """The data stage's validation faces, or only the first ``limit`` of them (quick runs)."""
    val = LapaDataset(data, split="val")
    return val if limit is None else val.subset(range(min(limit, len(val))))


def side_votes(label: np.ndarray) -> list[bool]:
    """For each LaPa left/right pair present on both sides (brows 2/3, eyes 4/5): True when the
    'left' class lies right of the 'right' one, i.e. the pair is on the wrong side."""
    votes = []
    for left, right in ((2, 3), (4, 5)):
        xl = np.nonzero(label == left)[1]
        xr = np.nonzero(label == right)[1]
        if xl.size and xr.size:
            votes.append(bool(xl.mean() > xr.mean()))
    return votes


def fix_sides(label: np.ndarray) -> tuple[np.ndarray, str]:
    """Return (label, verdict): swapped LaPa 2↔3, 4↔5 when every present pair is on the wrong
    side ("fixed"), unchanged otherwise ("ok", "one-sided" or "conflict")."""
    votes = side_votes(label)
    if not votes:
        return label, "one-sided"
    if all(votes):
        return LAPA.flip_lut()[label], "fixed"
    return label, "ok" if not any(votes) else "conflict"


def prepare_data(src: Path, out: Path, settings: StudySettings) -> dict[str, Any]:
    """Convert CelebAMask-HQ dev to LaPa classes, fix swapped sides, split val / pool into
    ``<out>/data``; cached by its done marker."""
    stage_dir = out / "data"
    key = {"src": str(src), "split_seed": settings.split_seed, "val_size": settings.val_size}
    done = load_done(stage_dir, key)
    if done is not None:
        return done
    require(src, "CelebAMask-HQ dev (the study's labeled faces)")
    t0 = time.perf_counter()
    dataset = CelebAMaskDataset(src, label_set="lapa")
    names = sorted(dataset.names)
    order = np.random.default_rng(settings.split_seed).permutation(len(names))
    val = {names[i] for i in order[: settings.val_size]}
    position = {n: i for i, n in enumerate(dataset.names)}
    verdicts: dict[str, list[str]] = {"fixed": [], "one-sided": [], "conflict": []}
    for name in names:
        sample = dataset[position[name]]
        assert sample.label is not None
        label, verdict = fix_sides(sample.label)
        if verdict in verdicts:
            verdicts[verdict].append(name)
        split = "val" if name in val else "train"
        data = sample.image_path.read_bytes()
        suffix = sample.image_path.suffix.lower()
        atomic_write_bytes(stage_dir / split / "images" / f"{name}{suffix}", data)
        write_label(stage_dir / split / "labels" / f"{name}.png", label)
    result = {
        "pool": len(names) - len(val),
        "val": len(val),
        "fixed_sides": verdicts["fixed"],
        "one_sided": verdicts["one-sided"],
        "conflict": verdicts["conflict"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info(
        "data: %d pool / %d val; %d masks had eyes/brows on the wrong side (fixed), %d one-sided",
        result["pool"],
        result["val"],
        len(verdicts["fixed"]),
        len(verdicts["one-sided"]),
    )
    return mark_done(stage_dir, key, result)
