"""Stage 1 (masked self-supervised pretraining) as the study runs it: cached by a done marker,
resumed from its newest periodic checkpoint, and optionally finished at the fine-tune's side.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import done_path, load_done, mark_done, study_precision, write_bytes
from bench.recipes import (
    StudySettings,
    finetune_side,
    finish_suffix,
    finishes,
    recipe_options,
    stage1_base_tag,
    stage1_recipe,
)
from trainer.checkpoint import read_metadata
from trainer.configs import PretrainConfig, PretrainRuntime
from trainer.pretrain import pretrain
from trainer.run_files import LEGACY_PRETRAIN_LOG, RunFiles

log = logging.getLogger("study")


def latest_step_checkpoint(stage_dir: Path) -> Path | None:
    """The newest ``pretrain_step<N>.safetensors`` in ``stage_dir``, if any."""
    found = RunFiles(stage_dir, "pretrain").step_checkpoints()
    return found[-1][1] if found else None


def prune_step_checkpoints(stage_dir: Path, keep: Path | None) -> None:
    """Keep only the newest periodic checkpoint (each holds optimizer state: ~3× the weights)."""
    for _, path in RunFiles(stage_dir, "pretrain").step_checkpoints():
        if keep is None or path != keep:
            path.unlink(missing_ok=True)


def is_finished(path: Path) -> bool:
    """Whether a stage-1 checkpoint ended its whole schedule (not cancelled, all steps done)."""
    meta = read_metadata(path)
    return not meta.get("cancelled") and meta.get("step") == meta.get("total_steps")


def step_of(path: Path | None) -> int:
    """The training step a checkpoint was written at (0 for none)."""
    if path is None:
        return 0
    return int(read_metadata(path).get("step", 0))


def run_pretrain(
    recipe: str,
    out: Path,
    settings: StudySettings,
    unlabeled: Path,
    image_dirs: Sequence[Path] | None = None,
    stage_dir: Path | None = None,
    precision: str = "study",
) -> dict[str, Any]:
    """Stage 1 with one recipe; resumes from the newest periodic checkpoint.

    Args:
        image_dirs: the photos (default: the pool's images + ``unlabeled``).
        stage_dir: the stage's folder (default ``<out>/pretrain_<recipe>`` + ``stage1_base_tag``).
        precision: ``study`` (how the recorded studies trained) or the trainer's own choice.

    With ``pretrain_finish_epochs``, the finish at the fine-tune's side follows in its own
    folder (``stage1_tag``) and its result, holding the first run's as ``"first"``, is returned.
    """
    stage_dir = stage_dir or out / f"pretrain_{recipe}{stage1_base_tag(settings, recipe)}"
    dirs = image_dirs or (out / "data" / "train" / "images", unlabeled)
    config = PretrainConfig(
        image_dirs=tuple(str(d) for d in dirs),
        runtime=PretrainRuntime(
            out_dir=str(stage_dir),
            num_workers=settings.num_workers,
            device=settings.device,
            checkpoint_every=settings.checkpoint_every,
            precision=study_precision(settings.device, precision),
        ),
        preset=settings.preset,
        input_size=settings.pretrain_input_size or settings.input_size,
        recipe=stage1_recipe(recipe, settings),
    )
    first = run_stage1(recipe, stage_dir, config, settings)
    if not finishes(settings):
        return first
    finish_dir = stage_dir.with_name(stage_dir.name + finish_suffix(settings))
    finish = config.changed(
        out_dir=str(finish_dir),
        input_size=finetune_side(settings),
        epochs=settings.pretrain_finish_epochs,
        lr=settings.pretrain_finish_lr,
        init=first["checkpoint"],
    )
    done = run_stage1(recipe, finish_dir, finish, settings)
    return {**done, "first": {k: v for k, v in first.items() if k != "settings"}}


def run_stage1(
    recipe: str, stage_dir: Path, config: PretrainConfig, settings: StudySettings
) -> dict[str, Any]:
    """One stage-1 run into ``stage_dir``, cached by its done marker and resumable."""
    key = config.flat()
    # Fields added to PretrainConfig after the cached studies ran, at the values those ran with
    # (how often a resumable checkpoint is written does not change the weights).
    added = (
        ("augment", "flip"), ("init", None), ("checkpoint_minutes", 5.0), ("keep_checkpoints", 2),
        ("sparse", False), ("mask_cells", "center"), ("norm_patch", None),
    )  # fmt: skip
    for field_name, first_value in added:
        if key.get(field_name) == first_value:
            del key[field_name]
    done = load_done(stage_dir, key)
    if done is not None and Path(done["checkpoint"]).is_file():
        return done
    if done is not None:
        log.warning(
            "pretrain %s: its checkpoint %s is gone; training it again", recipe, done["checkpoint"]
        )
        done_path(stage_dir).unlink()
    # One study per cache folder: a second study with other settings on the same folder would
    # discard this stage's checkpoints here.
    started = stage_dir / "started.json"
    if started.is_file() and json.loads(started.read_text()) != json.loads(json.dumps(key)):
        log.info("pretrain %s: settings changed; discarding its checkpoints", recipe)
        prune_step_checkpoints(stage_dir, None)
        files = RunFiles(stage_dir, "pretrain")
        for path in (files.last, files.log, stage_dir / LEGACY_PRETRAIN_LOG):
            path.unlink(missing_ok=True)
    write_bytes(started, json.dumps(key, indent=1).encode())
    resume = latest_step_checkpoint(stage_dir)
    final = RunFiles(stage_dir, "pretrain").last
    # Finished, but the marker was not written: nothing left to train, and its own last-step
    # metrics stay (a zero-step resume would write a checkpoint without them).
    finished = final.is_file() and is_finished(final)
    if finished:
        resume = final
    elif resume is None and final.is_file():
        final.unlink()  # a cut-short run without step checkpoints; start afresh
    resume_step = step_of(resume)
    t0 = time.perf_counter()

    def prune(stats: dict[str, Any]) -> None:
        prune_step_checkpoints(stage_dir, latest_step_checkpoint(stage_dir))

    if finished:
        log.info("pretrain %s: %s finished earlier; marking it done", recipe, final.name)
        path = final
    else:
        log.info(
            "pretrain %s: %s", recipe, f"resuming from {resume.name}" if resume else "starting"
        )
        path = pretrain(config, on_progress=prune, resume=resume)
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
    prune_step_checkpoints(stage_dir, None)
    return mark_done(stage_dir, key, result)
