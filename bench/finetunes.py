"""The study's fine-tunes: its arms (one initialisation each), one cached fine-tune per arm, K
and subset seed scored on the validation faces, and the order and shards they run in.

One identical recipe for every initialisation (same steps, batch, learning rates, loss,
augmentation); the labeled subset comes from ``select_labeled_subset`` (nested in K, the same
for every arm), and the run's *last* weights are scored (no checkpoint selection on the set that
is reported).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import load_done, mark_done, study_precision
from bench.recipes import NOT_SCRATCH, StudySettings, finetune_recipe_for, stage1_tag, steps_for
from trainer.configs import FinetuneConfig, FinetuneData, FinetuneRuntime
from trainer.data.lapa import LapaDataset
from trainer.data.sample import Sample
from trainer.evaluate import evaluate
from trainer.finetune import finetune_on_samples
from trainer.models import get_preset
from trainer.predict import Predictor
from trainer.subsets import select_labeled_subset

log = logging.getLogger("study")

Job = tuple["Arm", int, int]  # arm, K, subset seed


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


def score_checkpoint(checkpoint: Path, sets: dict[str, Sequence[Sample]]) -> dict[str, Any]:
    """Mean F1, mIoU and per-class F1 of a checkpoint on each named set of faces (CPU)."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", framing="whole")
    out = {}
    for name, samples in sets.items():
        s = evaluate(predictor, samples, batch_size=8)
        out[name] = {
            "mean_f1": s["mean_f1"],
            "miou": s["miou"],
            "f1": {c: v["f1"] for c, v in s["per_class"].items()},
        }
    return out


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
    lr_mult = settings.backbone_lr_mult if arm.init == "scratch" else settings.pretrained_lr_mult
    config = FinetuneConfig(
        FinetuneRuntime(
            out_dir=str(stage_dir),
            # Small subsets restart their DataLoader every step or two, and each restart forks
            # the workers again: fewer workers than stage 1 keep that cost small.
            num_workers=settings.num_workers
            if settings.finetune_workers is None
            else settings.finetune_workers,
            device=settings.device,
            progress_bar=False,
            precision=study_precision(settings.device),
        ),
        init=arm.init,
        encoder_weights=arm.encoder_weights,
        preset=settings.preset,
        input_size=input_size,
        # The study's recipe; the run's length is max_steps.
        recipe=finetune_recipe_for(settings, k, backbone_lr_mult=lr_mult, head_only_steps=hold),
        data=FinetuneData(
            root=str(out / "data"),
            num_labeled=k,
            subset_seed=seed,
            val_split=None,
            framing="whole",  # aligned CelebAMask-HQ crops, as the recorded results
        ),
    )
    key = {**config.flat(), "subset": chosen, "val_limit": settings.val_limit}
    if not config.recipe.head_only_share:
        # Added to FinetuneConfig after the cached studies ran; the study holds by steps, and a
        # share of 0 is what they ran with, so their done markers stay valid.
        del key["head_only_share"]
    if config.data.framing == "whole":
        del key["framing"]  # likewise: the studies' crops were always whole aligned faces
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
    result = finetune_on_samples(stage.config, pool.select(stage.chosen), None)
    train_s = time.perf_counter() - t0
    predictor = Predictor.from_checkpoint(result.last_path, device=settings.device, framing="whole")
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


def schedule(arms: list[Arm], settings: StudySettings) -> list[Job]:
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


def shard_jobs(jobs: list[Job], index: int, count: int, settings: StudySettings) -> list[Job]:
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


def reuse_scratch(
    results: Path, jobs: list[Job], out: Path, settings: StudySettings, pool: LapaDataset
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
