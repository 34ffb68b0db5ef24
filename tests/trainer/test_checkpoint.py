"""Checkpoints: safetensors + JSON metadata, atomic, never unpickled, stage 1 -> stage 2."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from trainer import __version__
from trainer.checkpoint import load_checkpoint, load_model, read_metadata, save_checkpoint
from trainer.errors import CheckpointError
from trainer.models import build_model, get_preset


@pytest.fixture
def stage1(tmp_path):
    model = build_model(get_preset("tiny"), heads=("reconstruction",))
    path = save_checkpoint(
        tmp_path / "ssl.safetensors", model, "pretrain", {"training": {"epochs": 3}, "step": 7}
    )
    return model, path


def test_metadata_holds_what_a_researcher_needs(stage1):
    _, path = stage1
    meta = read_metadata(path)
    assert meta["stage"] == "pretrain"
    assert meta["model"]["preset"] == "tiny"
    assert meta["input_size"] == 64
    assert meta["normalization"]["mean"] == list(get_preset("tiny").mean)
    assert meta["training"] == {"epochs": 3}
    assert meta["package_version"] == __version__


def test_finetune_checkpoint_records_classes_subset_and_metrics(tmp_path):
    model = build_model(get_preset("tiny"))
    path = save_checkpoint(
        tmp_path / "ft.safetensors",
        model,
        "finetune",
        {"label_subset": ["a", "b"], "metrics": {"mean_f1": 0.5}},
    )
    meta = read_metadata(path)
    assert meta["classes"][2] == "left_eyebrow" and len(meta["classes"]) == 11
    assert meta["label_subset"] == ["a", "b"]
    assert meta["metrics"] == {"mean_f1": 0.5}


def test_stage1_loads_into_stage2_with_backbone_kept_and_a_fresh_fp_decoder(stage1):
    source, path = stage1
    model, ckpt = load_model(path, heads=("parsing",))
    assert ckpt.heads == ("reconstruction",)
    assert list(model.heads) == ["parsing"]
    for key, value in source.backbone_state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_weights_round_trip_exactly(stage1):
    source, path = stage1
    model, _ = load_model(path)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_optimizer_state_is_saved_for_resume(tmp_path):
    model = build_model(get_preset("tiny"), heads=("reconstruction",))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(1, 3, 64, 64), head="reconstruction").mean().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "r.safetensors", model, "pretrain", optimizer=opt)
    ckpt = load_checkpoint(path)
    again = torch.optim.AdamW(model.parameters(), lr=1e-3)
    again.load_state_dict(ckpt.optimizer_state)
    a, b = opt.state_dict()["state"][0], again.state_dict()["state"][0]
    assert torch.equal(a["exp_avg"], b["exp_avg"])


def test_truncated_file_gets_a_clear_error(stage1, tmp_path):
    _, path = stage1
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        load_checkpoint(broken)


def test_pickle_checkpoints_are_never_loaded(tmp_path):
    evil = tmp_path / "model.pt"

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle ran')",))

    evil.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(evil)


def test_foreign_safetensors_and_bad_metadata_are_refused(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="without faceparse metadata"):
        load_checkpoint(plain)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, other, metadata={"faceparse": json.dumps({"format": "x"})})
    with pytest.raises(CheckpointError, match="not a faceparse checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_failed_save_keeps_the_previous_checkpoint(stage1, monkeypatch):
    source, path = stage1
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("trainer.data.imageio.os.replace", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, source, "pretrain", {"step": 99})
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
