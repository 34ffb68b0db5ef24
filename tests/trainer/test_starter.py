"""The starter models shipped in trainer/assets/models: present, small, safe to load, useful, and what a
bare ``--init ssl`` / ``--init ckpt`` starts from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer import starter
from trainer.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from trainer.cli import main as cli_main
from trainer.data.lapa import LapaDataset
from trainer.data.sample import Sample
from trainer.errors import CheckpointError
from trainer.evaluate import evaluate
from trainer.finetune import FinetuneConfig, finetune_on_samples
from trainer.models import build_model, get_preset
from trainer.predict import Predictor

MAX_BYTES = 30_000_000  # "each under 30 MB"


@pytest.mark.parametrize(
    ("path", "stage"),
    [(starter.STARTER_BACKBONE, "pretrain"), (starter.STARTER_PARSER, "finetune")],
)
def test_starter_files_are_small_safetensors_with_a_model_card(path, stage):
    assert path.is_file(), f"{path} is missing: build it with python -m bench.build_starters"
    assert path.stat().st_size < MAX_BYTES
    meta = read_metadata(path)
    assert meta["stage"] == stage and meta["model"]["encoder_name"] == "mobilenet_v2"
    card = meta["model_card"]
    # built_by: "bench/build_starters.py ..." (the shipped files), "python -m bench.build_starters ..."
    assert "research" in card["licence"] and "build_starters" in card["built_by"]
    ckpt = load_checkpoint(path)
    assert ckpt.optimizer_state is None  # weights only
    assert (starter.STARTER_DIR / "MODEL_CARD.md").is_file()


def test_the_starter_parser_labels_unseen_real_faces(shared_data):
    """HELEN faces were never trained on: every part is found, most pixels right."""
    helen = LapaDataset(shared_data / "lapa-format-helen", split="test")
    scores = evaluate(Predictor.from_checkpoint(starter.STARTER_PARSER, device="cpu"), helen)
    assert scores["mean_f1"] > 0.6, scores["mean_f1"]
    assert all(s["f1"] > 0.2 for s in scores["per_class"].values()), scores["per_class"]


def test_bare_ssl_and_ckpt_resolve_to_the_starters(tmp_path, monkeypatch):
    assert starter.resolve_init("ssl") == f"ssl:{starter.STARTER_BACKBONE}"
    assert starter.resolve_init("ckpt") == f"ckpt:{starter.STARTER_PARSER}"
    assert starter.resolve_init("ssl:/x.safetensors") == "ssl:/x.safetensors"
    assert starter.resolve_init("scratch") == "scratch"
    monkeypatch.setattr(starter, "STARTER_BACKBONE", tmp_path / "gone.safetensors")
    with pytest.raises(CheckpointError, match="starter backbone .* is missing"):
        starter.resolve_init("ssl")


def test_finetune_init_ssl_starts_from_the_starter_backbone(tmp_path, face):
    image, label = face
    config = FinetuneConfig.from_flat(dict(
        out_dir=str(tmp_path), init="ssl", input_size=64, max_steps=1, batch_size=2,
        val_split=None, progress_bar=False,
    ))  # fmt: skip
    faces = [Sample(image, label, name, Path(name), None) for name in ("a", "b")]
    result = finetune_on_samples(config, faces, None)
    meta = read_metadata(result.last_path)
    assert meta["init_checkpoint"] == str(starter.STARTER_BACKBONE)
    assert meta["model"]["encoder_name"] == "mobilenet_v2"


def test_cli_names_the_missing_starter(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(starter, "STARTER_PARSER", tmp_path / "gone.safetensors")
    code = cli_main(["finetune", "--data", str(tmp_path), "--out-dir", str(tmp_path / "o"), "--init", "ckpt"])
    assert code != 0
    assert "starter parser" in capsys.readouterr().err


def test_weights_only_copy_predicts_the_same_and_drops_the_optimizer(tmp_path):
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.rand(1, 3, 64, 64)).sum().backward()
    optimizer.step()
    full = save_checkpoint(tmp_path / "full.safetensors", model, "finetune", {"step": 3}, optimizer)
    slim = starter.write_weights_only(full, tmp_path / "slim.safetensors", {"model_card": {"a": 1}})
    assert slim.stat().st_size < full.stat().st_size
    meta = read_metadata(slim)
    assert meta["step"] == 3 and meta["model_card"] == {"a": 1} and "optimizer" not in meta
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    a = Predictor.from_checkpoint(full, device="cpu")(image)
    b = Predictor.from_checkpoint(slim, device="cpu")(image)
    assert np.array_equal(a.label, b.label)
    json.dumps(meta)  # the header stays plain JSON


def test_weights_only_copy_can_name_the_side_it_is_used_at(tmp_path):
    """A backbone pretrained on small photos ships named at the side it is fine-tuned at."""
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",))  # 64 px
    small = save_checkpoint(tmp_path / "small.safetensors", model, "finetune")
    copy = starter.write_weights_only(small, tmp_path / "copy.safetensors", input_size=128)
    assert read_metadata(copy)["input_size"] == 128
    predictor = Predictor.from_checkpoint(copy, device="cpu")
    assert predictor.model_info["input_size"] == 128
    same = Predictor.from_checkpoint(small, device="cpu").model.state_dict()
    for name, tensor in predictor.model.state_dict().items():
        assert torch.equal(tensor, same[name]), name
