"""Label-efficiency study on real faces (issue 5 §1): masked-SSL backbone vs scratch (vs ImageNet).

One command runs every stage; each stage leaves a ``done.json`` marker holding its result and the
settings it ran with, so a rerun skips finished stages and resumes stage-1 pretraining from its
latest periodic checkpoint. A stage whose settings changed is run again.

Stages:
  1. data: ``celebamask-hq-dev`` → LaPa classes in ``<out>/data`` (``train/`` = the 600-face pool,
     ``val/`` = 100 faces, seeded split). Masks whose eyes/brows are already on the viewer's side
     (mirrored faces whose left/right classes were never swapped; 50 of 700) are detected by the
     mean x of the eye and brow classes after conversion and *fixed* by swapping LaPa 2↔3, 4↔5;
     masks with only one side visible have no evidence either way and are kept as converted.
  2. pretrain/<recipe>: stage 1 on the pool's images + ``faces-unlabeled``; recipes ``center``
     (the paper: loss over the central region, 40 % of it masked) and ``spark`` (loss on masked
     pixels only, per-patch normalised targets, 60 % masked; ``--spark-mask-ratio`` for
     another share).
  3. finetune/<arm>_K<k>_s<seed>: one identical recipe for every initialisation (same steps,
     batch, learning rates, loss, augmentation); the labeled subset comes from
     ``select_labeled_subset`` (nested in K, the same for every arm). The run's *last* weights are
     scored on the validation set (no checkpoint selection on the set that is reported).

Results: ``<results>/study[_quick].json`` (every run, per-class scores, timings, settings) and
``study[_quick].csv``; a summary table is printed at the end.

Every arm holds its backbone for the first 100 fine-tuning steps (only the new FP decoder
trains; LP-FT), the recipe under which the 80-epoch SSL start did best on every subset probed;
one reference arm, scratch without the hold (its better recipe), runs at the first headline K.

Budget (CPU default): stage 1 = 40 epochs at 128 px over 793 faces per recipe (3,960 steps of 8,
AdamW 3e-3; a 128-px step costs ~42% of a 256-px one here, so this is ~1.6x the cost of 10 epochs
at 256 px), each fine-tune = 500 steps of 8 at 256 px, 250 at K = 5, 750 at K = 600; 19 fine-tunes,
8,500 steps (1,800 of them held: no backward pass through the backbone). On this 2-core machine
``--processes 2`` (one-thread processes side by side: the two stage-1 recipes, then two
fine-tune shards balanced by steps) takes ~50 min for stage 1 and ~1 h 50 min for the
fine-tunes (BENCHMARKS.md has the measured times).

Usage:
    .venv/bin/python bench/study.py --quick              # minutes: checks the pipeline
    .venv/bin/python bench/study.py --processes 2        # the CPU study on 2 cores
    .venv/bin/python bench/study.py --imagenet-weights mobilenet_v2.pth   # adds the ImageNet arm
    .venv/bin/python bench/study.py --pretrain-input-size 0 --pretrain-epochs 10 \
        --pretrain-lr 1e-3                  # the earlier stage 1 (10 epochs at 256 px, 1e-3)
    .venv/bin/python bench/study.py --head-only-steps 0 --finetune-steps 250 \
        --steps-for-k 25:500,50:500,100:500,600:750   # the earlier fine-tune recipe (no hold)
    .venv/bin/python bench/study.py --reuse-scratch bench/results/study.json   # another stage 1:
        # take the scratch arms (which do not depend on it) from an earlier results file
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainer.data.celebamask import CelebAMaskDataset  # noqa: E402
from trainer.data.imageio import atomic_write_bytes, write_label  # noqa: E402
from trainer.data.lapa import LapaDataset  # noqa: E402
from trainer.data.sample import Sample  # noqa: E402
from trainer.evaluate import evaluate  # noqa: E402
from trainer.finetune import FinetuneConfig, finetune_on_samples  # noqa: E402
from trainer.labels import LAPA  # noqa: E402
from trainer.models import get_preset  # noqa: E402
from trainer.predict import Predictor  # noqa: E402
from trainer.pretrain import AUGMENTS, FINAL_NAME, RECIPES, PretrainConfig, pretrain  # noqa: E402
from trainer.subsets import select_labeled_subset  # noqa: E402

log = logging.getLogger("study")

SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class StudySettings:
    """Everything the study's numbers depend on (stored in every done marker and the results).

    Args:
        preset: model preset; input_size overrides its input side (pixels) in both stages;
            pretrain_input_size, stage 1's alone (the network is fully convolutional: a backbone
            trained on smaller images fine-tunes at the preset's side, at a quarter of the cost
            per stage-1 epoch at half the side).
        split_seed: seed of the val/pool split; val_size faces go to validation.
        pretrain_epochs, pretrain_batch, pretrain_lr: stage-1 length and optimiser.
        pretrain_augment: stage 1's augmentation, "flip" or "affine" (the fine-tune's flip,
            scale, rotation, shift and colour jitter; ``PretrainConfig.augment``).
        pretrain_finish_epochs, pretrain_finish_lr: when stage 1 runs at its own smaller side,
            this many more epochs at the fine-tune's side, from its weights on a schedule of
            their own (``PretrainConfig.init``); 0 = none.
        recipes: stage-1 recipes to run (keys of RECIPES); spark_mask_ratio: the share of the
            central region the spark recipe masks (replaces its RECIPES entry).
        ks: labeled-subset sizes K; recipe_ks: the K values at which the second and later recipes
            are fine-tuned (the first recipe and scratch get every K).
        seeds: subset seeds repeated at the smallest K (seed 0 is used elsewhere).
        finetune_steps, finetune_batch, lr, backbone_lr_mult, dice_weight, warmup_steps: the one
            fine-tuning recipe every arm shares; steps_for_k: (K, steps) pairs that override
            finetune_steps at some K (the same for every arm): 250 steps of 8 left every K ≥ 10
            underfit (last-10-step loss 0.85 at K = 50, 0.99 at 600; at K = 25 the SSL start's
            right eye stayed at F1 0.7), so K = 5 alone keeps 250 (the budget) and 600 gets 750;
            pretrained_lr_mult replaces backbone_lr_mult for a pretrained backbone (SSL or
            ImageNet): the lower rate that keeps what it learned; head_only_steps: the first
            steps train only the new FP decoder, the backbone held (every arm alike).
        val_limit: score on the first N validation faces only (quick mode).
    """

    preset: str = "lite"
    input_size: int | None = None
    # Stage 1: 40 epochs at 128 px and AdamW 3e-3 (~1.6x the time of 10 epochs at 256 px) led
    # scratch by +5.7 / +4.2 mIoU at K = 10 / 50 over three subsets (10 epochs at 256 px and
    # 1e-3: +2.7 / +2.4; BENCHMARKS.md, "A higher stage-1 rate").
    pretrain_input_size: int | None = 128
    split_seed: int = 0
    val_size: int = 100
    pretrain_epochs: int = 40
    pretrain_batch: int = 8
    pretrain_lr: float = 3e-3
    pretrain_max_steps: int | None = None
    pretrain_augment: str = "flip"
    pretrain_finish_epochs: int = 0
    pretrain_finish_lr: float = 1e-3
    checkpoint_every: int = 50
    # 75 % masked is level with 60 %: over three K = 10 subsets, two runs each, 65.4 vs 65.3 mIoU
    # on average (BENCHMARKS.md, "Two more stage-1 levers"); 60 % stays.
    spark_mask_ratio: float = RECIPES["spark"]["mask_ratio"]
    # The first recipe gets every K and the seed repeats: spark, the better one at K = 10
    # (65.6 vs 57.4 mean F1 in the first run).
    recipes: tuple[str, ...] = ("spark", "center")
    ks: tuple[int, ...] = (5, 10, 25, 50, 100, 600)
    recipe_ks: tuple[int, ...] = (10, 50)
    seeds: tuple[int, ...] = (0, 1, 2)
    # 250 steps of 8 left K = 10 underfit too: 500 took both starts from 56.5 / 67.7 to 76.7
    # mean F1 (40-epoch SSL / scratch, subset 0). K = 5 keeps 250 to stay within the budget.
    finetune_steps: int = 500
    steps_for_k: tuple[tuple[int, int], ...] = ((5, 250), (600, 750))
    finetune_batch: int = 8
    # K = 10 from scratch, 250 steps: lr 1e-3 → 23 mean F1 (no brow, eye, lip or mouth);
    # 3e-3 → 52 (eyes still 0); 1e-2 → 67 with every class learned.
    lr: float = 1e-2
    backbone_lr_mult: float = 1.0
    pretrained_lr_mult: float = 1.0
    dice_weight: float = 1.0
    warmup_steps: int = 20
    # LP-FT: 80-epoch start, three subsets, SSL − scratch +1.7 → +5.4 mIoU at K = 10, +2.5 →
    # +4.0 at K = 50 (BENCHMARKS.md, "Holding the backbone …").
    head_only_steps: int = 100
    val_limit: int | None = None
    device: str = "auto"
    num_workers: int = 0
    finetune_workers: int | None = None
    imagenet_weights: str | None = None


def steps_for(settings: StudySettings, k: int) -> int:
    """Fine-tuning steps at subset size K: its entry in ``steps_for_k``, else ``finetune_steps``."""
    return dict(settings.steps_for_k).get(k, settings.finetune_steps)


QUICK = StudySettings(
    input_size=128,
    pretrain_input_size=64,
    pretrain_epochs=1,
    pretrain_batch=4,
    pretrain_max_steps=6,
    checkpoint_every=3,
    ks=(5, 10),
    recipe_ks=(10,),
    finetune_steps=6,
    steps_for_k=(),
    finetune_batch=4,
    warmup_steps=2,
    head_only_steps=2,
    val_limit=16,
)


# ---------------------------------------------------------------------------------------------
# Stage bookkeeping


def _done_path(stage_dir: Path) -> Path:
    return stage_dir / "done.json"


def load_done(stage_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The stage's stored result if it finished with these settings, else None."""
    path = _done_path(stage_dir)
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if done.get("settings") != json.loads(json.dumps(settings)):
        log.info("%s: settings changed since it ran; running it again", stage_dir.name)
        return None
    return done


