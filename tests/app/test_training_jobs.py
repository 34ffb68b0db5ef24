"""Background jobs without Qt: pre-label, fine-tune + publish, pretrain + resume, crashes."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from faceparse_app.model_store import ModelStore
from faceparse_app.pretraining import pretrain_resume_point, run_pretrain_job
from faceparse_app.training import (
    LabeledFile,
    LazySamples,
    TrainingError,
    prelabel,
    run_finetune_job,
    run_finetune_on_files,
    split_holdout,
)
from tests.conftest import synthetic_face
from trainer.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from trainer.configs import stored_config
from trainer.data.imageio import write_image, write_label
from trainer.data.sample import Sample
from trainer.models import build_model, get_preset
from trainer.predict import Predictor
from trainer.recipes import finetune_recipe, pretrain_recipe

TINY = {"preset": "tiny", "batch_size": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project-like folder: 5 synthetic 64-px faces with labels in a hidden store folder."""
    root = tmp_path_factory.mktemp("project")
    for i in range(5):
        image, label = synthetic_face(64, seed=i)
        write_image(root / f"face{i}.png", image)
        write_label(root / ".faceparse" / "labels" / f"face{i}.png", label)
    return root


def labeled_files(root: Path) -> list[LabeledFile]:
    return [
        LabeledFile(f"face{i}.png", root / f"face{i}.png", root / ".faceparse" / "labels" / f"face{i}.png", f"h{i}")
        for i in range(5)
    ]


def test_prelabel_matches_predictor_and_scores_uncertainty(face):
    model = build_model(get_preset("tiny"), heads=("parsing",))
    predictor = Predictor(model, device="cpu")
    image = np.ascontiguousarray(np.concatenate([face[0], face[0][:, :32]], axis=1))  # 64×96
    pred = prelabel(predictor, image)
    expected = predictor(image)
    assert pred.label.shape == (64, 96) and pred.label.dtype == np.uint8
    np.testing.assert_array_equal(pred.label, expected.label)
    np.testing.assert_allclose(pred.confidence, expected.confidence, atol=1e-5)
    # An untrained head is unsure everywhere: high entropy, but never above the uniform bound.
    assert 0.0 < pred.score <= 1.0


def test_split_holdout_is_seeded_stable_and_keeps_one_each_side():
    names = [f"img{i}" for i in range(10)]
    train, val = split_holdout(names, 0.2, seed=0)
    assert split_holdout(names, 0.2, seed=0) == (train, val)
    assert val and train and sorted(train + val) == list(range(10))
    # Labeling more faces never moves an already held-out face into training.
    _, val_more = split_holdout(names + [f"img{i}" for i in range(10, 30)], 0.2, seed=0)
    assert set(val) <= set(val_more)
    assert split_holdout(["a", "b"], 0.01) [1] != []  # at least one held out
    assert split_holdout(["a", "b"], 0.99)[0] != []  # at least one trained on
    assert split_holdout(["only"], 0.2) == ([0], [])


def test_finetune_job_publishes_a_parser_version(faces_dir, tmp_path):
    store = ModelStore(tmp_path / "models")
    progress: list[dict] = []
    result = run_finetune_on_files(
        labeled_files(faces_dir),
        tmp_path / "run",
        max_steps=2,
        store=store,
        note="from test",
        on_progress=progress.append,
        **TINY,
    )
    assert result.version is not None and result.version.kind == "parser"
    assert result.summary()["version"] == result.version.id and not result.summary()["cancelled"]
    # Training used copies of the labels, so editing during the run changes nothing.
    assert len(list((tmp_path / "run" / "snapshot").glob("*.png"))) == 5
    assert store.active("parser").id == result.version.id
    assert result.version.data_snapshot == tuple(f"face{i}.png@h{i}" for i in range(5))
    assert len(result.val_names) >= 1 and len(result.train_names) + len(result.val_names) == 5
    assert set(read_metadata(result.version.path)["label_subset"]) == set(result.train_names)
    assert "mean_f1" in result.version.metrics and "miou" in result.version.metrics
    assert [p["step"] for p in progress if p["phase"] == "train"] == [1, 2]
    assert any(p["phase"] == "val" for p in progress)
    # The published parser pre-labels a face.
    label = prelabel(Predictor.from_checkpoint(result.version.path, "cpu"), synthetic_face(64, 9)[0]).label
    assert label.shape == (64, 64)


def test_finetune_job_starts_from_a_backbone_and_honours_cancel(faces_dir, tmp_path):
    backbone = save_checkpoint(
        tmp_path / "bb.safetensors", build_model(get_preset("tiny"), ("reconstruction",)), "pretrain"
    )
    store = ModelStore(tmp_path / "models")
    cancel = threading.Event()

    def stop_after_first(stats: dict) -> None:
        if stats.get("phase") == "train":
            cancel.set()

    result = run_finetune_job(
        LazySamples(labeled_files(faces_dir)),
        tmp_path / "run",
        init_backbone=backbone,
        max_steps=50,
        store=store,
        on_progress=stop_after_first,
        cancel=cancel,
        **TINY,
    )
    assert result.cancelled and result.version is None
    assert result.summary()["cancelled"] and result.summary()["version"] is None
    assert store.versions() == []
    assert read_metadata(result.last_path)["init_checkpoint"] == str(backbone)


