"""The starter models shipped inside the package (``trainer/assets/models/``), and
weights-only copies.

- ``starter_backbone.safetensors``: stage 1 (lite preset) on every shared photo; what
  ``faceparse finetune --init ssl`` (no path) and the app's fine-tuning start from when a project
  has no backbone of its own.
- ``starter_parser.safetensors``: that backbone fine-tuned on the 700 labeled dev faces; the app
  pre-labels with it until a project has a parser of its own (``--init ckpt`` with no path).

They are package data, found through :mod:`importlib.resources`, so a wheel or a non-editable
``pip install .`` has them as a source checkout does. ``MODEL_CARD.md`` beside them says how they
were built and what they may be used for.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any

from trainer.checkpoint import load_model, save_checkpoint
from trainer.errors import CheckpointError

# Installed packages are plain folders (wheels are unpacked), so the resource is a real path.
STARTER_DIR = Path(str(files("trainer") / "assets" / "models"))
STARTER_BACKBONE = STARTER_DIR / "starter_backbone.safetensors"
STARTER_PARSER = STARTER_DIR / "starter_parser.safetensors"
_WRITTEN_BY_SAVE = (
    "format", "format_version", "package_version", "created", "stage", "model", "classes",
    "input_size", "normalization", "optimizer",
)  # fmt: skip


def resolve_init(init: str) -> str:
    """Expand a bare ``ssl`` / ``ckpt`` init to the shipped starter backbone / parser.

    Raises:
        CheckpointError: the starter file is not there (an installation without them).
    """
    for kind, path, what in (
        ("ssl", STARTER_BACKBONE, "backbone"),
        ("ckpt", STARTER_PARSER, "parser"),
    ):
        if init in (kind, f"{kind}:"):
            if not path.is_file():
                raise CheckpointError(
                    f"--init {kind}: the starter {what} {path} is missing; give a checkpoint "
                    f"with --init {kind}:<path> or use --init scratch"
                )
            return f"{kind}:{path}"
    return init


def write_weights_only(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    extra_meta: dict[str, Any] | None = None,
    input_size: int | None = None,
) -> Path:
    """Copy a checkpoint without its optimizer state (a third of a resumable file's size).

    Args:
        extra_meta: keys added to (or replacing) the stored metadata, e.g. a model card summary.
        input_size: the input side the copy names (default: the source's). A backbone pretrained
            on smaller photos is named at the side it is meant to be fine-tuned and used at; the
            network is fully convolutional, so only the stored side changes.
    """
    model, ckpt = load_model(src)
    if ckpt.stage not in ("pretrain", "finetune"):
        raise CheckpointError(f"{src}: unknown stage {ckpt.stage!r}")
    if input_size is not None:
        model.config = model.config.with_overrides(input_size=input_size)
    # save_checkpoint writes the format, model config, classes and normalisation itself.
    meta = {k: v for k, v in ckpt.meta.items() if k not in _WRITTEN_BY_SAVE}
    meta.update(extra_meta or {})
    return save_checkpoint(dst, model, ckpt.stage, meta)
