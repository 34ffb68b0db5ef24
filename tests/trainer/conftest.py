"""Fixtures shared by the trainer's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.checkpoint import save_checkpoint
from trainer.models import build_model, get_preset


@pytest.fixture(scope="module")
def parser_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained parser saved as a checkpoint (seeded: the same weights every run)."""
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "parser.safetensors"
    return save_checkpoint(path, model, stage="finetune", meta={})
