"""The app's pretraining job (Qt-free): masked self-supervised pretraining on the project's
photos, resumable, published as a backbone version.

Like the fine-tuning jobs in ``faceparse_app.training``, :func:`run_pretrain_job` takes
``on_progress`` (a callable receiving dicts) and ``cancel`` (a ``threading.Event``), so it runs
the same in a test, a script or a Qt worker thread. The app's defaults live in
``faceparse_app.training_settings``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceparse_app.model_store import ModelStore, ModelVersion
from faceparse_app.training import ProgressFn, TrainingError
from faceparse_app.training_settings import DEFAULT_DEVICE, DEFAULT_PRESET, PRETRAIN_LENGTH
from trainer.checkpoint import read_metadata
from trainer.configs import PretrainConfig, PretrainRuntime
from trainer.errors import CheckpointError, FaceParseError
from trainer.recipes import pretrain_recipe

log = logging.getLogger(__name__)

# The stage-1 recipe of the app's pretraining (the starter backbone's).
PRETRAIN_RECIPE = "spark"


@dataclass
class PretrainJobResult:
    """What a pretraining job produced.

    Attributes:
        path: the run's last checkpoint (resumable).
        resumed_from_step: the step it continued from (0 for a fresh run).
        cancelled: stopped early; resume it by starting the job again.
        version: the published backbone version (None when cancelled or without a store).
        skipped_images: photos that could not be read and were left out.
    """

    path: Path
    resumed_from_step: int = 0
    cancelled: bool = False
    version: ModelVersion | None = None
    skipped_images: int = 0

    def summary(self) -> dict[str, Any]:
        """How the run ended, for ``loop_state.RunOutcome``: kind, version, metrics, cancelled,
        and a note on the photos left out."""
        n = self.skipped_images
        note = (
            f"{n} unreadable photo{'s' if n != 1 else ''} left out (see the log for which)"
            if n
            else ""
        )
        return {
            "kind": "pretrain",
            "version": self.version.id if self.version else None,
            "metrics": dict(self.version.metrics) if self.version else {},
            "cancelled": self.cancelled,
            "note": note,
        }


def pretrain_resume_point(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Where an unfinished pretraining run in ``out_dir`` stopped, or None.

    Returns:
        {"path", "step", "total_steps", "preset"} for a run that was cancelled or stopped before
        its last step; None when there is no run or it finished.
    """
    from trainer.run_files import RunFiles

    path = RunFiles(out_dir, "pretrain").last
    if not path.is_file():
        return None
    try:
        meta = read_metadata(path)
    except CheckpointError as exc:
        log.warning("ignoring the unreadable pretraining checkpoint %s", exc)
        return None
    step, total = int(meta.get("step") or 0), int(meta.get("total_steps") or 0)
    if not meta.get("cancelled") and step >= total:
        return None
    return {
        "path": path,
        "step": step,
        "total_steps": total,
        "preset": (meta.get("model") or {}).get("preset"),
    }


def run_pretrain_job(
    image_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    preset: str = DEFAULT_PRESET,
    epochs: int = PRETRAIN_LENGTH.epochs,
    batch_size: int = PRETRAIN_LENGTH.batch_size,
    max_steps: int | None = PRETRAIN_LENGTH.max_steps,
    lr: float | None = None,
    device: str = DEFAULT_DEVICE,
    seed: int = 0,
    resume: bool | str | os.PathLike[str] = True,
    init_backbone: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    data_snapshot: Iterable[str] = (),
    note: str = "",
    on_progress: ProgressFn | None = None,
    cancel: Any = None,
) -> PretrainJobResult:
    """Stage-1 masked pretraining on the project's images, resumable, published as a backbone.

    The run uses the stage-1 recipe ``PRETRAIN_RECIPE`` (``trainer.recipes``; the starter
    backbone's) and, given ``init_backbone``, continues that backbone on the project's photos
    instead of starting from random weights.

    Args:
        image_dirs: folders searched recursively (hidden folders such as ``.faceparse`` are
            skipped).
        out_dir: the pretraining run folder; keep it fixed per project so a run can resume.
        preset: model preset ("paper", "lite", "tiny").
        epochs, batch_size, max_steps, lr, seed: the recipe's settings this run changes (see
            ``trainer.recipes.PretrainRecipe``); lr None: the recipe's.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        resume: True: continue an unfinished run found in ``out_dir`` (same preset), else start
            fresh; False: always start fresh; a path: resume from that checkpoint.
        init_backbone: a stage-1 checkpoint (the project's backbone or the starter) a fresh
            run starts from; its preset replaces ``preset``. Ignored when a run is resumed.
        store: where to publish the finished backbone (not after a cancel: resume instead).
        data_snapshot, note: recorded with the version.
        on_progress: the trainer's per-step dicts (step, total_steps, epoch, epochs, loss, lr,
            images_per_s, eta_s, masked_share) with ``phase="pretrain"`` added.
        cancel: a ``threading.Event``; the run stops within one step and keeps a resumable
            checkpoint.

    Raises:
        TrainingError: the run failed; its message says why. Nothing is published then.
    """
    from trainer.pretrain import pretrain

    resume_path: Path | None = None
    resumed_step = 0
    if resume is True:
        point = pretrain_resume_point(out_dir)
        if point is not None and point["preset"] == preset:
            resume_path, resumed_step = point["path"], point["step"]
    elif resume:
        resume_path = Path(resume)  # type: ignore[arg-type]
        try:
            resumed_step = int(read_metadata(resume_path).get("step") or 0)
        except CheckpointError as exc:
            raise TrainingError(f"cannot resume pretraining: {exc}") from exc
    init: str | None = None
    if init_backbone is not None and resume_path is None:
        try:
            preset = (read_metadata(init_backbone).get("model") or {}).get("preset") or preset
        except CheckpointError as exc:
            raise TrainingError(f"cannot start pretraining from {init_backbone}: {exc}") from exc
        init = str(init_backbone)
    recipe = pretrain_recipe(
        PRETRAIN_RECIPE,
        epochs=epochs,
        batch_size=batch_size,
        max_steps=max_steps,
        seed=seed,
        **({"lr": lr} if lr is not None else {}),
    )
    config = PretrainConfig(
        image_dirs=tuple(str(d) for d in image_dirs),
        runtime=PretrainRuntime(out_dir=str(out_dir), device=device, progress_bar=False),
        preset=preset,
        init=init,
        recipe=recipe,
    )

    def forward(stats: dict[str, Any]) -> None:
        if on_progress is not None:
            on_progress({"phase": "pretrain", **stats})

    try:
        path = pretrain(config, on_progress=forward, cancel=cancel, resume=resume_path)
    except Exception as exc:
        log.exception("pretraining failed")
        raise TrainingError(f"pretraining failed: {exc}") from exc
    meta = read_metadata(path)
    result = PretrainJobResult(
        path=path,
        resumed_from_step=resumed_step,
        cancelled=bool(meta.get("cancelled")),
        skipped_images=int(meta.get("skipped_images") or 0),
    )
    if store is not None and not result.cancelled:
        metrics = {
            "loss": (meta.get("metrics") or {}).get("loss"),
            "step": meta.get("step"),
            "num_images": meta.get("num_images"),
            "masked_share": meta.get("masked_share"),
        }
        try:
            result.version = store.publish(path, "backbone", metrics, data_snapshot, None, note=note)
        except FaceParseError as exc:
            raise TrainingError(f"pretraining finished but publishing the backbone failed: {exc}") from exc
    return result
