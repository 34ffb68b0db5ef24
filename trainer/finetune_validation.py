"""Stage 2's validation during a run, and the publishing of its best and last checkpoints."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainer.checkpoint import save_checkpoint
from trainer.configs import FinetuneConfig
from trainer.data.imageio import naming_the_file
from trainer.data.sample import NamedSamples
from trainer.engine import Hook, TrainLoop
from trainer.models import FaceParseNet
from trainer.run_files import RunFiles

log = logging.getLogger("trainer.finetune")


def _percent(value: float | None) -> str:
    """A score as the closing table and `faceparse evaluate` print it: percent, two decimals."""
    return "n/a" if value is None else f"{100.0 * value:.2f}%"


class ValidateAndPublish(Hook):
    """Validate on schedule, keep the best checkpoint, write the last one at the end.

    After every ``val_every`` epochs (and at the end) the network parses the validation faces
    (mean F1 over the foreground classes at each label's own resolution, framed as
    ``config.data.framing`` says); an improvement is published as the best checkpoint and each
    validation is one line of the validation log. The run's end is published as the last
    checkpoint (not after a crash: broken weights are never published). Without validation
    faces the best checkpoint is the last one.
    """

    def __init__(
        self,
        model: FaceParseNet,
        device: torch.device,
        config: FinetuneConfig,
        val_samples: NamedSamples | None,
        meta: dict[str, Any],
        files: RunFiles,
        on_progress: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.model = model
        self.device = device
        self.config = config
        self.val_samples = val_samples
        self.meta = meta
        self.best_path = files.best
        self.last_path = files.last
        self.val_log = files.val_log
        self.on_progress = on_progress
        self.best_score = -math.inf
        self.best_metrics: dict[str, Any] = {}
        self.last_metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.validated_step = -1
        self.wrote_best = False

    def _validate(self, loop: TrainLoop, epoch: int) -> None:
        from trainer.evaluate import evaluate
        from trainer.predict import Predictor

        assert self.val_samples is not None
        samples = self.val_samples
        if self.config.data.val_limit is not None:
            samples = samples.subset(range(min(self.config.data.val_limit, len(samples))))
        predictor = Predictor(
            self.model,
            meta=self.meta,
            device=self.device,
            channels_last=self.config.runtime.channels_last,
            framing=self.config.data.framing,
        )
        try:
            # Faces come from the labels: the epoch is picked for parsing, not for a finder.
            results = evaluate(
                predictor,
                samples,
                batch_size=self.config.recipe.batch_size,
                faces_from_labels=self.config.data.framing == "detect",
            )
        finally:
            self.model.train()
        results.pop("model", None)
        results.update(epoch=epoch + 1, step=loop.step)
        if self.config.data.framing == "detect":
            results["faces_from"] = "labels"  # `faceparse evaluate` uses its finder's faces
        self.validated_step = loop.step
        self.last_metrics = results
        record = {
            "epoch": epoch + 1,
            "step": loop.step,
            "mean_f1": results["mean_f1"],
            "miou": results["miou"],
            "pixel_accuracy": results["pixel_accuracy"],
        }
        self.history.append(record)
        with naming_the_file(self.val_log), open(self.val_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        score = results["mean_f1"] if results["mean_f1"] is not None else -math.inf
        improved = score > self.best_score or not self.wrote_best
        log.info(
            "validation epoch %d: mean F1 %s, mIoU %s%s",
            epoch + 1, _percent(results["mean_f1"]), _percent(results["miou"]),
            " (best)" if improved else "",
        )  # fmt: skip
        if improved:
            self.best_score = score
            self.best_metrics = results
            self._save(self.best_path, loop, results)
            self.wrote_best = True
        if self.on_progress is not None:
            self.on_progress({"phase": "val", **record, "best": improved})

    def _save(self, path: Path, loop: TrainLoop, metrics: dict[str, Any]) -> None:
        meta = dict(self.meta, step=loop.step, epoch=loop.epoch + 1, metrics=metrics)
        save_checkpoint(path, self.model, stage="finetune", meta=meta)

    def after_epoch(self, loop: TrainLoop, epoch: int) -> None:
        if self.val_samples is None:
            return
        last_epoch = epoch + 1 >= loop.epochs
        if (epoch + 1) % max(1, self.config.runtime.val_every) == 0 or last_epoch:
            self._validate(loop, epoch)

    def after_train(self, loop: TrainLoop) -> None:
        if loop.error is not None and not isinstance(loop.error, KeyboardInterrupt):
            return  # the weights may be broken (NaN); keep what was published
        if (
            self.val_samples is not None
            and not loop.cancelled
            and self.validated_step != loop.step
            and loop.step > 0
        ):
            # max_steps ended the run mid-epoch: score the final weights too.
            self._validate(loop, loop.epoch)
        self._save(self.last_path, loop, self.last_metrics)
        if not self.wrote_best:
            self._save(self.best_path, loop, self.last_metrics)
            self.wrote_best = True