def test_finetune_job_from_a_backbone_fits_the_new_head_first(faces_dir, tmp_path):
    backbone = save_checkpoint(
        tmp_path / "bb.safetensors", build_model(get_preset("tiny"), ("reconstruction",)), "pretrain"
    )
    progress: list[dict] = []
    result = run_finetune_job(
        LazySamples(labeled_files(faces_dir)), tmp_path / "run", init_backbone=backbone,
        max_steps=10, on_progress=progress.append, **TINY,
    )  # fmt: skip
    held = [p["backbone_held"] for p in progress if p["phase"] == "train"]
    assert held == [True, True] + [False] * 8  # the study's first fifth
    assert read_metadata(result.last_path)["backbone_held_steps"] == 2


def test_finetune_job_continues_a_parser_keeping_its_head(faces_dir, tmp_path):
    torch.manual_seed(3)
    parser = save_checkpoint(
        tmp_path / "p.safetensors", build_model(get_preset("tiny"), ("parsing",)), "finetune"
    )
    result = run_finetune_job(
        LazySamples(labeled_files(faces_dir)), tmp_path / "run", init_backbone=parser, max_steps=1,
        lr=0.0, **TINY,
    )  # fmt: skip
    meta = read_metadata(result.last_path)
    assert meta["init"] == f"ckpt:{parser}"
    assert meta["backbone_held_steps"] == 0  # a trained head needs no hold
    # lr 0: the parser's own FP decoder came through unchanged (a backbone start makes a new one).
    start = load_checkpoint(parser).model_state
    end = load_checkpoint(result.last_path).model_state
    assert torch.equal(start["heads.parsing.weight"], end["heads.parsing.weight"])
    with pytest.raises(TrainingError, match="cannot start from"):
        run_finetune_job(
            LazySamples(labeled_files(faces_dir)), tmp_path / "run2",
            init_backbone=tmp_path / "missing.safetensors", max_steps=1, **TINY,
        )  # fmt: skip


def test_finetune_job_continues_a_parser_at_a_lower_rate_than_a_fresh_head(faces_dir, tmp_path):
    # The starter parser is trained already: at a fresh head's rate, continuing it lowered the
    # next faces' mIoU by up to 1.5 on average (BENCHMARKS.md); a caller's explicit rate wins.
    model = build_model(get_preset("tiny"), ("parsing",))
    parser = save_checkpoint(tmp_path / "p.safetensors", model, "finetune")
    backbone = save_checkpoint(tmp_path / "bb.safetensors", model, "pretrain")
    parser_lr = finetune_recipe("continue-parser").lr
    fresh_head_lr = finetune_recipe("head-on-backbone").lr
    expected = {"parser": parser_lr, "backbone": fresh_head_lr, "explicit": 5e-3}
    for name, start, lr in (
        ("parser", parser, None),
        ("backbone", backbone, None),
        ("explicit", parser, 5e-3),
    ):
        progress: list[dict] = []
        result = run_finetune_job(
            LazySamples(labeled_files(faces_dir)), tmp_path / name, init_backbone=start,
            max_steps=3, lr=lr, on_progress=progress.append, **TINY,
        )  # fmt: skip
        peak = max(p["lr"] for p in progress if p["phase"] == "train")  # the rate it trained at
        assert peak == pytest.approx(expected[name]), name
        stored = stored_config(read_metadata(result.last_path))
        assert stored.recipe.lr == pytest.approx(expected[name])
    assert parser_lr < fresh_head_lr


def test_finetune_crash_raises_with_the_reason_and_publishes_nothing(tmp_path):
    image, label = synthetic_face(64, 0)
    bad = label.copy()
    bad[10:20, 10:20] = 200  # a class that does not exist
    samples = [
        Sample(image, label, "good", tmp_path / "good.png", None),
        Sample(image, bad, "bad", tmp_path / "bad.png", None),
    ]
    store = ModelStore(tmp_path / "models")
    with pytest.raises(TrainingError, match="fine-tuning failed: .*200"):
        run_finetune_job(samples, tmp_path / "run", val_samples=[], max_steps=2, store=store, **TINY)
    assert store.versions() == []


def test_bad_label_file_is_named_in_the_error(faces_dir, tmp_path):
    files = labeled_files(faces_dir)
    broken = tmp_path / "broken.png"
    write_label(broken, np.zeros((32, 32), np.uint8))  # wrong size for its 64×64 image
    files[1] = LabeledFile(files[1].name, files[1].image_path, broken)
    with pytest.raises(TrainingError, match="broken.png"):
        run_finetune_job(LazySamples(files), tmp_path / "run", val_samples=[], max_steps=3, **TINY)


