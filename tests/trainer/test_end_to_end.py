"""pretrain -> finetune --init ssl:<ckpt> -> evaluate -> predict on 64×64 faces, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_synthetic_lapa
from trainer.checkpoint import read_metadata
from trainer.cli import main


@pytest.mark.slow
def test_pretrain_finetune_evaluate_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_synthetic_lapa(tmp_path / "lapa", {"train": 6, "val": 2, "test": 2})
    common = ["--preset", "tiny", "--device", "cpu"]

    assert main([
        "pretrain", "--image-dirs", str(data / "train" / "images"), "--out-dir", str(tmp_path / "pre"),
        "--batch-size", "2", "--max-steps", "2", *common,
    ]) == 0
    stage1 = tmp_path / "pre" / "pretrain_last.safetensors"
    assert read_metadata(stage1)["stage"] == "pretrain"

    assert main([
        "finetune", "--data", str(data), "--out-dir", str(tmp_path / "ft"), "--init", f"ssl:{stage1}",
        "--num-labeled", "4", "--batch-size", "2", "--max-steps", "3", "--no-progress-bar", *common,
    ]) == 0
    best = tmp_path / "ft" / "finetune_best.safetensors"
    meta = read_metadata(best)
    assert meta["stage"] == "finetune" and meta["init"] == f"ssl:{stage1}"
    assert len(meta["label_subset"]) == 4 and meta["metrics"]["mean_f1"] is not None

    metrics_json = tmp_path / "metrics.json"
    assert main([
        "evaluate", str(best), "--data", str(data), "--split", "test", "--json", str(metrics_json),
        "--device", "cpu",
    ]) == 0
    results = json.loads(metrics_json.read_text())
    assert results["num_images"] == 2 and 0.0 <= results["miou"] <= 1.0

    assert main(["predict", str(best), str(data / "test" / "images"), str(tmp_path / "pred"), "--device", "cpu"]) == 0
    for name in ("test_000.png", "test_001.png"):
        with Image.open(tmp_path / "pred" / name) as im:
            assert im.mode == "L" and im.size == (64, 64)
            assert np.asarray(im).max() < 11
    out = capsys.readouterr().out
    assert "mean F1 (fg)" in out and "wrote 2 label maps" in out
