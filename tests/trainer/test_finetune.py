"""Stage 2: labeled subsets, initialisation, best-checkpoint keeping, and learning."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_face, write_synthetic_lapa
from trainer.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from trainer.configs import FinetuneConfig, stored_config
from trainer.data.lapa import LapaDataset
from trainer.data.sample import Sample
from trainer.errors import CheckpointError, DatasetError, FaceParseError
from trainer.finetune import finetune, finetune_on_samples
from trainer.finetune_model import build_finetune_model
from trainer.metrics import ConfusionMatrix
from trainer.models import build_model, get_preset
from trainer.subsets import select_labeled_subset

NAMES = [f"img{i:04d}" for i in range(200)]


# ---------------------------------------------------------------------------------------------
# Label subsets


def test_subset_is_seeded_sorted_and_independent_of_listing_order() -> None:
    a = select_labeled_subset(NAMES, num_labeled=10, seed=3)
    assert a == sorted(a) and len(a) == 10
    assert select_labeled_subset(list(reversed(NAMES)), num_labeled=10, seed=3) == a
    assert select_labeled_subset(NAMES, num_labeled=10, seed=4) != a


def test_subsets_are_nested_for_one_seed() -> None:
    small = select_labeled_subset(NAMES, num_labeled=5, seed=1)
    large = select_labeled_subset(NAMES, num_labeled=10, seed=1)
    assert set(small) < set(large)
    assert set(select_labeled_subset(NAMES, fraction=0.1, seed=1)) > set(large)


def test_fraction_and_count_modes() -> None:
    assert len(select_labeled_subset(NAMES, fraction=0.002)) == 1  # never zero
    assert len(select_labeled_subset(NAMES, fraction=0.1)) == 20
    assert select_labeled_subset(NAMES, fraction=0.1) == select_labeled_subset(NAMES, num_labeled=20)
    assert select_labeled_subset(NAMES, num_labeled=500) == NAMES
    assert select_labeled_subset(NAMES) == NAMES
    with pytest.raises(ValueError):
        select_labeled_subset(NAMES, fraction=0.1, num_labeled=3)
    with pytest.raises(ValueError):
        select_labeled_subset(NAMES, fraction=1.5)


# ---------------------------------------------------------------------------------------------
# Fixtures: a synthetic LaPa tree and a stage-1 checkpoint


@pytest.fixture(scope="module")
def lapa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_lapa(tmp_path_factory.mktemp("data") / "lapa", {"train": 16, "val": 4})


@pytest.fixture(scope="module")
def ssl_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(123)  # weights unlike any fresh initialisation
    model = build_model(get_preset("tiny"), heads=("reconstruction",))
    path = tmp_path_factory.mktemp("pre") / "pretrain_last.safetensors"
    return save_checkpoint(path, model, stage="pretrain", meta={"step": 7})


def _config(lapa: Path, out: Path, **changes) -> FinetuneConfig:
    base = dict(
        data=str(lapa), out_dir=str(out), preset="tiny", batch_size=4, epochs=1, max_steps=1,
        device="cpu", warmup_steps=0, progress_bar=False,
    )
    base.update(changes)
    return FinetuneConfig.from_flat(base)


# ---------------------------------------------------------------------------------------------
# Initialisation


def test_ssl_init_keeps_encoder_and_decoder_and_adds_a_new_fp_head(
    lapa: Path, ssl_ckpt: Path, tmp_path: Path
) -> None:
    stage1 = load_checkpoint(ssl_ckpt).model_state
    model, origin = build_finetune_model(_config(lapa, tmp_path, init=f"ssl:{ssl_ckpt}"))
    state = model.state_dict()
    backbone = model.backbone_state_dict()
    assert backbone and all(torch.equal(v, stage1[k]) for k, v in backbone.items())
    assert set(model.heads) == {"parsing"}
    assert state["heads.parsing.weight"].shape == (11, 16, 3, 3)
    assert origin["init_checkpoint"] == str(ssl_ckpt)
    # The preset and input size come from the checkpoint, whatever --preset says.
    assert model.config.preset == "tiny"

    # Through a whole (zero learning rate) run too: the published parser holds that backbone.
    result = finetune(_config(lapa, tmp_path / "run", init=f"ssl:{ssl_ckpt}", lr=0.0))
    published = load_checkpoint(result.last_path).model_state
    weights = [k for k in backbone if k.endswith(".weight")]
    assert all(torch.equal(published[k], stage1[k]) for k in weights)

    scratch, _ = build_finetune_model(_config(lapa, tmp_path, init="scratch"))
    key = next(k for k in backbone if k.startswith("decoder.") and k.endswith("weight"))
    assert not torch.equal(scratch.state_dict()[key], backbone[key])


def test_head_only_steps_keep_the_stage1_backbone_until_they_end(
    lapa: Path, ssl_ckpt: Path, tmp_path: Path
) -> None:
    stage1 = load_checkpoint(ssl_ckpt).model_state
    weights = [k for k in stage1 if k.endswith(".weight") and not k.startswith("heads.")]

    def changed(steps: int) -> tuple[int, bool]:
        config = _config(
            lapa, tmp_path / f"run{steps}", init=f"ssl:{ssl_ckpt}", epochs=100,
            max_steps=steps, warmup_steps=2, head_only_steps=3, val_split=None,
        )
        state = load_checkpoint(finetune(config).last_path).model_state
        head_moved = not torch.equal(state["heads.parsing.weight"], _fresh_head(ssl_ckpt))
        return sum(not torch.equal(state[k], stage1[k]) for k in weights), head_moved

    assert changed(3) == (0, True)  # the FP decoder learns; the backbone is untouched
    moved, _ = changed(5)
    assert moved == len(weights)  # then the whole network trains
    with pytest.raises(ValueError, match="head_only_steps"):
        _config(lapa, tmp_path, head_only_steps=-1)


def test_head_only_share_holds_that_share_of_a_run_and_logs_it(
    lapa: Path, ssl_ckpt: Path, tmp_path: Path
) -> None:
    config = _config(
        lapa, tmp_path / "run", init=f"ssl:{ssl_ckpt}", epochs=100, max_steps=5,
        warmup_steps=1, head_only_share=0.4, val_split=None,
    )  # fmt: skip
    result = finetune(config)
    log = [json.loads(line) for line in (tmp_path / "run" / "finetune_log.jsonl").read_text().splitlines()]
    assert [r["backbone_held"] for r in log] == [True, True, False, False, False]
    assert read_metadata(result.last_path)["backbone_held_steps"] == 2
    # A fixed hold longer than the share wins.
    longer = config.changed(out_dir=str(tmp_path / "run2"), head_only_steps=3)
    assert read_metadata(finetune(longer).last_path)["backbone_held_steps"] == 3
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="head_only_share"):
            _config(lapa, tmp_path, head_only_share=bad)


def _fresh_head(ssl_ckpt: Path) -> torch.Tensor:
    """The FP decoder a fine-tune from ``ssl_ckpt`` starts with (seed 0)."""
    torch.manual_seed(0)
    model, _ = build_finetune_model(
        FinetuneConfig.from_flat(dict(out_dir="", init=f"ssl:{ssl_ckpt}", device="cpu"))
    )
    return model.state_dict()["heads.parsing.weight"]


def test_ckpt_init_continues_a_parser_and_imagenet_asks_for_imagenet_weights(
    lapa: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = build_model(get_preset("tiny"))
    path = save_checkpoint(tmp_path / "parser.safetensors", parser, stage="finetune")
    model, _ = build_finetune_model(_config(lapa, tmp_path, init=f"ckpt:{path}"))
    assert torch.equal(model.state_dict()["heads.parsing.weight"], parser.state_dict()["heads.parsing.weight"])

    asked: list[str | None] = []

    def fake_build(config, heads, encoder_weights=None):
        asked.append(encoder_weights)
        return build_model(config, heads)

    monkeypatch.setattr("trainer.finetune_model.build_model", fake_build)
    build_finetune_model(_config(lapa, tmp_path, init="imagenet"))
    build_finetune_model(_config(lapa, tmp_path, init="scratch"))
    assert asked == ["imagenet", None]


def test_bad_init_is_a_clear_error(lapa: Path, tmp_path: Path) -> None:
    with pytest.raises(FaceParseError, match="--init"):
        _config(lapa, tmp_path, init="imagenet:weights.pth")  # (bare ssl is the starter backbone)
    with pytest.raises(FaceParseError, match="--init"):
        _config(lapa, tmp_path, init="ssl-typo")
    parser = save_checkpoint(
        tmp_path / "parser.safetensors", build_model(get_preset("tiny")), stage="finetune"
    )
    with pytest.raises(CheckpointError, match="ckpt:"):
        build_finetune_model(_config(lapa, tmp_path, init=f"ssl:{parser}"))
    with pytest.raises(CheckpointError, match="not found"):
        build_finetune_model(_config(lapa, tmp_path, init=f"ssl:{tmp_path / 'none.safetensors'}"))
    stage1 = save_checkpoint(
        tmp_path / "pre.safetensors", build_model(get_preset("tiny"), ("reconstruction",)), "pretrain"
    )
    with pytest.raises(CheckpointError, match="ssl:"):
        build_finetune_model(_config(lapa, tmp_path, init=f"ckpt:{stage1}"))


def test_same_subset_for_every_init_recorded_in_the_checkpoint(
    lapa: Path, ssl_ckpt: Path, tmp_path: Path
) -> None:
    expected = select_labeled_subset(LapaDataset(lapa).names, num_labeled=3, seed=5)
    for init in ("scratch", f"ssl:{ssl_ckpt}"):
        out = tmp_path / init.split(":")[0]
        result = finetune(_config(lapa, out, init=init, num_labeled=3, subset_seed=5))
        for path in (result.best_path, result.last_path):
            meta = read_metadata(path)
            assert meta["label_subset"] == expected
            assert meta["subset_seed"] == 5 and meta["num_labeled"] == 3
            assert meta["stage"] == "finetune" and meta["init"] == init
            assert stored_config(meta).data.num_labeled == 3


def test_class_weighting_weighs_the_small_parts_up_and_changes_the_loss(
    lapa: Path, tmp_path: Path
) -> None:
    first_losses = {}
    for scheme in ("none", "enet"):
        out = tmp_path / scheme
        result = finetune(_config(lapa, out, class_weighting=scheme, num_labeled=4, augment=False))
        first_step = (out / "finetune_log.jsonl").read_text().splitlines()[0]
        first_losses[scheme] = json.loads(first_step)["loss"]
        meta = read_metadata(result.last_path)
        assert stored_config(meta).recipe.class_weighting == scheme
    weights = meta["class_weights"]
    assert len(weights) == 11
    skin, eye, hair = weights[1], weights[4], weights[10]
    assert eye > 3 * skin and eye > 3 * hair  # eyes are a small share of the synthetic faces
    assert first_losses["enet"] != pytest.approx(first_losses["none"], rel=1e-3)
    with pytest.raises(ValueError, match="class_weighting"):
        _config(lapa, tmp_path, class_weighting="inverse")


# ---------------------------------------------------------------------------------------------
# Training


def _trivial_mean_f1(lapa: Path) -> float:
    """Mean F1 of predicting skin everywhere on the val split."""
    cm = ConfusionMatrix(11)
    val = LapaDataset(lapa, split="val")
    for i in range(len(val)):
        label = val[i].label
        cm.update(np.ones_like(label), label)
    return cm.mean_f1()


def test_learns_the_synthetic_faces_and_keeps_the_best(lapa: Path, tmp_path: Path) -> None:
    events: list[dict] = []
    config = _config(
        lapa, tmp_path, batch_size=8, epochs=25, max_steps=50, lr=2e-2, warmup_steps=5,
        augment=False, val_every=10,
    )
    result = finetune(config, on_progress=events.append)
    trivial = _trivial_mean_f1(lapa)
    history = [h["mean_f1"] for h in result.history]
    assert len(history) == 3  # epochs 10, 20 and the last, 25 (2 steps an epoch)
    assert result.metrics["mean_f1"] == max(history)
    assert result.metrics["mean_f1"] > trivial + 0.08, (trivial, history)
    best = read_metadata(result.best_path)
    assert best["metrics"]["mean_f1"] == max(history)
    assert best["epoch"] == result.metrics["epoch"]
    # Progress reaches the caller for training steps and validations; the log has every step.
    assert sum(e["phase"] == "train" for e in events) == 50
    assert sum(e["phase"] == "val" for e in events) == 3
    lines = (tmp_path / "finetune_log.jsonl").read_text().splitlines()
    assert len(lines) == 50 and json.loads(lines[-1])["step"] == 50


def test_loader_workers_learn_what_the_main_process_learns(lapa: Path, tmp_path: Path) -> None:
    # 16 faces, batch 4, 2 epochs: augmentations change every epoch, also inside a persistent
    # worker, so both runs publish the same weights.
    states = []
    for workers in (0, 1):
        config = _config(
            lapa, tmp_path / f"w{workers}", epochs=2, max_steps=None, num_workers=workers,
            lr=1e-2, val_split=None,
        )
        states.append(load_checkpoint(finetune(config).last_path).model_state)
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, rtol=1e-4, atol=1e-5)


def test_in_memory_samples_cancel_and_no_validation(tmp_path: Path) -> None:
    samples = []
    for i in range(4):
        image, label = synthetic_face(64, 40 + i)
        samples.append(Sample(image, label, f"face{i}", Path(f"face{i}.png"), None))
    cancel = threading.Event()

    def on_progress(stats: dict) -> None:
        if stats["step"] >= 2:
            cancel.set()

    config = _config(Path("unused"), tmp_path, epochs=10, max_steps=None, batch_size=2)
    result = finetune_on_samples(config, samples, None, on_progress=on_progress, cancel=cancel)
    assert result.cancelled and result.metrics == {}
    last = read_metadata(result.last_path)
    assert last["step"] == 2
    assert last["label_subset"] == ["face0", "face1", "face2", "face3"]
    # Without validation the best checkpoint is the last one.
    assert read_metadata(result.best_path)["step"] == 2


def _faces(first_seed: int, n: int) -> list[Sample]:
    return [Sample(*synthetic_face(64, first_seed + i), f"{i:05d}", Path(f"{i:05d}.png"), None) for i in range(n)]


def test_ctrl_c_keeps_the_weights_trained_so_far(tmp_path: Path) -> None:
    faces = _faces(70, 4)
    # A kill in the middle of an earlier run's write left its temp file.
    (tmp_path / ".finetune_last.safetensors.k1ll3d.tmp").write_bytes(b"half a checkpoint")

    def ctrl_c(stats: dict) -> None:
        if stats.get("step") == 2:
            raise KeyboardInterrupt

    config = _config(Path("unused"), tmp_path, epochs=10, max_steps=None, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        finetune_on_samples(config, faces, None, on_progress=ctrl_c)
    assert read_metadata(tmp_path / "finetune_last.safetensors")["step"] == 2
    assert read_metadata(tmp_path / "finetune_best.safetensors")["step"] == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_val_split_trains_without_validation(tmp_path: Path) -> None:
    root = write_synthetic_lapa(tmp_path / "lapa", {"train": 3})
    result = finetune(_config(root, tmp_path / "out"))
    assert result.metrics == {} and result.best_path.is_file()


def test_trains_on_celebamask_folders_in_lapa_classes(tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "celeba"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i in range(2):
        image, _ = synthetic_face(64, i)
        Image.fromarray(image).save(src / "images" / f"{i}.jpg")
        Image.fromarray(np.full((64, 64), 13, np.uint8), "L").save(src / "masks" / f"{i}.png")
    result = finetune(_config(src, tmp_path / "out", framing="whole"))
    meta = read_metadata(result.last_path)
    assert meta["label_subset"] == ["0", "1"] and meta["classes"][10] == "hair"
    # Labels of hair alone hold no face to crop: detect framing says so.
    with pytest.raises(DatasetError, match="no labeled face"):
        finetune(_config(src, tmp_path / "out2"))


def test_a_list_of_samples_trains_and_validates_and_tuples_are_refused(tmp_path: Path) -> None:
    faces = _faces(60, 3)
    config = _config(Path("unused"), tmp_path, batch_size=2, max_steps=1)
    result = finetune_on_samples(config, faces[:2], faces[2:])
    assert result.metrics["num_images"] == 1 and result.metrics["mean_f1"] is not None
    assert read_metadata(result.best_path)["label_subset"] == ["00000", "00001"]
    pairs = [synthetic_face(64, 60 + i) for i in range(2)]
    with pytest.raises(TypeError, match="item 0 is a tuple, not a trainer.data.sample.Sample"):
        finetune_on_samples(config, pairs, None)