def mark_done(stage_dir: Path, settings: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    record = {"settings": settings, **result}
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(_done_path(stage_dir), json.dumps(record, indent=1).encode())
    return record


# ---------------------------------------------------------------------------------------------
# Stage 1: data


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
    """Convert CelebAMask-HQ dev to LaPa classes, fix swapped sides, split val / pool."""
    stage_dir = out / "data"
    key = {"src": str(src), "split_seed": settings.split_seed, "val_size": settings.val_size}
    done = load_done(stage_dir, key)
    if done is not None:
        return done
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


# ---------------------------------------------------------------------------------------------
# Stage 2: pretraining


def _latest_step_checkpoint(stage_dir: Path) -> Path | None:
    found = []
    for path in stage_dir.glob("pretrain_step*.safetensors"):
        m = re.fullmatch(r"pretrain_step(\d+)\.safetensors", path.name)
        if m:
            found.append((int(m.group(1)), path))
    return max(found)[1] if found else None


def _prune_step_checkpoints(stage_dir: Path, keep: Path | None) -> None:
    """Keep only the newest periodic checkpoint (each holds optimizer state: ~3× the weights)."""
    for path in stage_dir.glob("pretrain_step*.safetensors"):
        if keep is None or path != keep:
            path.unlink(missing_ok=True)


def recipe_options(recipe: str, settings: StudySettings) -> dict[str, Any]:
    """The stage-1 options of ``recipe`` under ``settings`` (loss region, targets, mask share)."""
    options = dict(RECIPES[recipe])
    if recipe == "spark":
        options["mask_ratio"] = settings.spark_mask_ratio
    return options


def stage1_tag(settings: StudySettings, recipe: str) -> str:
    """``stage1_base_tag`` and, with a finish at the fine-tune's side, ``_finish<N>px_e<E>``
    (``_lr<rate>`` when not 1e-3): the suffix of the SSL arms' fine-tune folders."""
    return stage1_base_tag(settings, recipe) + _finish_suffix(settings)


def _finish_suffix(settings: StudySettings) -> str:
    if not _finishes(settings):
        return ""
    lr = settings.pretrain_finish_lr
    return f"_finish{_finetune_side(settings)}px_e{settings.pretrain_finish_epochs}" + (
        f"_lr{lr:g}" if lr != 1e-3 else ""
    )


def _finishes(settings: StudySettings) -> bool:
    return bool(settings.pretrain_finish_epochs and settings.pretrain_input_size)


def _finetune_side(settings: StudySettings) -> int:
    return settings.input_size or get_preset(settings.preset).input_size


def stage1_base_tag(settings: StudySettings, recipe: str) -> str:
    """Folder suffix of a stage 1 at its own side (``_<N>px``), at a rate other than 1e-3
    (``_lr<rate>``), at a mask share other than its recipe's in RECIPES (``_m<share>``) or with
    an augmentation other than the flip (``_<augment>``).
    Its pretrain folder and its SSL arms' fine-tune folders carry it, so the cached stages of
    earlier studies (no suffix for what they left at its first value) stay valid beside it."""
    size, lr = settings.pretrain_input_size, settings.pretrain_lr
    ratio = recipe_options(recipe, settings)["mask_ratio"]
    masked = ratio != RECIPES[recipe]["mask_ratio"]
    return (
        (f"_{size}px" if size else "")
        + (f"_lr{lr:g}" if lr != 1e-3 else "")
        + (f"_m{ratio:g}" if masked else "")
        + (f"_{settings.pretrain_augment}" if settings.pretrain_augment != "flip" else "")
    )


def run_pretrain(
    recipe: str,
    out: Path,
    settings: StudySettings,
    unlabeled: Path,
    image_dirs: Sequence[Path] | None = None,
    stage_dir: Path | None = None,
) -> dict[str, Any]:
    """Stage 1 with one recipe; resumes from the newest periodic checkpoint.

    Args:
        image_dirs: the photos (default: the pool's images + ``unlabeled``).
        stage_dir: the stage's folder (default ``<out>/pretrain_<recipe>`` + ``stage1_base_tag``).

    With ``pretrain_finish_epochs``, the finish at the fine-tune's side follows in its own
    folder (``stage1_tag``) and its result, holding the first run's as ``"first"``, is returned.
    """
    stage_dir = stage_dir or out / f"pretrain_{recipe}{stage1_base_tag(settings, recipe)}"
    dirs = image_dirs or (out / "data" / "train" / "images", unlabeled)
    config = PretrainConfig(
        image_dirs=tuple(str(d) for d in dirs),
        out_dir=str(stage_dir),
        preset=settings.preset,
        input_size=settings.pretrain_input_size or settings.input_size,
        epochs=settings.pretrain_epochs,
        batch_size=settings.pretrain_batch,
        lr=settings.pretrain_lr,
        seed=0,
        num_workers=settings.num_workers,
        device=settings.device,
        checkpoint_every=settings.checkpoint_every,
        max_steps=settings.pretrain_max_steps,
        augment=settings.pretrain_augment,
        **recipe_options(recipe, settings),
    )
    first = _run_stage1(recipe, stage_dir, config, settings)
    if not _finishes(settings):
        return first
    finish_dir = stage_dir.with_name(stage_dir.name + _finish_suffix(settings))
    finish = replace(
        config,
        out_dir=str(finish_dir),
        input_size=_finetune_side(settings),
        epochs=settings.pretrain_finish_epochs,
        lr=settings.pretrain_finish_lr,
        init=first["checkpoint"],
    )
    done = _run_stage1(recipe, finish_dir, finish, settings)
    return {**done, "first": {k: v for k, v in first.items() if k != "settings"}}


def _run_stage1(
    recipe: str, stage_dir: Path, config: PretrainConfig, settings: StudySettings
) -> dict[str, Any]:
    """One stage-1 run into ``stage_dir``, cached by its done marker and resumable."""
    key = asdict(config)
    for field_name, first_value in (("augment", "flip"), ("init", None)):
        if key[field_name] == first_value:
            # Added to PretrainConfig after the cached studies ran: their markers stay valid.
            del key[field_name]
    done = load_done(stage_dir, key)
    if done is not None and Path(done["checkpoint"]).is_file():
        return done
    if done is not None:
        log.warning(
            "pretrain %s: its checkpoint %s is gone; training it again", recipe, done["checkpoint"]
        )
        _done_path(stage_dir).unlink()
    # One study per cache folder: a second study with other settings on the same folder would
    # discard this stage's checkpoints here.
    started = stage_dir / "started.json"
    if started.is_file() and json.loads(started.read_text()) != json.loads(json.dumps(key)):
        log.info("pretrain %s: settings changed; discarding its checkpoints", recipe)
        _prune_step_checkpoints(stage_dir, None)
        (stage_dir / FINAL_NAME).unlink(missing_ok=True)
        (stage_dir / "metrics.jsonl").unlink(missing_ok=True)
    atomic_write_bytes(started, json.dumps(key, indent=1).encode())
    resume = _latest_step_checkpoint(stage_dir)
    final = stage_dir / FINAL_NAME
    # Finished, but the marker was not written: nothing left to train, and its own last-step
    # metrics stay (a zero-step resume would write a checkpoint without them).
    finished = final.is_file() and is_finished(final)
    if finished:
        resume = final
    elif resume is None and final.is_file():
        final.unlink()  # a cut-short run without step checkpoints; start afresh
    resume_step = _step_of(resume)
    t0 = time.perf_counter()

    def prune(stats: dict[str, Any]) -> None:
        _prune_step_checkpoints(stage_dir, _latest_step_checkpoint(stage_dir))

    if finished:
        log.info("pretrain %s: %s finished earlier; marking it done", recipe, final.name)
        path = final
    else:
        log.info(
            "pretrain %s: %s", recipe, f"resuming from {resume.name}" if resume else "starting"
        )
        path = pretrain(config, on_progress=prune, resume=resume)
    from trainer.checkpoint import read_metadata

    meta = read_metadata(path)
    elapsed = time.perf_counter() - t0
    steps_run = int(meta.get("step", 0)) - resume_step
    result = {
        "checkpoint": str(path),
        "recipe": recipe,
        **recipe_options(recipe, settings),
        "steps": meta.get("step"),
        "images": meta.get("num_images"),
        "masked_share_of_center": meta.get("masked_share"),
        "final_loss": (meta.get("metrics") or {}).get("loss"),
        "seconds_this_run": round(elapsed, 1),
        "images_per_s": round(steps_run * settings.pretrain_batch / elapsed, 2)
        if steps_run
        else None,
        "resumed_from": resume.name if resume else None,
    }
    _prune_step_checkpoints(stage_dir, None)
    return mark_done(stage_dir, key, result)


def is_finished(path: Path) -> bool:
    """Whether a stage-1 checkpoint ended its whole schedule (not cancelled, all steps done)."""
    from trainer.checkpoint import read_metadata

    meta = read_metadata(path)
    return not meta.get("cancelled") and meta.get("step") == meta.get("total_steps")


def _step_of(path: Path | None) -> int:
    if path is None:
        return 0
    from trainer.checkpoint import read_metadata

    return int(read_metadata(path).get("step", 0))


# ---------------------------------------------------------------------------------------------
# Stage 3: fine-tuning


class NamedSubset(Sequence[Sample]):
    """A lazy view of some samples of a reader (images load on access), with their names."""

    def __init__(self, source: LapaDataset, names: Sequence[str]) -> None:
        position = {n: i for i, n in enumerate(source.names)}
        self.source = source
        self.names = list(names)
        self.indices = [position[n] for n in self.names]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        return self.source[self.indices[i]]


@dataclass
class Arm:
    """One initialisation: its name and the finetune ``init`` string (+ encoder weights);
    ``head_only_steps`` overrides the study's hold (the scratch reference without it);
    ``recipe``, the stage-1 recipe of an SSL start (its folder names carry that stage's tag)."""

    name: str
    init: str
    encoder_weights: str | None = None
    ks: tuple[int, ...] = field(default_factory=tuple)
    seeds: tuple[int, ...] = (0,)
    head_only_steps: int | None = None
    recipe: str = "spark"


@dataclass
class FinetuneStage:
    """One fine-tune's folder, config and cache key (what its ``done.json`` must match)."""

    stage_dir: Path
    config: FinetuneConfig
    chosen: list[str]
    key: dict[str, Any]

    def done(self) -> dict[str, Any] | None:
        return load_done(self.stage_dir, self.key)


def finetune_stage(
    arm: Arm, k: int, seed: int, out: Path, settings: StudySettings, pool: LapaDataset
) -> FinetuneStage:
    """The stage that fine-tunes ``arm`` on K pool faces (subset seed ``seed``)."""
    hold = settings.head_only_steps if arm.head_only_steps is None else arm.head_only_steps
    # Held runs get their own folders: the unheld study's cache stays valid beside them.
    tag = stage1_tag(settings, arm.recipe) if arm.init.startswith("ssl:") else ""
    stage_dir = out / "finetune" / f"{arm.name}_K{k}_s{seed}{f'_h{hold}' if hold else ''}{tag}"
    chosen = select_labeled_subset(pool.names, num_labeled=k, seed=seed)
    input_size = settings.input_size
    if input_size is None and settings.pretrain_input_size and arm.init.startswith("ssl:"):
        input_size = get_preset(settings.preset).input_size  # not the stage-1 checkpoint's side
    config = FinetuneConfig(
        data=str(out / "data"),
        out_dir=str(stage_dir),
        init=arm.init,
        encoder_weights=arm.encoder_weights,
        preset=settings.preset,
        input_size=input_size,
        num_labeled=k,
        subset_seed=seed,
        epochs=10**6,  # the run's length is max_steps
        max_steps=steps_for(settings, k),
        batch_size=settings.finetune_batch,
        lr=settings.lr,
        backbone_lr_mult=settings.backbone_lr_mult
        if arm.init == "scratch"
        else settings.pretrained_lr_mult,
        warmup_steps=settings.warmup_steps,
        dice_weight=settings.dice_weight,
        head_only_steps=hold,
        seed=0,
        # Small subsets restart their DataLoader every step or two, and each restart forks the
        # workers again: fewer workers than stage 1 keep that cost small.
        num_workers=settings.num_workers
        if settings.finetune_workers is None
        else settings.finetune_workers,
        device=settings.device,
        val_split=None,
        progress_bar=False,
    )
    key = {**config.to_dict(), "subset": chosen, "val_limit": settings.val_limit}
    if not config.head_only_share:
        # Added to FinetuneConfig after the cached studies ran; the study holds by steps, and a
        # share of 0 is what they ran with, so their done markers stay valid.
        del key["head_only_share"]
    return FinetuneStage(stage_dir, config, list(chosen), key)


def run_finetune(
    arm: Arm,
    k: int,
    seed: int,
    out: Path,
    settings: StudySettings,
    pool: LapaDataset,
    val: Sequence[Sample],
) -> dict[str, Any]:
    """Fine-tune one arm on K pool faces (subset seed ``seed``) and score its last weights."""
    stage = finetune_stage(arm, k, seed, out, settings, pool)
    done = stage.done()
    if done is not None:
        return done
    t0 = time.perf_counter()
    result = finetune_on_samples(stage.config, NamedSubset(pool, stage.chosen), None)
    train_s = time.perf_counter() - t0
    predictor = Predictor.from_checkpoint(result.last_path, device=settings.device)
    t1 = time.perf_counter()
    scores = evaluate(predictor, val, batch_size=8)
    eval_s = time.perf_counter() - t1
    per_class = {name: s["f1"] for name, s in scores["per_class"].items()}
    per_class_iou = {name: s["iou"] for name, s in scores["per_class"].items()}
    record = {
        "arm": arm.name,
        "init": arm.init,
        "k": k,
        "seed": seed,
        "mean_f1": scores["mean_f1"],
        "miou": scores["miou"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "f1": per_class,
        "iou": per_class_iou,
        "steps": steps_for(settings, k),
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(eval_s, 1),
        "checkpoint": str(result.last_path),
    }
    log.info(
        "%-12s K=%-3d seed %d: mean F1 %.1f  mIoU %.1f  (%.0f s)",
        arm.name,
        k,
        seed,
        100 * (scores["mean_f1"] or 0),
        100 * (scores["miou"] or 0),
        train_s,
    )
    # Keep only the weights the score came from; best == last without validation.
    result.best_path.unlink(missing_ok=True)
    return mark_done(stage.stage_dir, stage.key, record)


def shard_jobs(
    jobs: list[tuple[Arm, int, int]], index: int, count: int, settings: StudySettings
) -> list[tuple[Arm, int, int]]:
    """Shard ``index`` of ``count`` of the not-yet-done ``jobs``: longest first, each to the
    shard with the fewest steps so far, so side-by-side shards end together. Every shard
    computes the same split from the same cache."""
    loads = [0] * count
    mine = []
    for job in sorted(jobs, key=lambda j: -steps_for(settings, j[1])):
        target = loads.index(min(loads))
        loads[target] += steps_for(settings, job[1])
        if target == index:
            mine.append(job)
    return mine


# Settings a scratch fine-tune does not depend on (stage 1, scheduling, the ImageNet arm).
NOT_SCRATCH = {
    "pretrain_input_size", "pretrain_epochs", "pretrain_batch", "pretrain_lr",
    "pretrain_max_steps", "checkpoint_every", "recipes", "ks", "recipe_ks", "seeds",
    "imagenet_weights", "pretrained_lr_mult", "spark_mask_ratio", "pretrain_augment",
    "pretrain_finish_epochs", "pretrain_finish_lr",
}  # fmt: skip


def reuse_scratch(
    results: Path,
    jobs: list[tuple[Arm, int, int]],
    out: Path,
    settings: StudySettings,
    pool: LapaDataset,
) -> int:
    """Mark the scratch fine-tunes of an earlier study's results file done (its records, with
    ``reused_from``), where that study ran with the same fine-tuning settings: scratch does not
    depend on stage 1, so a study with another stage 1 need not train it again. Returns how
    many were reused; a mismatch in any setting a scratch run depends on reuses none."""
    earlier = json.loads(results.read_text())
    ours = json.loads(json.dumps(asdict(settings)))
    theirs = earlier.get("settings", {})
    differ = sorted(k for k in ours if k not in NOT_SCRATCH and theirs.get(k) != ours[k])
    if differ:
        raise SystemExit(f"--reuse-scratch: {results} ran with other settings: {differ}")
    records = {(r["arm"], r["k"], r["seed"]): r for r in earlier["runs"]}
    reused = 0
    for arm, k, seed in jobs:
        record = records.get((arm.name, k, seed))
        if arm.init != "scratch" or record is None:
            continue
        stage = finetune_stage(arm, k, seed, out, settings, pool)
        if stage.done() is None:
            record = {**record, "reused_from": f"{results} ({earlier.get('date', '?')})"}
            mark_done(stage.stage_dir, stage.key, record)
            reused += 1
    return reused


# ---------------------------------------------------------------------------------------------
# Tables


def _pct(v: float | None) -> str:
    return "  n/a" if v is None else f"{100 * v:5.1f}"


def summarize(runs: list[dict[str, Any]], settings: StudySettings) -> dict[str, Any]:
    """Headline table (seed 0 per arm and K), per-class F1 at K = 10, the seed spread."""
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in runs:
        if r["seed"] == 0:
            table.setdefault(str(r["k"]), {})[r["arm"]] = {
                "mean_f1": r["mean_f1"],
                "miou": r["miou"],
            }
    spread: dict[str, Any] = {}
    k_min = min(settings.ks)
    for arm in arms:
        vals = [r for r in runs if r["arm"] == arm and r["k"] == k_min]
        if len(vals) >= 2:
            f1s = [r["mean_f1"] or 0.0 for r in vals]
            ious = [r["miou"] or 0.0 for r in vals]
            spread[arm] = {
                "k": k_min,
                "seeds": [r["seed"] for r in vals],
                "mean_f1_mean": statistics.mean(f1s),
                "mean_f1_std": statistics.stdev(f1s),
                "mean_f1_range": [min(f1s), max(f1s)],
                "miou_mean": statistics.mean(ious),
                "miou_std": statistics.stdev(ious),
                "miou_range": [min(ious), max(ious)],
            }
    per_class_k10 = {r["arm"]: r["f1"] for r in runs if r["k"] == 10 and r["seed"] == 0}
    return {"arms": arms, "table": table, "seed_spread": spread, "per_class_f1_k10": per_class_k10}


def format_summary(summary: dict[str, Any], pretrain: dict[str, Any]) -> str:
    lines = []
    arms = summary["arms"]
    head = f"{'K':>5} | " + " | ".join(f"{a:>16}" for a in arms)
    lines += ["mean F1 (10 fg) / mIoU (11), validation faces", head, "-" * len(head)]
    for k in sorted(summary["table"], key=int):
        row = summary["table"][k]
        cells = []
        for a in arms:
            v = row.get(a)
            cells.append(f"{_pct(v['mean_f1'])} / {_pct(v['miou'])}".rjust(16) if v else " " * 16)
        lines.append(f"{k:>5} | " + " | ".join(cells))
    if summary["per_class_f1_k10"]:
        classes = LAPA.classes[1:]
        lines += [
            "",
            "per-class F1 at K = 10",
            f"{'class':<14}" + "".join(f"{a:>16}" for a in summary["per_class_f1_k10"]),
        ]
        for c in classes:
            lines.append(
                f"{c:<14}"
                + "".join(f"{_pct(f.get(c)):>16}" for f in summary["per_class_f1_k10"].values())
            )
    for arm, s in summary["seed_spread"].items():
        lines.append(
            f"K={s['k']} {arm}: seeds {s['seeds']}: mean F1 {100 * s['mean_f1_mean']:.1f} ± "
            f"{100 * s['mean_f1_std']:.1f} (range {100 * s['mean_f1_range'][0]:.1f}–"
            f"{100 * s['mean_f1_range'][1]:.1f}), mIoU {100 * s['miou_mean']:.1f} ± {100 * s['miou_std']:.1f}"
        )
    for recipe, p in pretrain.items():
        share = p.get("masked_share_of_center")
        lines.append(
            f"stage 1 {recipe}: {p.get('steps')} steps on {p.get('images')} images, masked share of the "
            f"central region {100 * share:.1f}%, final loss {p.get('final_loss'):.4f}"
            + (
                f" (finished at the fine-tune's side after {p['first'].get('steps')} steps, "
                f"final loss then {p['first'].get('final_loss') or float('nan'):.4f})"
                if p.get("first")
                else ""
            )
            if share is not None and p.get("final_loss") is not None
            else f"stage 1 {recipe}: {p.get('steps')} steps, checkpoint {p.get('checkpoint')}"
        )
    return "\n".join(lines)


def write_results(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(payload, indent=1).encode())
    buf = io.StringIO()
    classes = LAPA.classes[1:]
    writer = csv.writer(buf)
    writer.writerow(["arm", "k", "seed", "mean_f1", "miou", *[f"f1_{c}" for c in classes]])
    for r in payload["runs"]:
        writer.writerow(
            [
                r["arm"],
                r["k"],
                r["seed"],
                _round(r["mean_f1"]),
                _round(r["miou"]),
                *[_round(r["f1"].get(c)) for c in classes],
            ]
        )
    atomic_write_bytes(path.with_suffix(".csv"), buf.getvalue().encode())


def _round(v: float | None) -> float | str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else round(100 * v, 2)


# ---------------------------------------------------------------------------------------------


def build_arms(settings: StudySettings, pretrained: dict[str, dict[str, Any]]) -> list[Arm]:
    """Every arm with the K values and seeds it runs. The first recipe and scratch get every K
    (and the seed repeats at the smallest K); further recipes and ImageNet get ``recipe_ks``."""
    arms = []
    k_min = min(settings.ks)
    for i, recipe in enumerate(settings.recipes):
        ckpt = pretrained[recipe]["checkpoint"]
        ks = settings.ks if i == 0 else tuple(k for k in settings.recipe_ks if k in settings.ks)
        arms.append(
            Arm(
                f"ssl-{recipe}",
                f"ssl:{ckpt}",
                ks=ks,
                seeds=settings.seeds if i == 0 else (0,),
                recipe=recipe,
            )
        )
    arms.append(Arm("scratch", "scratch", ks=settings.ks, seeds=settings.seeds))
    ref_ks = tuple(k for k in settings.recipe_ks if k in settings.ks)[:1]
    if settings.head_only_steps and ref_ks:
        # Reference: scratch fine-tuned from step 1 (its better recipe) at the first headline K.
        arms.append(Arm("scratch-unheld", "scratch", ks=ref_ks, head_only_steps=0))
    if settings.imagenet_weights:
        arms.append(
            Arm("imagenet", "imagenet", settings.imagenet_weights, ks=settings.ks, seeds=(0,))
        )
    for arm in arms:
        arm.seeds = arm.seeds if k_min in arm.ks else (0,)
    return arms


def schedule(arms: list[Arm], settings: StudySettings) -> list[tuple[Arm, int, int]]:
    """Run order: the headline K values first (10, 50, then 5 with its seed repeats), each K for
    every arm before the next, so an interrupted study already holds paired comparisons."""
    priority = [10, 50, 5, 25, 100, 600]
    ks = sorted(settings.ks, key=lambda k: (priority.index(k) if k in priority else 99, k))
    k_min = min(settings.ks)
    jobs = []
    for k in ks:
        for arm in arms:
            if k in arm.ks:
                jobs.append((arm, k, 0))
        if k == k_min:  # the seed repeats are cheap (K images a step): right after seed 0
            jobs += [
                (arm, k, seed) for arm in arms if k in arm.ks for seed in arm.seeds if seed != 0
            ]
    return jobs


def _ints(text: str | None) -> tuple[int, ...] | None:
    """ "10,50" → (10, 50); None or "" → None (the setting's default)."""
    return tuple(int(t) for t in text.split(",")) if text else None


def _pairs(text: str) -> tuple[tuple[int, int], ...]:
    """ "50:500,600:750" → ((50, 500), (600, 750)); "" → ()."""
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        k, _, steps = item.partition(":")
        if not (k.isdigit() and steps.isdigit()):
            raise SystemExit(f"--steps-for-k: {item!r} is not K:steps (e.g. 50:500)")
        pairs.append((int(k), int(steps)))
    return tuple(pairs)


def _shard(text: str) -> tuple[int, int]:
    """ "1/2" → (1, 2)."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise SystemExit(f"--shard: {text!r} is not I/N with 0 <= I < N (e.g. 0/2)")
    return int(index), int(count)


def _run_side_by_side(commands: list[list[str]]) -> None:
    """Run this script once per argument list, all at once, one torch thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, *cmd], env=env) for cmd in commands]
    codes = [proc.wait() for proc in procs]
    if any(codes):
        raise SystemExit(
            f"study: a child process failed (exit codes {codes}); what finished is cached, "
            "the same command resumes"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny budgets: checks the pipeline in minutes"
    )
    parser.add_argument("--data", default=str(SHARED / "celebamask-hq-dev"))
    parser.add_argument("--unlabeled", default=str(SHARED / "faces-unlabeled"))
    parser.add_argument(
        "--out", default=None, help="cache folder (default bench/out/study[-quick])"
    )
    parser.add_argument(
        "--results", default=None, help="results file stem (default bench/results/study[_quick])"
    )
    parser.add_argument("--preset", default=None)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument(
        "--pretrain-input-size",
        type=int,
        default=None,
        help="stage 1's side alone (pixels; 0 = the fine-tune's side)",
    )
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--num-workers", type=int, default=None, help="DataLoader workers (stage 1)"
    )
    parser.add_argument(
        "--finetune-workers", type=int, default=None, help="DataLoader workers (stage 2)"
    )
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--pretrain-batch", type=int, default=None)
    parser.add_argument("--pretrain-lr", type=float, default=None, help="stage 1's AdamW rate")
    parser.add_argument(
        "--spark-mask-ratio",
        type=float,
        default=None,
        help="share of the central region the spark recipe masks (default 0.6)",
    )
    parser.add_argument(
        "--pretrain-augment",
        choices=AUGMENTS,
        default=None,
        help="stage 1's augmentation: flip (default) or affine (the fine-tune's flip, scale, "
        "rotation, shift and colour jitter)",
    )
    parser.add_argument(
        "--pretrain-finish-epochs",
        type=int,
        default=None,
        help="more stage-1 epochs at the fine-tune's side after those at --pretrain-input-size "
        "(from its weights, a schedule of their own; default 0 = none)",
    )
    parser.add_argument(
        "--pretrain-finish-lr", type=float, default=None, help="their AdamW rate (default 1e-3)"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="stage-1 resume checkpoint period (steps)",
    )
    parser.add_argument("--finetune-steps", type=int, default=None)
    parser.add_argument(
        "--steps-for-k",
        default=None,
        help="K:steps pairs with their own fine-tune length, e.g. 50:500,600:750 ('' = none)",
    )
    parser.add_argument("--finetune-batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--dice-weight", type=float, default=None)
    parser.add_argument(
        "--pretrained-lr-mult",
        type=float,
        default=None,
        help="backbone lr multiplier for pretrained arms",
    )
    parser.add_argument(
        "--head-only-steps",
        type=int,
        default=None,
        help="first fine-tuning steps that train only the FP decoder (every arm)",
    )
    parser.add_argument(
        "--recipes", default=None, help="comma list of stage-1 recipes: center,spark"
    )
    parser.add_argument("--ks", default=None, help="comma list of K values")
    parser.add_argument(
        "--seeds", default=None, help="comma list of subset seeds repeated at the smallest K"
    )
    parser.add_argument("--recipe-ks", default=None, help="K values for the second recipe/ImageNet")
    parser.add_argument(
        "--imagenet-weights", default=None, help="local encoder weights file: adds the ImageNet arm"
    )
    parser.add_argument(
        "--stop-after", choices=("data", "pretrain", "finetune"), default="finetune"
    )
    parser.add_argument(
        "--reuse-scratch",
        default=None,
        help="an earlier study's results .json: take its scratch fine-tunes (same fine-tune "
        "settings; scratch does not depend on stage 1) instead of training them again",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run stage 1's recipes and the fine-tunes in N one-thread processes side by side "
        "(2 on a 2-core CPU), then write the results",
    )
    parser.add_argument(
        "--shard",
        default=None,
        help="I/N: run only every N-th fine-tune from the I-th (0-based), e.g. two one-thread "
        "processes 0/2 and 1/2, after a run with --stop-after pretrain; results are written by "
        "a later run without --shard",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )

    settings = QUICK if args.quick else StudySettings()
    overrides = {
        "preset": args.preset,
        "input_size": args.input_size,
        "pretrain_input_size": args.pretrain_input_size,
        "device": args.device,
        "num_workers": args.num_workers,
        "finetune_workers": args.finetune_workers,
        "pretrain_epochs": args.pretrain_epochs,
        "pretrain_batch": args.pretrain_batch,
        "pretrain_lr": args.pretrain_lr,
        "spark_mask_ratio": args.spark_mask_ratio,
        "pretrain_augment": args.pretrain_augment,
        "pretrain_finish_epochs": args.pretrain_finish_epochs,
        "pretrain_finish_lr": args.pretrain_finish_lr,
        "checkpoint_every": args.checkpoint_every,
        "finetune_steps": args.finetune_steps,
        "finetune_batch": args.finetune_batch,
        "lr": args.lr,
        "dice_weight": args.dice_weight,
        "pretrained_lr_mult": args.pretrained_lr_mult,
        "head_only_steps": args.head_only_steps,
        "imagenet_weights": args.imagenet_weights,
        "recipes": tuple(args.recipes.split(",")) if args.recipes else None,
        "ks": _ints(args.ks),
        "seeds": _ints(args.seeds),
        "recipe_ks": _ints(args.recipe_ks),
        "steps_for_k": _pairs(args.steps_for_k) if args.steps_for_k is not None else None,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if args.pretrain_input_size == 0:
        settings = replace(settings, pretrain_input_size=None)
    unknown = [r for r in settings.recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {sorted(RECIPES)}")
    suffix = "-quick" if args.quick else ""
    out = Path(args.out or ROOT / "bench" / "out" / f"study{suffix}")
    results = Path(args.results or ROOT / "bench" / "results" / f"study{suffix.replace('-', '_')}")
    t0 = time.perf_counter()

    data = prepare_data(Path(args.data), out, settings)
    if args.stop_after == "data":
        return 0
    if args.processes > 1 and not args.shard:
        own = [*(sys.argv[1:] if argv is None else argv), "--processes", "1"]  # last one wins
        recipes = list(settings.recipes)
        for i in range(0, len(recipes), args.processes):
            batch = recipes[i : i + args.processes]
            _run_side_by_side([[*own, "--recipes", r, "--stop-after", "pretrain"] for r in batch])
        if args.stop_after != "pretrain":
            n = args.processes
            _run_side_by_side([[*own, "--shard", f"{i}/{n}"] for i in range(n)])
        # Everything below now resolves from the children's done markers.
    pretrained = {r: run_pretrain(r, out, settings, Path(args.unlabeled)) for r in settings.recipes}
    if args.stop_after == "pretrain":
        return 0
    pool = LapaDataset(out / "data", split="train")
    val_full = LapaDataset(out / "data", split="val")
    val: Sequence[Sample] = val_full
    if settings.val_limit is not None:
        val = NamedSubset(val_full, val_full.names[: settings.val_limit])
    arms = build_arms(settings, pretrained)
    jobs = schedule(arms, settings)
    if args.reuse_scratch:
        n = reuse_scratch(Path(args.reuse_scratch), jobs, out, settings, pool)
        log.info("reused %d scratch fine-tunes from %s", n, args.reuse_scratch)
    if args.shard:
        index, count = _shard(args.shard)
        pending = [j for j in jobs if finetune_stage(*j, out, settings, pool).done() is None]
        for arm, k, seed in shard_jobs(pending, index, count, settings):
            run_finetune(arm, k, seed, out, settings, pool, val)
        log.info("shard %s done; rerun without --shard to write the results", args.shard)
        return 0
    runs = []
    for arm, k, seed in jobs:
        runs.append(run_finetune(arm, k, seed, out, settings, pool, val))
        summary = summarize(runs, settings)
        payload = {
            "study": "label efficiency, issue 5 §1",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}",
            "command": "bench/study.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "settings": asdict(settings),
            "recipes": {r: recipe_options(r, settings) for r in settings.recipes},
            "data": {k: v for k, v in data.items() if k != "settings"},
            "pretrain": {
                r: {k: v for k, v in p.items() if k != "settings"} for r, p in pretrained.items()
            },
            "runs": [{k: v for k, v in r.items() if k != "settings"} for r in runs],
            "summary": summary,
            "seconds_this_invocation": round(time.perf_counter() - t0, 1),
        }
        write_results(results, payload)
    print(format_summary(summarize(runs, settings), pretrained))
    print(f"results: {results.with_suffix('.json')}, {results.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
