"""What the app asks of a training run, and the app's training defaults: the one place for both.

Qt-free and torch-free. The training panel shows :class:`TrainingSettings` (its defaults are the
app's), :class:`faceparse_app.loop_state.LoopState` turns them into a frozen
:class:`FinetuneRequest` or :class:`PretrainRequest`, and
:class:`faceparse_app.training_runs.TrainingRuns` runs it; the job functions in
``faceparse_app.training`` take their defaults from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

StartKey = Literal["project", "starter_parser", "starter", "file", "scratch"]

PRESETS = ("lite", "paper", "tiny")
DEFAULT_PRESET = "lite"
DEFAULT_DEVICE = "auto"  # the GPU when present, else the CPU


@dataclass(frozen=True)
class RunLength:
    """How long a run trains.

    Attributes:
        epochs: passes over the data.
        max_steps: stop after this many steps whatever the epochs (None: no limit).
        batch_size: images per step.
    """

    epochs: int
    batch_size: int
    max_steps: int | None = None


# The training form's limits (the spin boxes'), also the bounds a kept form must fit.
MAX_EPOCHS = 10_000
MAX_STEPS = 10_000_000
MAX_BATCH = 256

# Fine-tuning sees the few labeled faces many times; pretraining sees every photo of the project.
FINETUNE_LENGTH = RunLength(epochs=30, batch_size=4)
PRETRAIN_LENGTH = RunLength(epochs=10, batch_size=8)


@dataclass(frozen=True)
class TrainingSettings:
    """The training form: shared device and model size, and each kind of run's own length.

    Attributes:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        preset: model size when there is no backbone to start from (a backbone brings its own).
        finetune: the length of a fine-tuning run.
        pretrain: the length of a pretraining run.
    """

    device: str = DEFAULT_DEVICE
    preset: str = DEFAULT_PRESET
    finetune: RunLength = field(default=FINETUNE_LENGTH)
    pretrain: RunLength = field(default=PRETRAIN_LENGTH)


@dataclass(frozen=True)
class FinetuneRequest:
    """A fine-tuning start: train a parser on the labeled faces and publish it.

    Attributes:
        init: where it starts (see :class:`faceparse_app.loop_state.StartChoice`).
        init_path: the checkpoint of that start; None for "scratch".
        device, preset: as in :class:`TrainingSettings`.
        length: how long it trains.
    """

    init: StartKey = "scratch"
    init_path: Path | None = None
    device: str = DEFAULT_DEVICE
    preset: str = DEFAULT_PRESET
    length: RunLength = field(default=FINETUNE_LENGTH)


@dataclass(frozen=True)
class PretrainRequest:
    """A pretraining start: self-supervised training of a backbone on every project photo.

    Attributes:
        device, preset: as in :class:`TrainingSettings` (a resumed run keeps its own preset).
        length: how long it trains.
        resume: continue the project's unfinished run, if there is one.
        init_path: the backbone a fresh run continues (the project's, else the starter); None
            when resuming or when there is neither (random weights).
    """

    device: str = DEFAULT_DEVICE
    preset: str = DEFAULT_PRESET
    length: RunLength = field(default=PRETRAIN_LENGTH)
    resume: bool = True
    init_path: Path | None = None


def stored_settings(settings: TrainingSettings) -> dict[str, Any]:
    """The training form as JSON-ready data, kept between sessions (:func:`settings_from_stored`)."""
    return asdict(settings)


def settings_from_stored(stored: object, devices: Sequence[str]) -> TrainingSettings:
    """The training form kept by :func:`stored_settings`, field by field: a value that no longer
    fits (a device this machine lacks, an unknown preset, a length outside the form's limits)
    gives that field's default."""
    if not isinstance(stored, dict):
        return TrainingSettings()
    defaults = TrainingSettings()
    device = stored.get("device")
    preset = stored.get("preset")
    return TrainingSettings(
        device=device if device == DEFAULT_DEVICE or device in devices else defaults.device,
        preset=preset if preset in PRESETS else defaults.preset,
        finetune=_length(stored.get("finetune"), defaults.finetune),
        pretrain=_length(stored.get("pretrain"), defaults.pretrain),
    )


def _length(stored: object, default: RunLength) -> RunLength:
    if not isinstance(stored, dict):
        return default
    epochs, batch, steps = stored.get("epochs"), stored.get("batch_size"), stored.get("max_steps")

    def within(v: object, top: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= top

    if not (within(epochs, MAX_EPOCHS) and within(batch, MAX_BATCH)
            and (steps is None or within(steps, MAX_STEPS))):  # fmt: skip
        return default
    return RunLength(epochs=epochs, batch_size=batch, max_steps=steps)  # type: ignore[arg-type]


def available_devices() -> list[str]:
    """Devices this machine can train on: "cpu", then "cuda"/"cuda:N" and "mps" when present.

    Imports torch (seconds, once): call it where the window is composed, not in a widget.
    """
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        devices += ["cuda"] if count == 1 else [f"cuda:{i}" for i in range(count)]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices
