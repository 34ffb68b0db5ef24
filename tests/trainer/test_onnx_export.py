"""ONNX export: parity with torch, metadata travels, bad inputs refused, OnnxPredictor ≡ Predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_face
from trainer import onnx_export
from trainer.checkpoint import save_checkpoint
from trainer.errors import CheckpointError, FaceParseError
from trainer.evaluate import evaluate
from trainer.models import build_model, get_preset
from trainer.onnx_export import OnnxPredictor, export_onnx
from trainer.predict import Predictor


@pytest.fixture(scope="module")
def parser_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",)).eval()
    # A few BatchNorm statistics away from their defaults, as after training.
    with torch.no_grad():
        model(model.normalize(torch.rand(4, 3, 64, 64)))
    path = tmp_path_factory.mktemp("onnx") / "parser.safetensors"
    save_checkpoint(path, model, "finetune", {"metrics": {"mean_f1": 0.5}})
    return path


@pytest.fixture(scope="module")
def exported(parser_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_out") / "parser.onnx"
    return export_onnx(parser_ckpt, out)


def test_onnx_predictor_gives_the_same_label_map_as_torch(parser_ckpt, exported):
    image, label = synthetic_face(size=80, seed=3)  # not the input size: both resize the same way
    torch_pred = Predictor.from_checkpoint(parser_ckpt, device="cpu")
    onnx_pred = OnnxPredictor(exported)
    a = torch_pred.logits([image]).numpy()
    b = onnx_pred.logits([image]).numpy()
    assert np.abs(a - b).max() <= onnx_export.PARITY_TOLERANCE
    pa, pb = torch_pred(image), onnx_pred(image)
    assert pb.label.shape == image.shape[:2]
    # Near-ties may flip a handful of pixels; the pre-label a user sees must be the same.
    assert (pa.label == pb.label).mean() > 0.999
    assert np.abs(pa.confidence - pb.confidence).max() < 1e-3


def test_onnx_file_carries_the_checkpoint_metadata(exported):
    predictor = OnnxPredictor(exported)
    info = predictor.model_info
    assert info["preset"] == "tiny"
    assert info["input_size"] == 64
    assert info["runtime"] == "onnxruntime"
    assert info["metrics"] == {"mean_f1": 0.5}
    assert predictor.class_names[4] == "left_eye"


def test_evaluate_accepts_an_onnx_predictor(exported):
    samples = [synthetic_face(size=64, seed=s) for s in range(2)]
    results = evaluate(OnnxPredictor(exported), samples, batch_size=2)
    assert results["num_images"] == 2 and 0.0 <= results["miou"] <= 1.0


def test_export_at_another_input_size(parser_ckpt, tmp_path):
    path = export_onnx(parser_ckpt, tmp_path / "p96.onnx", input_size=96)
    predictor = OnnxPredictor(path)
    assert predictor.input_size == 96
    image, _ = synthetic_face(size=64, seed=1)
    assert predictor(image).label.shape == (64, 64)
    with pytest.raises(FaceParseError, match="multiple of 32"):
        export_onnx(parser_ckpt, tmp_path / "bad.onnx", input_size=100)


def test_failed_parity_check_writes_nothing(parser_ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # any difference now fails
    out = tmp_path / "p.onnx"
    with pytest.raises(FaceParseError, match="parity"):
        export_onnx(parser_ckpt, out)
    assert not out.exists()


def test_stage1_backbone_is_refused(tmp_path):
    model = build_model(get_preset("tiny"), heads=("reconstruction",))
    ckpt = save_checkpoint(tmp_path / "stage1.safetensors", model, "pretrain")
    with pytest.raises(CheckpointError, match="parsing head"):
        export_onnx(ckpt, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_missing_or_foreign_onnx_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        OnnxPredictor(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        OnnxPredictor(junk)


def test_cli_export_onnx_writes_a_checked_file_and_refuses_a_backbone(parser_ckpt, tmp_path, capsys):
    from trainer.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export-onnx", str(parser_ckpt), str(out)]) == 0
    assert out.is_file() and "parity checked" in capsys.readouterr().out
    backbone = tmp_path / "ssl.safetensors"
    save_checkpoint(backbone, build_model(get_preset("tiny"), heads=("reconstruction",)), "pretrain")
    assert main(["export-onnx", str(backbone), str(tmp_path / "no.onnx")]) == 2
    assert "ssl.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "no.onnx").exists()
