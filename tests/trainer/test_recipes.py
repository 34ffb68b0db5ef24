"""Named recipes and run configs: the CLI names recipes, a new recipe is one registry entry,
checkpoints keep their config (in the previous flat format too), and help says what flags do."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import synthetic_face, write_synthetic_lapa
from trainer import starter
from trainer.checkpoint import load_model, read_metadata, save_checkpoint
from trainer.cli import build_parser, main
from trainer.configs import FinetuneConfig, PretrainConfig, stored_config
from trainer.data.imageio import write_image
from trainer.models import build_model, get_preset
from trainer.recipes import (
    PRETRAIN_RECIPES,
    Entry,
    PretrainRecipe,
    finetune_recipe,
    pretrain_recipe,
    recipe_for_start,
)

PREVIOUS = json.loads((Path(__file__).parent / "data" / "previous_format_training.json").read_text())
TINY_PRETRAIN = ["--preset", "tiny", "--batch-size", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(4):
        write_image(root / f"face{i}.png", synthetic_face(64, seed=i)[0])
    return root


def _pretrain(photos: Path, out: Path, *flags: str) -> int:
    return main(
        ["-q", "pretrain", "--image-dirs", str(photos), "--out-dir", str(out), *TINY_PRETRAIN, *flags]
    )


def _set_training(path: Path, training: dict) -> None:
    """Rewrite a checkpoint's "training" metadata in place, as an older version wrote it (the
    weights' checksum covers the data section only, which stays as it was)."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["faceparse"])
    meta["training"] = training
    header["__metadata__"]["faceparse"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + size :])


def test_the_cli_names_a_recipe_and_a_flag_changes_one_setting(photos, tmp_path) -> None:
    assert _pretrain(photos, tmp_path / "spark", "--recipe", "spark", "--max-steps", "1") == 0
    stored = stored_config(read_metadata(tmp_path / "spark" / "pretrain_last.safetensors"))
    assert isinstance(stored, PretrainConfig)
    assert stored.recipe == pretrain_recipe("spark", batch_size=2, max_steps=1)
    assert stored.runtime.out_dir == str(tmp_path / "spark") and stored.preset == "tiny"

    lapa = write_synthetic_lapa(tmp_path / "lapa", {"train": 4})
    parser = save_checkpoint(tmp_path / "p.safetensors", build_model(get_preset("tiny")), "finetune")
    code = main([
        "-q", "finetune", "--data", str(lapa), "--out-dir", str(tmp_path / "ft"), "--init",
        f"ckpt:{parser}", "--recipe", recipe_for_start(f"ckpt:{parser}"), "--max-steps", "1",
        "--batch-size", "2", "--device", "cpu", "--no-progress-bar", "--dice-weight", "0.5",
    ])  # fmt: skip
    assert code == 0
    stored = stored_config(read_metadata(tmp_path / "ft" / "finetune_last.safetensors"))
    assert isinstance(stored, FinetuneConfig)
    assert stored.recipe == finetune_recipe(
        "continue-parser", max_steps=1, batch_size=2, dice_weight=0.5
    )
    assert stored.recipe.lr == 1e-3 and stored.data.root == str(lapa)
    assert stored.runtime.progress_bar is False  # runtime settings are kept apart from the recipe


def test_a_stage1_recipe_registered_with_one_entry_is_named_everywhere(
    photos, tmp_path, monkeypatch, capsys
) -> None:
    half = PretrainRecipe(loss_region="masked", norm_pix=True, mask_ratio=0.5)
    monkeypatch.setitem(PRETRAIN_RECIPES, "half", Entry(half, "half the central region masked"))
    assert main(["recipes"]) == 0
    assert "half: half the central region masked" in capsys.readouterr().out
    assert _pretrain(photos, tmp_path / "half", "--recipe", "half", "--max-steps", "1") == 0
    stored = stored_config(read_metadata(tmp_path / "half" / "pretrain_last.safetensors"))
    assert stored.recipe == pretrain_recipe("half", batch_size=2, max_steps=1)
    assert 0.4 < read_metadata(tmp_path / "half" / "pretrain_last.safetensors")["masked_share"] < 0.6
    with pytest.raises(ValueError, match="unknown stage-1 recipe 'halve'; choose one of"):
        pretrain_recipe("halve")