def test_pretrain_job_resumes_and_publishes_a_backbone(faces_dir, tmp_path):
    store = ModelStore(tmp_path / "models")
    out = tmp_path / "pretrain"
    cancel = threading.Event()
    steps: list[int] = []

    def stop_at_one(stats: dict) -> None:
        steps.append(stats["step"])
        cancel.set()

    # 5 faces in batches of 2 (the odd one dropped): 2 steps per epoch.
    kwargs = dict(preset="tiny", batch_size=2, epochs=1, device="cpu", store=store)
    first = run_pretrain_job([faces_dir], out, on_progress=stop_at_one, cancel=cancel, **kwargs)
    assert steps == [1]
    assert first.cancelled and first.version is None and store.versions() == []
    point = pretrain_resume_point(out)
    assert point is not None and point["step"] == 1 and point["total_steps"] == 2

    more: list[dict] = []
    second = run_pretrain_job([faces_dir], out, on_progress=more.append, **kwargs)
    assert second.resumed_from_step == 1 and not second.cancelled
    assert [p["step"] for p in more] == [2]
    assert all(p["phase"] == "pretrain" for p in more)
    assert second.version is not None and second.version.kind == "backbone"
    assert store.active("backbone") == second.version
    assert pretrain_resume_point(out) is None  # finished: nothing left to resume


def test_pretrain_job_continues_a_backbone_with_the_starters_recipe(faces_dir, tmp_path):
    torch.manual_seed(1)
    backbone = build_model(get_preset("tiny"), ("reconstruction",))
    path = save_checkpoint(tmp_path / "bb.safetensors", backbone, "pretrain")
    # The preset comes from the backbone, whatever the panel's preset box says.
    result = run_pretrain_job(
        [faces_dir], tmp_path / "out", preset="lite", batch_size=2, epochs=1, lr=1e-9,
        device="cpu", init_backbone=path,
    )  # fmt: skip
    ckpt = load_checkpoint(result.path)
    stored = stored_config(ckpt.meta)
    assert ckpt.config.preset == "tiny" and stored.init == str(path)
    assert stored.recipe == pretrain_recipe("spark", epochs=1, batch_size=2, lr=1e-9)
    assert 0.6 <= ckpt.meta["masked_share"] <= 0.66
    # At a vanishing rate the weights are still the backbone's: it was continued, not replaced.
    start = backbone.state_dict()["encoder.features.0.0.weight"]
    torch.testing.assert_close(ckpt.model_state["encoder.features.0.0.weight"], start, atol=1e-6, rtol=0)
    with pytest.raises(TrainingError, match="cannot start pretraining from"):
        run_pretrain_job(
            [faces_dir], tmp_path / "out2", device="cpu", init_backbone=tmp_path / "gone.safetensors"
        )


def test_pretrain_crash_raises_with_the_reason(tmp_path):
    empty = tmp_path / "no_images"
    empty.mkdir()
    store = ModelStore(tmp_path / "models")
    with pytest.raises(TrainingError, match="no images found"):
        run_pretrain_job([empty], tmp_path / "out", preset="tiny", device="cpu", store=store)
    assert store.versions() == []


def test_pretraining_the_project_skips_an_unreadable_photo_and_says_so(faces_dir, tmp_path):
    """Issue 28 §5: one unreadable photo in the project made the app's pretraining fail."""
    (faces_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    store = ModelStore(tmp_path / "models")
    result = run_pretrain_job(
        [faces_dir], tmp_path / "out", preset="tiny", batch_size=2, epochs=1, device="cpu",
        store=store,
    )  # fmt: skip
    assert result.version is not None and result.skipped_images == 1
    assert "1 unreadable photo" in result.summary()["note"]


def test_the_apps_pretraining_draws_no_progress_bar_in_the_terminal(faces_dir, tmp_path, monkeypatch):
    """The window shows the progress; a bar drawn on the terminal the app was started from (a
    TTY) is noise there, as the fine-tuning job already knew (found by the second CLI trial)."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    result = run_pretrain_job(
        [faces_dir], tmp_path / "out", preset="tiny", batch_size=2, epochs=1, device="cpu",
        store=ModelStore(tmp_path / "models"),
    )  # fmt: skip
    assert result.version is not None
    assert "pretrain" not in terminal.getvalue() and "it/s" not in terminal.getvalue()


@pytest.mark.uses_precision_check
def test_an_app_fine_tune_trains_in_the_precision_this_cpu_runs_fastest(faces_dir, tmp_path, monkeypatch):
    """On a CPU whose check measures bf16 faster (AMX: 2.2-2.9x here) the app's fine-tune trains
    in bf16 and its published version says so; the held-out gate still scores it in float32."""
    import trainer.precision

    monkeypatch.setattr(trainer.precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(
        trainer.precision, "measure_bf16_speedup", lambda: {"fp32_s": 0.04, "bf16_s": 0.02, "speedup": 2.0}
    )
    store = ModelStore(tmp_path / "models")
    result = run_finetune_on_files(
        labeled_files(faces_dir), tmp_path / "run", max_steps=2, store=store, note="bf16", **TINY
    )
    meta = read_metadata(result.version.path)
    assert meta["precision"] == "bf16" and "2.00x" in meta["precision_reason"]
    assert store.active("parser").id == result.version.id and "mean_f1" in result.version.metrics
