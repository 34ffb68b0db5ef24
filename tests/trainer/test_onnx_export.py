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


def _with_meta(exported, tmp_path, edit, name="edited.onnx"):
    """The exported file with its faceparse metadata rewritten by ``edit(text) -> text``."""
    import onnx

    proto = onnx.load(str(exported))
    for entry in proto.metadata_props:
        if entry.key == "faceparse":
            entry.value = edit(entry.value)
    out = tmp_path / name
    out.write_bytes(proto.SerializeToString())
    return out


def _graph(tmp_path, module, inputs, meta_from, name):
    """A small graph exported with the metadata of a real export (what a hand-made or foreign
    .onnx file carrying copied metadata looks like)."""
    import json

    import onnx

    path = tmp_path / name
    torch.onnx.export(module.eval(), inputs, str(path), opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key = "faceparse"
    entry.value = next(e.value for e in onnx.load(str(meta_from)).metadata_props if e.key == "faceparse")
    json.loads(entry.value)
    path.write_bytes(proto.SerializeToString())
    return path


def _set_model_field(key, value):
    import json

    def edit(text):
        meta = json.loads(text)
        meta["model"][key] = value
        return json.dumps(meta)

    return edit


def test_onnx_file_with_bad_metadata_is_one_clear_error(exported, tmp_path):
    cases = {
        "not json": (lambda text: "{not json", "metadata"),
        "no model": (lambda text: '{"stage": "finetune"}', "no model config"),
        "num_classes 300": (_set_model_field("num_classes", 300), "num_classes 300"),
        "other input size": (_set_model_field("input_size", 96), r"\[batch, 3, 64, 64\].*input_size 96"),
    }
    for case, (edit, message) in cases.items():
        bad = _with_meta(exported, tmp_path, edit, name=f"{case.replace(' ', '_')}.onnx")
        with pytest.raises(CheckpointError, match=message) as caught:
            OnnxPredictor(bad)
        assert str(caught.value).startswith(str(bad)) and "\n" not in str(caught.value), case


class _ThreeOutputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 11, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y + 1, y * 2


def test_onnx_graph_of_the_wrong_shape_is_refused_at_load(exported, tmp_path):
    three = _graph(tmp_path, _ThreeOutputs(), (torch.rand(1, 3, 64, 64),), exported, "three.onnx")
    with pytest.raises(CheckpointError, match=r"three\.onnx: .*3 outputs"):
        OnnxPredictor(three)
    grey = _graph(
        tmp_path, torch.nn.Conv2d(1, 11, 3, padding=1), (torch.rand(1, 1, 64, 64),), exported,
        "grey.onnx",
    )
    with pytest.raises(CheckpointError, match=r"grey\.onnx: .*input .*\[1, 1, 64, 64\]"):
        OnnxPredictor(grey)
    classes = _graph(
        tmp_path, torch.nn.Conv2d(3, 5, 3, padding=1), (torch.rand(1, 3, 64, 64),), exported,
        "five.onnx",
    )
    with pytest.raises(CheckpointError, match=r"five\.onnx: .*output .*\[1, 5, 64, 64\]"):
        OnnxPredictor(classes)
