"""The pre-label runtime chosen per model and host: self-checked once, cached, never a broken one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import synthetic_face
from trainer import runtime_choice
from trainer.onnx_export import OnnxPredictor
from trainer.runtime_choice import CACHE_NAME, load_predictor, read_choices


def _only_entry(cache: Path) -> dict:
    choices = read_choices(cache)
    assert len(choices) == 1
    return next(iter(choices.values()))


def test_auto_checks_once_then_reads_the_cached_choice(parser_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    first = load_predictor(parser_ckpt, device="cpu", framing="whole", cache_dir=tmp_path)
    entry = _only_entry(tmp_path)
    assert entry["runtime"] in ("torch", "onnxruntime")
    assert entry["torch_s"] > 0 and entry["onnxruntime_s"] > 0
    assert first.model_info["runtime"] == entry["runtime"]

    def no_second_check(*args, **kwargs):
        raise AssertionError("the self-check ran again although the choice was cached")

    monkeypatch.setattr(runtime_choice, "self_check", no_second_check)
    second = load_predictor(parser_ckpt, device="cpu", framing="whole", cache_dir=tmp_path)
    assert second.model_info["runtime"] == entry["runtime"]
    image, _ = synthetic_face(64, 1)
    assert (first(image).label == second(image).label).mean() > 0.999


def test_a_cached_onnx_choice_that_fails_to_load_falls_back_to_torch(
    parser_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    choices = read_choices(tmp_path)
    key = next(iter(choices))
    choices[key] = {"runtime": "onnxruntime", "reason": "planted"}
    (tmp_path / CACHE_NAME).write_text(json.dumps(choices))

    def broken(*args, **kwargs):
        raise RuntimeError("onnxruntime is broken on this host")

    monkeypatch.setattr(OnnxPredictor, "__init__", broken)
    predictor = load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    assert predictor.model_info["runtime"] == "torch"
    entry = _only_entry(tmp_path)
    assert entry["runtime"] == "torch" and "broken" in entry["reason"]


def test_a_runtime_that_disagrees_with_torch_is_never_chosen(
    parser_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    real = OnnxPredictor.logits
    monkeypatch.setattr(OnnxPredictor, "logits", lambda self, images: real(self, images) + 0.1)
    predictor = load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    assert predictor.model_info["runtime"] == "torch"
    assert "differ" in _only_entry(tmp_path)["reason"]


def test_without_onnxruntime_every_model_runs_in_torch(parser_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    from trainer.errors import FaceParseError

    def missing(*args, **kwargs):
        raise FaceParseError("ONNX export needs the optional package 'onnxruntime'")

    monkeypatch.setattr("trainer.onnx_export.export_onnx", missing)
    predictor = load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    assert predictor.model_info["runtime"] == "torch"
    assert "unavailable" in _only_entry(tmp_path)["reason"]


def test_a_corrupt_cache_file_is_replaced(parser_ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / CACHE_NAME).write_text("{not json")
    load_predictor(parser_ckpt, device="cpu", cache_dir=tmp_path)
    assert _only_entry(tmp_path)["runtime"] in ("torch", "onnxruntime")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_forced_runtimes(parser_ckpt: Path, tmp_path: Path) -> None:
    ort = load_predictor(parser_ckpt, device="cpu", runtime="onnxruntime", cache_dir=tmp_path)
    assert isinstance(ort, OnnxPredictor)
    assert load_predictor(parser_ckpt, device="cpu", runtime="torch").model_info["runtime"] == "torch"
    assert not (tmp_path / CACHE_NAME).exists()  # a forced runtime is not a choice to remember
    with pytest.raises(ValueError, match="auto, torch, onnxruntime"):
        load_predictor(parser_ckpt, device="cpu", runtime="tensorrt")
    assert np.isfinite(ort.logits([synthetic_face(64, 0)[0]]).numpy()).all()
