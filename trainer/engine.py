"""The shared training engine: a plain loop with hooks, in the spirit of detectron2's.

``TrainLoop`` knows nothing about models: it calls ``step_fn(batch)`` once per step and hands the
returned stats to its hooks. Logging, progress, checkpoints and the desktop app's progress
callback are all hooks (``trainer.hooks``). Cancellation is a ``threading.Event`` checked before every step; a
cancelled loop still runs every hook's ``after_train`` (so the final checkpoint is written). So
does one stopped by Ctrl-C (KeyboardInterrupt), which counts as cancelled.

Used by stage 1 (``trainer.pretrain``) and stage 2 (``trainer.finetune``).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from trainer.errors import FaceParseError


class DeviceError(FaceParseError):
    """A requested compute device is not available on this machine."""


class CancelFlag(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``."""

    def is_set(self) -> bool: ...


# ---------------------------------------------------------------------------------------------
# Devices, seeds, precision


def select_device(name: str | None = "auto") -> torch.device:
    """Pick the compute device.

    Args:
        name: "auto" or None (CUDA, then Apple MPS, then CPU), or an explicit "cpu", "cuda",
            "cuda:1", "mps".

    Raises:
        DeviceError: the requested device does not exist here.
    """
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for but CUDA is not available here; use cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"device {name!r} asked for but this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError(f"device {name!r} asked for but Apple MPS is not available here")
        return device
    raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def autocast_for(
    device: torch.device | str, precision: str = "fp32"
) -> contextlib.AbstractContextManager[Any]:
    """Inference's autocast: bf16 on CUDA; on a CPU bf16 where ``precision`` asks for it (the
    runtime choice asks only where it is native, faster, and its labels agree with float32's:
    :mod:`trainer.runtime_choice`); a null context everywhere else. Training chooses its own
    precision per host (:mod:`trainer.precision`). MPS runs in float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and precision == "bf16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up from 0, then cosine decay.

    Args:
        step: 0-based step count.
        total_steps: steps of the whole run; the multiplier reaches ``min_ratio`` there.
        warmup_steps: the multiplier rises linearly from 0 (step 0) to 1 (step ``warmup_steps``).
        min_ratio: final multiplier.

    Returns:
        A multiplier in [0, 1].
    """
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    min_ratio: float = 0.0,
    start_step: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`warmup_cosine`; call ``scheduler.step()`` after each step.

    The k-th optimizer step (1-based) runs at ``base_lr · warmup_cosine(k, total_steps + 1,
    warmup_steps, min_ratio)``: the first step already learns (lr = base / warmup), step
    ``warmup_steps`` runs at the peak, and the last one just above ``min_ratio`` (with the default
    0, no step is spent at a zero learning rate).

    Args:
        start_step: steps already taken (when resuming): the learning rate is set to where an
            uninterrupted run would be. Build the scheduler *before* loading the optimizer state,
            so its base rates are the configured ones.
    """

    def multiplier(step: int) -> float:
        return warmup_cosine(step + 1, total_steps + 1, warmup_steps, min_ratio)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    if start_step:
        fast_forward_scheduler(scheduler, start_step)
    return scheduler


def fast_forward_scheduler(scheduler: torch.optim.lr_scheduler.LambdaLR, step: int) -> None:
    """Put a LambdaLR at ``step`` without stepping the optimizer (for --resume)."""
    scheduler.last_epoch = step
    for group, base, fn in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * fn(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


# ---------------------------------------------------------------------------------------------
# The loop


class Hook:
    """Base class of loop hooks; override what you need. All methods are no-ops by default."""

    def before_train(self, loop: TrainLoop) -> None:
        """Called once before the first step."""

    def after_step(self, loop: TrainLoop, stats: dict[str, Any]) -> None:
        """Called after each step with that step's stats (see :class:`TrainLoop`)."""

    def after_epoch(self, loop: TrainLoop, epoch: int) -> None:
        """Called after each completed epoch (0-based index)."""

    def after_train(self, loop: TrainLoop) -> None:
        """Called once at the end: normal finish, cancellation or error (``loop.error``)."""


class TrainLoop:
    """A plain training loop: ``stats = step_fn(batch)`` per step, hooks around it.

    Args:
        step_fn: runs one optimisation step on a batch; returns scalar stats, at least "loss";
            optionally "lr" and "batch_size" (images in the batch, for images/s), and anything
            else worth logging.
        batches_per_epoch: steps per epoch.
        epochs: number of epochs.
        hooks: called in order.
        start_step: steps already done (when resuming). The loop starts in epoch
            ``start_step // batches_per_epoch`` and skips the batches already seen in it.
        cancel: checked before every step (``threading.Event``); when set, the loop stops,
            ``loop.cancelled`` becomes True and the hooks' ``after_train`` still runs.
        data: where batches come from: a callable ``epoch -> iterable of batches``, or an
            iterable re-iterated each epoch (a DataLoader; its sampler's ``set_epoch`` is called).
            None: ``step_fn`` receives the 0-based global step number as its batch.
        max_steps: stop after this many steps in total, even mid-epoch.
        optimizer: when given and ``step_fn`` reports no "lr", the first group's lr is logged.

    Attributes:
        step: steps completed so far (1 after the first step).
        epoch: 0-based epoch in progress.
        total_steps: steps of the whole run.
        cancelled: True when the run stopped because ``cancel`` was set or Ctrl-C was pressed.
        error: the exception that ended the run, if any (re-raised after the hooks ran;
            a KeyboardInterrupt too).

    Stats handed to hooks add: "step" (completed steps), "total_steps", "epoch" (1-based, for
    display), "epochs" (those the run will reach, a step limit included), "lr", "images_per_s"
    (this step, data loading included), "time" (s since the start), "eta_s" (from the mean step
    time so far).
    """

    def __init__(
        self,
        step_fn: Callable[[Any], dict[str, float]],
        batches_per_epoch: int,
        epochs: int,
        hooks: Sequence[Hook] = (),
        start_step: int = 0,
        cancel: CancelFlag | None = None,
        *,
        data: Callable[[int], Iterable[Any]] | Iterable[Any] | None = None,
        max_steps: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        if batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be ≥ 1, got {batches_per_epoch}")
        self.step_fn = step_fn
        self.batches_per_epoch = int(batches_per_epoch)
        self.epochs = int(epochs)
        self.hooks = list(hooks)
        self.cancel = cancel
        self.data = data
        self.optimizer = optimizer
        total = self.batches_per_epoch * self.epochs
        self.total_steps = min(total, max_steps) if max_steps is not None else total
        self.start_step = int(start_step)
        self.step = self.start_step
        self.epoch = min(self.start_step // self.batches_per_epoch, max(0, self.epochs - 1))
        self.cancelled = False
        self.error: BaseException | None = None
        self.start_time = 0.0
        self._tick = 0.0
        self.last_stats: dict[str, Any] = {}

    def _batches(self, epoch: int) -> Iterator[Any]:
        if self.data is None:
            base = epoch * self.batches_per_epoch
            return iter(range(base, base + self.batches_per_epoch))
        if callable(self.data) and not hasattr(self.data, "__iter__"):
            return iter(self.data(epoch))
        sampler = getattr(self.data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        return iter(self.data)

    def _should_stop(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        return self.cancelled

    def run(self) -> TrainLoop:
        """Run to the end (or cancellation). Returns self."""
        self.start_time = self._tick = time.perf_counter()
        try:
            for hook in self.hooks:
                hook.before_train(self)
            self._run_epochs()
        except BaseException as exc:
            self.error = exc
            if isinstance(exc, KeyboardInterrupt):
                self.cancelled = True
            raise
        finally:
            for hook in self.hooks:
                hook.after_train(self)
        return self

    def _run_epochs(self) -> None:
        first_epoch = self.step // self.batches_per_epoch
        for epoch in range(first_epoch, self.epochs):
            if self.step >= self.total_steps or self._should_stop():
                return
            self.epoch = epoch
            skip = self.step - epoch * self.batches_per_epoch
            cut_short = False
            for index, batch in enumerate(self._batches(epoch)):
                if index >= self.batches_per_epoch:
                    break
                if self.step >= self.total_steps:
                    cut_short = True  # max_steps reached mid-epoch
                    break
                if index < skip:
                    continue  # seen before the run was interrupted
                if self._should_stop():
                    return
                self._one_step(batch)
            if not cut_short:
                for hook in self.hooks:
                    hook.after_epoch(self, epoch)
                self._tick = time.perf_counter()

    def _one_step(self, batch: Any) -> None:
        stats = dict(self.step_fn(batch))
        now = time.perf_counter()
        self.step += 1
        # Since the previous step's hooks finished: data loading counts, checkpoints do not.
        dt = max(now - self._tick, 1e-9)
        elapsed = now - self.start_time
        done = self.step - self.start_step
        stats.setdefault("lr", self._current_lr())
        images = stats.get("batch_size")
        stats.update(
            step=self.step,
            total_steps=self.total_steps,
            epoch=self.epoch + 1,
            # The epochs the run will reach: a step limit can end it before ``self.epochs``.
            epochs=min(self.epochs, -(-self.total_steps // self.batches_per_epoch)),
            images_per_s=float(images) / dt if images else 0.0,
            time=elapsed,
            eta_s=elapsed / done * (self.total_steps - self.step),
        )
        self.last_stats = stats
        for hook in self.hooks:
            hook.after_step(self, stats)
        self._tick = time.perf_counter()

    def _current_lr(self) -> float:
        if self.optimizer is None:
            return float("nan")
        return float(self.optimizer.param_groups[0]["lr"])
