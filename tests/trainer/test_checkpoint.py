"""Checkpoints: safetensors + JSON metadata, atomic, never unpickled, stage 1 -> stage 2."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from trainer import __version__
from trainer.checkpoint import (
    CHECKSUM_KEY,
    load_checkpoint,
    load_model,
    read_metadata,
    save_checkpoint,
)
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


# ---------------------------------------------------------------------------------------------
# Damaged or edited files: one CheckpointError line, before any network is built


def _rewritten(path, tmp_path, edit_meta=None, edit_tensors=None, name="edited.safetensors"):
    """A copy of a checkpoint with its metadata and/or tensors changed (what an edit or a bad
    converter produces)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["faceparse"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit_meta is not None:
        edit_meta(meta)
    if edit_tensors is not None:
        edit_tensors(tensors)
    out = tmp_path / name
    save_file(tensors, str(out), metadata={"faceparse": json.dumps(meta)})
    return out


def _set_model(**changes):
    return lambda meta: meta["model"].update(changes)


BAD_METADATA = {
    "unknown preset": (_set_model(preset="huge"), r"preset 'huge'.*paper"),
    "num_classes 300": (_set_model(num_classes=300), r"num_classes 300.*'lapa' has 11"),
    "unknown encoder": (_set_model(encoder_name="resnet9000"), r"encoder 'resnet9000'"),
    "unknown label set": (_set_model(label_set="pets"), r"label set 'pets'"),
    "negative input size": (_set_model(input_size=-64), r"input_size -64"),
    "huge input size": (_set_model(input_size=100000), r"input_size 100000"),
    "input size of the wrong type": (_set_model(input_size="big"), r"input_size 'big'"),
    "decoder channels not numbers": (_set_model(decoder_channels="abc"), r"decoder_channels"),
    "no model key": (lambda meta: meta.pop("model"), r"no model config"),
    "format_version abc": (lambda meta: meta.update(format_version="abc"), r"format_version 'abc'"),
    "optimizer record damaged": (lambda meta: meta.update(optimizer=[1, 2]), r"optimizer"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_bad_metadata_is_one_clear_error(stage1, tmp_path, case) -> None:
    edit, message = BAD_METADATA[case]
    bad = _rewritten(stage1[1], tmp_path, edit_meta=edit)
    for reader in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=message) as caught:
            reader(bad)
        assert str(caught.value).startswith(str(bad)) and "\n" not in str(caught.value)


def test_a_tensor_of_the_wrong_shape_is_named(stage1, tmp_path) -> None:
    key = "encoder.features.0.0.weight"

    def shrink(tensors):
        tensors[key] = tensors[key][:8]

    bad = _rewritten(stage1[1], tmp_path, edit_tensors=shrink)
    with pytest.raises(CheckpointError, match=rf"{key} is \(8, 3, 3, 3\).*\(32, 3, 3, 3\)"):
        load_model(bad)


def test_weights_of_another_preset_are_refused(stage1, tmp_path) -> None:
    # The tiny network's weights under the lite preset's config.
    bad = _rewritten(stage1[1], tmp_path, edit_meta=_set_model(**get_preset("lite").to_dict()))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(bad)


def test_huge_decoder_channels_are_refused_before_anything_is_allocated(
    stage1, tmp_path, monkeypatch
) -> None:
    # Metadata promising 8192-channel decoder layers over the tiny network's 11 MB of weights:
    # building that network first would allocate gigabytes.
    bad = _rewritten(
        stage1[1], tmp_path, edit_meta=_set_model(decoder_channels=[8192, 8192, 8192, 8192, 16])
    )

    def no_real_build(*args, **kwargs):
        raise AssertionError("a network was built before the weights were checked")

    monkeypatch.setattr("trainer.checkpoint.build_model", no_real_build)
    with pytest.raises(CheckpointError, match=r"decoder.*do not match|is \(.*\) but"):
        load_model(bad)


@pytest.mark.uses_starter_models
def test_the_shipped_starter_models_still_load() -> None:
    from trainer.starter import STARTER_DIR

    for name in ("starter_backbone.safetensors", "starter_parser.safetensors"):
        model, ckpt = load_model(STARTER_DIR / name)
        assert ckpt.config.preset == "lite"


def _flip_a_data_byte(path, out):
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + len(data[8 + header :]) // 2] ^= 0x10  # one bit, mid-way into the weights
    out.write_bytes(bytes(data))
    return out


def test_flipped_bits_in_the_weights_are_caught(stage1, tmp_path) -> None:
    assert len(read_metadata(stage1[1])["tensor_sha256"]) == 64
    damaged = _flip_a_data_byte(stage1[1], tmp_path / "flipped.safetensors")
    with pytest.raises(CheckpointError, match=r"flipped\.safetensors: damaged: tensor data does not match"):
        load_model(damaged)


@pytest.mark.uses_starter_models
@pytest.mark.parametrize("name", ["starter_backbone.safetensors", "starter_parser.safetensors"])
def test_flipped_bits_in_a_shipped_starter_model_are_caught(tmp_path, name) -> None:
    # The starter models were written before the checksum: the ones every new project starts
    # from loaded with any bit flipped.
    from trainer.starter import STARTER_DIR

    starter = STARTER_DIR / name
    if not starter.is_file():
        pytest.skip(f"{starter} is not in this checkout")
    assert CHECKSUM_KEY not in read_metadata(starter)
    load_checkpoint(starter)  # the shipped file itself is sound
    damaged = _flip_a_data_byte(starter, tmp_path / name)
    with pytest.raises(CheckpointError, match="damaged: tensor data does not match"):
        load_checkpoint(damaged)


def test_checkpoints_written_before_the_checksum_still_load(stage1, tmp_path) -> None:
    older = _rewritten(stage1[1], tmp_path, edit_meta=lambda meta: meta.pop("tensor_sha256", None))
    model, _ = load_model(older)
    for key, value in stage1[0].state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_pickle_named_safetensors_is_refused_as_a_pickle(stage1, tmp_path) -> None:
    disguised = tmp_path / "model.safetensors"
    torch.save({"model": {"w": torch.zeros(2)}}, disguised)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .*pickle"):
        load_checkpoint(disguised)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .*pickle"):
        read_metadata(disguised)