def test_checkpoints_of_the_previous_flat_format_load_resume_and_read_back(
    photos, tmp_path, capsys
) -> None:
    # A stage-1 run of the previous version, cancelled at step 1: its "training" was flat.
    out = tmp_path / "old"
    assert _pretrain(photos, out, "--max-steps", "1", "--epochs", "2") == 0
    last = out / "pretrain_last.safetensors"
    previous = {**PREVIOUS["pretrain"], "image_dirs": [str(photos)], "out_dir": str(out)}
    previous.update(preset="tiny", batch_size=2, max_steps=1, augment="flip")
    _set_training(last, previous)
    assert read_metadata(last)["training"] == previous  # as the previous version wrote it
    stored = stored_config(read_metadata(last))
    assert stored == PretrainConfig.from_flat({**previous, "image_dirs": (str(photos),)})
    assert stored.recipe.mask_ratio == 0.6 and stored.recipe.loss_region == "masked"
    assert stored.runtime.checkpoint_every == 3 and stored.image_dirs == (str(photos),)
    # ... and the run resumes from it.
    assert _pretrain(photos, out, "--max-steps", "2", "--epochs", "2", "--resume", str(last)) == 0
    assert read_metadata(last)["step"] == 2
    assert main(["info", str(last)]) == 0 and '"step": 2' in capsys.readouterr().out

    # A parser of the previous version: its config reads back, and training continues from it.
    torch.manual_seed(0)
    parser = save_checkpoint(
        tmp_path / "old_parser.safetensors", build_model(get_preset("tiny")), "finetune",
        meta={"training": PREVIOUS["finetune"]},
    )  # fmt: skip
    stored = stored_config(read_metadata(parser))
    assert isinstance(stored, FinetuneConfig)
    assert (stored.recipe.lr, stored.recipe.class_weighting, stored.recipe.head_only_share) == (
        0.005, "enet", 0.2,
    )  # fmt: skip
    assert (stored.data.root, stored.data.num_labeled, stored.data.framing) == ("DATA", 3, "whole")
    assert (stored.runtime.out_dir, stored.runtime.progress_bar) == ("OUT", False)
    lapa = write_synthetic_lapa(tmp_path / "lapa", {"train": 2})
    code = main([
        "-q", "finetune", "--data", str(lapa), "--out-dir", str(tmp_path / "ft"), "--init",
        f"ckpt:{parser}", "--max-steps", "1", "--batch-size", "2", "--device", "cpu",
    ])  # fmt: skip
    assert code == 0


@pytest.mark.uses_starter_models
def test_the_shipped_starters_read_back_the_config_they_were_built_with() -> None:
    backbone = stored_config(read_metadata(starter.STARTER_BACKBONE))
    assert isinstance(backbone, PretrainConfig)
    assert backbone.recipe == pretrain_recipe("spark", epochs=40, lr=3e-3)
    assert backbone.input_size == 128 and backbone.runtime.checkpoint_every == 50
    parser = stored_config(read_metadata(starter.STARTER_PARSER))
    assert isinstance(parser, FinetuneConfig)
    assert parser.init.startswith("ssl:") and parser.data.root is None
    assert parser.recipe == finetune_recipe("plain", epochs=10**6, max_steps=1200)
    load_model(starter.STARTER_PARSER)  # and the weights load


def test_a_flat_setting_that_does_not_exist_is_named() -> None:
    with pytest.raises(TypeError, match="FinetuneConfig has no setting lrr"):
        FinetuneConfig.from_flat({"out_dir": "x", "lrr": 0.1})
    config = FinetuneConfig.from_flat({"out_dir": "x", "lr": 0.1}, recipe="head-on-backbone")
    assert config.recipe == finetune_recipe("head-on-backbone", lr=0.1)
    assert config.changed(lr=0.2).recipe == finetune_recipe("head-on-backbone", lr=0.2)
    assert FinetuneConfig.from_stored(config.to_stored()) == config


# Evidence (scores, result files, issue numbers) belongs in BENCHMARKS.md, not in help.
EVIDENCE = re.compile(r"BENCHMARKS|bench/|results/|\bissue\b|[+−]\d+(\.\d+)? ?(mIoU|mean F1)|\d mIoU")


def test_help_says_what_each_command_and_flag_does_without_evidence() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    assert {"pretrain", "finetune", "recipes"} <= set(commands)
    for name, command in commands.items():
        text = command.format_help()
        assert not EVIDENCE.search(text), (name, EVIDENCE.search(text))
    assert not EVIDENCE.search(parser.format_help())


def test_recipes_and_configs_import_without_torch() -> None:
    # The app's training form shows recipes and settings without loading the model code.
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = "import sys, trainer.recipes, trainer.configs, trainer.run_files; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr
