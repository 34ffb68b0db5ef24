"""The training loop's hooks: the step log, the progress bar, a plain callback and periodic
checkpoints (see ``trainer.engine.TrainLoop``)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.data.imageio import atomic_write_bytes, naming_the_file
from trainer.engine import Hook, TrainLoop


def _scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


class JsonlLogger(Hook):
    """Append one JSON object per step to a file (step, epoch, loss, lr, images_per_s, time, ...).

    The file is appended to (so a resumed run continues its log) and flushed after every line,
    so a crash loses at most the line being written. Lines are self-contained; a reader skips a
    truncated last line. At the start, lines of steps after the loop's ``start_step`` (written
    after the checkpoint a run resumes from, so trained again now) and a truncated last line are
    dropped, the file rewritten atomically: the log never repeats a step. A fresh run
    (``start_step`` 0) in the same folder therefore starts a fresh log.
    """

    KEYS = ("step", "epoch", "loss", "lr", "images_per_s", "time")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: Any = None

    def before_train(self, loop: TrainLoop) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            self._keep_steps_up_to(loop.start_step)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in after_train

    def _keep_steps_up_to(self, step: int) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a kill cut short
            if line.endswith("\n") and isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        if kept != lines:
            atomic_write_bytes(self.path, "".join(kept).encode("utf-8"))

    def after_step(self, loop: TrainLoop, stats: dict[str, Any]) -> None:
        if self._file is None:
            return
        record = {key: _scalar(stats.get(key)) for key in self.KEYS}
        for key, value in stats.items():
            if key not in record and isinstance(value, int | float | np.generic | torch.Tensor):
                record[key] = _scalar(value)
        with naming_the_file(self.path):
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def after_train(self, loop: TrainLoop) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with naming_the_file(self.path):
                file.close()  # flushes again what a full disk refused at the last step


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a metrics log written by :class:`JsonlLogger`, skipping a truncated last line."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class ProgressBar(Hook):
    """A tqdm bar over steps with the loss and images/s; silent on ranks other than 0.

    Args:
        disable: force on/off; default: off when not the main process (``RANK`` ≠ 0).
        desc: the bar's label.
    """

    def __init__(self, disable: bool | None = None, desc: str = "train") -> None:
        if disable is None:
            disable = int(os.environ.get("RANK", "0")) != 0
        self.disable = disable
        self.desc = desc
        self._bar: Any = None

    def before_train(self, loop: TrainLoop) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=loop.total_steps,
            initial=loop.step,
            desc=self.desc,
            disable=self.disable,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def after_step(self, loop: TrainLoop, stats: dict[str, Any]) -> None:
        if self._bar is None:
            return
        self._bar.set_postfix(
            epoch=f"{stats['epoch']}/{stats['epochs']}",
            loss=f"{stats.get('loss', float('nan')):.4f}",
            img_s=f"{stats.get('images_per_s', 0.0):.1f}",
            refresh=False,
        )
        self._bar.update(1)

    def after_train(self, loop: TrainLoop) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class CallbackHook(Hook):
    """Call a plain ``fn(stats)`` after every step (how the desktop app receives progress).

    ``stats`` holds at least: step, total_steps, epoch (1-based), epochs, loss, lr, images_per_s,
    eta_s. The callback runs on the training thread; keep it quick (e.g. post to a queue).
    """

    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def after_step(self, loop: TrainLoop, stats: dict[str, Any]) -> None:
        self.fn(dict(stats))


class PeriodicCheckpoint(Hook):
    """Save every ``every_steps`` steps and/or ``every_seconds`` of wall-clock time, and once at
    the end (also after a cancel or Ctrl-C).

    Args:
        save_fn: ``save_fn(loop, final)`` writes a checkpoint for ``loop.step``; ``final`` is True
            for the end-of-run save. Not called at the end when the run failed with an error
            other than a KeyboardInterrupt (the weights may be broken, e.g. NaN).
        every_steps: period in steps; 0 = none.
        every_seconds: period in seconds since the previous save (or the start), checked after
            each step; 0 = none. What makes a run of slow steps survive a kill.
    """

    def __init__(
        self,
        save_fn: Callable[[TrainLoop, bool], Any],
        every_steps: int = 0,
        every_seconds: float = 0.0,
    ) -> None:
        self.save_fn = save_fn
        self.every_steps = int(every_steps)
        self.every_seconds = float(every_seconds)
        self._last_save = 0.0

    def before_train(self, loop: TrainLoop) -> None:
        self._last_save = time.monotonic()

    def after_step(self, loop: TrainLoop, stats: dict[str, Any]) -> None:
        if loop.step >= loop.total_steps:
            return  # the final save follows
        by_steps = self.every_steps > 0 and loop.step % self.every_steps == 0
        by_time = (
            self.every_seconds > 0 and time.monotonic() - self._last_save >= self.every_seconds
        )
        if by_steps or by_time:
            self.save_fn(loop, False)
            self._last_save = time.monotonic()

    def after_train(self, loop: TrainLoop) -> None:
        if loop.error is None or isinstance(loop.error, KeyboardInterrupt):
            self.save_fn(loop, True)
