"""Stage-1 pretraining end to end on tiny synthetic faces (preset "tiny", 64 px, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT, synthetic_face
from trainer.checkpoint import load_checkpoint, load_model, save_checkpoint
from trainer.configs import PretrainConfig, stored_config
from trainer.data.imageio import write_image
from trainer.errors import CheckpointError, DatasetError
from trainer.hooks import read_jsonl
from trainer.pretrain import pretrain
from trainer.visualize import grid_shape, write_reconstruction_grid

# 8 faces, batch 2: 4 steps per epoch, 8 steps in all.
RUN = {"preset": "tiny", "epochs": 2, "batch_size": 2, "lr": 3e-3, "seed": 0, "device": "cpu"}
TOTAL_STEPS = 8


def _config(**settings) -> PretrainConfig:
    """A stage-1 config from flat settings (the CLI's names)."""
    return PretrainConfig.from_flat(settings)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    for i in range(8):
        write_image(root / "sub" / f"face{i}.png", synthetic_face(64, seed=i)[0])
    return root


@pytest.fixture(scope="module")
def full_run(faces, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("full")
    progress: list[dict] = []
    config = _config(image_dirs=(str(faces),), out_dir=str(out), **RUN)
    return pretrain(config, on_progress=progress.append), progress


def test_pretraining_lowers_the_reconstruction_loss(full_run) -> None:
    path, progress = full_run
    losses = [p["loss"] for p in progress]
    assert [p["step"] for p in progress] == list(range(1, TOTAL_STEPS + 1))
    assert np.mean(losses[-3:]) < 0.85 * losses[0]
    assert all(0.4 <= p["masked_share"] <= 0.46 for p in progress)
    assert progress[-1]["eta_s"] == 0.0 and progress[-1]["epoch"] == 2


def test_checkpoint_and_step_log_are_written(full_run) -> None:
    path, progress = full_run
    assert path.name == "pretrain_last.safetensors" and path.is_file()
    model, ckpt = load_model(path)
    assert ckpt.stage == "pretrain" and ckpt.heads == ("reconstruction",)
    assert ckpt.meta["step"] == TOTAL_STEPS and ckpt.meta["epoch"] == 2
    assert stored_config(ckpt.meta).recipe.mask_ratio == 0.4
    assert 0.4 <= ckpt.meta["masked_share"] <= 0.46
    assert ckpt.optimizer_state is not None  # resumable
    out = model(torch.zeros(1, 3, 64, 64), head="reconstruction")
    assert out.shape == (1, 3, 64, 64)
    # Stage 2 takes the backbone and gets a fresh FP decoder.
    parser, _ = load_model(path, heads=("parsing",))
    assert torch.equal(
        parser.state_dict()["encoder.features.0.0.weight"],
        model.state_dict()["encoder.features.0.0.weight"],
    )
    records = read_jsonl(path.parent / "pretrain_log.jsonl")
    assert [r["step"] for r in records] == list(range(1, TOTAL_STEPS + 1))
    assert [r["loss"] for r in records] == pytest.approx([p["loss"] for p in progress])
    assert all(r["lr"] > 0 and r["images_per_s"] > 0 for r in records)


def test_cancel_then_resume_ends_where_an_uninterrupted_run_does(faces, full_run, tmp_path):
    config = _config(image_dirs=(str(faces),), out_dir=str(tmp_path), **RUN)
    cancel = threading.Event()
    stopped = pretrain(config, on_progress=lambda s: s["step"] == 3 and cancel.set(), cancel=cancel)
    interrupted = load_checkpoint(stopped)
    assert interrupted.meta["step"] == 3 and interrupted.meta["cancelled"]
    # As a run of the previous version left it: its step log was called metrics.jsonl.
    (tmp_path / "pretrain_log.jsonl").rename(tmp_path / "metrics.jsonl")

    final = pretrain(config, resume=stopped)
    resumed, uninterrupted = load_checkpoint(final), load_checkpoint(full_run[0])
    assert resumed.meta["step"] == TOTAL_STEPS and not resumed.meta["cancelled"]
    assert resumed.meta["masked_share"] == pytest.approx(uninterrupted.meta["masked_share"])
    # Same data order, masks, learning rates and optimizer moments: the same weights.
    for key, value in uninterrupted.model_state.items():
        torch.testing.assert_close(resumed.model_state[key], value, rtol=1e-4, atol=1e-5)
    steps = [r["step"] for r in read_jsonl(tmp_path / "pretrain_log.jsonl")]
    assert steps == list(range(1, TOTAL_STEPS + 1))  # the log continues, no gap, no repeat
    assert not (tmp_path / "metrics.jsonl").exists()  # moved to the current name, not copied


def test_loader_workers_learn_what_the_main_process_learns(faces, full_run, tmp_path) -> None:
    # Two epochs through one persistent worker: each epoch's flips reach it, so the weights are
    # the ones the in-process run (num_workers=0) ends with.
    config = _config(image_dirs=(str(faces),), out_dir=str(tmp_path), num_workers=1, **RUN)
    with_worker, in_process = load_checkpoint(pretrain(config)), load_checkpoint(full_run[0])
    for key, value in in_process.model_state.items():
        torch.testing.assert_close(with_worker.model_state[key], value, rtol=1e-4, atol=1e-5)


def test_periodic_checkpoints_follow_the_schedule(faces, tmp_path) -> None:
    config = _config(
        image_dirs=(str(faces),),
        out_dir=str(tmp_path),
        checkpoint_every=2,
        num_patches=5,
        loss_region="masked",
        norm_pix=True,
        augment="affine",
        max_steps=5,
        **RUN,
    )
    final = pretrain(config)
    names = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert names == [
        "pretrain_last.safetensors",
        "pretrain_step2.safetensors",
        "pretrain_step4.safetensors",
    ]
    assert load_checkpoint(final).meta["step"] == 5
    assert load_checkpoint(tmp_path / "pretrain_step4.safetensors").meta["step"] == 4
    stored = stored_config(load_checkpoint(final).meta)
    assert stored.recipe.norm_pix and stored.recipe.augment == "affine"
    # The grid maps a norm_pix model's per-patch output back to intensities.
    grid = write_reconstruction_grid(final, faces, tmp_path / "grid.png", num_images=2)
    with Image.open(grid) as im:
        assert (im.height, im.width) == grid_shape(2, 64)


def test_reconstruction_grid_png(faces, full_run, tmp_path) -> None:
    out = write_reconstruction_grid(full_run[0], faces, tmp_path / "grid.png", num_images=3)
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert (im.height, im.width) == grid_shape(3, 64)
        pixels = np.asarray(im.convert("RGB"))
    original, masked = pixels[:64, :64], pixels[:64, 66:130]
    assert (original != masked).any(axis=2).mean() > 0.1  # the masked column shows the patches
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temp left behind


def test_empty_folder_and_wrong_resume_file_give_clear_errors(faces, tmp_path, full_run) -> None:
    with pytest.raises(ValueError, match="'flip' or 'affine'"):
        _config(image_dirs=(str(faces),), out_dir=str(tmp_path), augment="crop", **RUN)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        pretrain(
            _config(image_dirs=(str(tmp_path / "empty"),), out_dir=str(tmp_path), **RUN)
        )
    with pytest.raises(CheckpointError, match="does not match"):
        config = _config(
            image_dirs=(str(faces),),
            out_dir=str(tmp_path),
            **{**RUN, "preset": "lite"},
        )
        pretrain(config, resume=full_run[0])


def test_a_run_can_start_from_another_runs_weights_at_another_size(faces, full_run, tmp_path):
    # E.g. the starter backbone adapted to a team's own photos, or a 64-px run finished at 96 px.
    def first_loss(**extra) -> tuple[float, Path]:
        progress: list[dict] = []
        config = _config(
            image_dirs=(str(faces),),
            out_dir=str(tmp_path / str(len(extra))),
            **{**RUN, "epochs": 1, "input_size": 96, **extra},
        )
        return pretrain(config, on_progress=progress.append), progress[0]["loss"]

    fresh_path, fresh = first_loss()
    started_path, started = first_loss(init=str(full_run[0]))
    assert started < 0.9 * fresh  # the first step already reconstructs with the trained weights
    ckpt = load_checkpoint(started_path)
    assert ckpt.config.input_size == 96 and ckpt.meta["step"] == 4  # a schedule of its own
    assert stored_config(ckpt.meta).init == str(full_run[0])


def test_a_wrong_init_file_is_refused(faces, full_run, tmp_path) -> None:
    def run(**extra) -> None:
        pretrain(
            _config(image_dirs=(str(faces),), out_dir=str(tmp_path), **{**RUN, **extra})
        )

    with pytest.raises(ValueError, match="init or encoder_weights"):
        run(init=str(full_run[0]), encoder_weights="imagenet")
    with pytest.raises(CheckpointError, match="does not match"):
        run(init=str(full_run[0]), preset="lite")
    model, _ = load_model(full_run[0], heads=("parsing",))
    parser = save_checkpoint(tmp_path / "parser.safetensors", model, "finetune", {})
    with pytest.raises(CheckpointError, match="finetune-stage checkpoint"):
        run(init=str(parser))
    with pytest.raises(CheckpointError):
        run(init=str(tmp_path / "missing.safetensors"))


def test_unreadable_photos_are_skipped_and_counted(faces, tmp_path, caplog) -> None:
    from tests.trainer.test_imageio import write_huge_png

    photos = tmp_path / "photos"
    for path in sorted(faces.rglob("*.png"))[:6]:
        (photos / path.name).parent.mkdir(parents=True, exist_ok=True)
        (photos / path.name).write_bytes(path.read_bytes())
    (photos / "notes.png").write_text("not a picture")
    write_huge_png(photos / "huge.png")
    progress: list[dict] = []
    config = _config(
        image_dirs=(str(photos),), out_dir=str(tmp_path / "out"), **{**RUN, "epochs": 1}
    )
    final = pretrain(config, on_progress=progress.append)
    meta = load_checkpoint(final).meta
    assert meta["num_images"] == 8 and meta["skipped_images"] == 2
    assert progress[-1]["skipped_images"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("notes.png" in w for w in warnings) == 1  # once, not once per step
    assert sum("huge.png: 20000×20000 (400,000,000 pixels)" in w for w in warnings) == 1


def test_a_run_where_no_photo_can_be_read_fails_clearly(tmp_path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"{i}.jpg").write_bytes(b"\xff\xd8\xff truncated")
    config = _config(image_dirs=(str(photos),), out_dir=str(tmp_path / "out"), **RUN)
    with pytest.raises(DatasetError, match=r"none of the 3 photos .* could be read"):
        pretrain(config)


def _cli_pretrain(faces: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "trainer", "-q", "pretrain", "--image-dirs", str(faces),
        "--out-dir", str(out), "--preset", "tiny", "--batch-size", "2", "--epochs", "5",
        "--lr", "3e-3", "--device", "cpu", *extra,
    ]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_periodic_checkpoint(faces, tmp_path) -> None:
    out = tmp_path / "run"
    last = out / "pretrain_last.safetensors"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    # A checkpoint every 0.6 s: the first lands a few steps into the 20.
    run = subprocess.Popen(
        _cli_pretrain(faces, out, "--checkpoint-minutes", "0.01"), cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not last.is_file() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)
    finally:
        _, err = run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL, err.decode()
    killed_at = load_checkpoint(last).meta["step"]
    assert 0 < killed_at < 20  # killed mid-run, with the state of step `killed_at` kept
    # A kill in the middle of a write leaves its temp file; the next start clears it.
    (out / ".pretrain_last.safetensors.k1ll3d.tmp").write_bytes(b"half a checkpoint")

    resumed = subprocess.run(
        _cli_pretrain(faces, out, "--checkpoint-minutes", "0.01", "--resume", str(last)),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(last).meta["step"] == 20
    steps = [r["step"] for r in read_jsonl(out / "pretrain_log.jsonl")]
    assert steps == list(range(1, 21))  # the steps after `killed_at` were logged once, not twice
    assert not list(out.glob(".*.tmp"))


def test_ctrl_c_leaves_a_resumable_checkpoint(faces, full_run, tmp_path) -> None:
    config = _config(image_dirs=(str(faces),), out_dir=str(tmp_path), **RUN)

    def press_ctrl_c(stats: dict) -> None:
        if stats["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(config, on_progress=press_ctrl_c)
    last = tmp_path / "pretrain_last.safetensors"
    interrupted = load_checkpoint(last)
    assert interrupted.meta["step"] == 3 and interrupted.meta["cancelled"]
    final = load_checkpoint(pretrain(config, resume=last))
    for key, value in load_checkpoint(full_run[0]).model_state.items():
        torch.testing.assert_close(final.model_state[key], value, rtol=1e-4, atol=1e-5)


def test_only_the_newest_step_checkpoints_are_kept(faces, tmp_path) -> None:
    config = _config(
        image_dirs=(str(faces),), out_dir=str(tmp_path), checkpoint_every=1, keep_checkpoints=2,
        **RUN,
    )
    pretrain(config)
    names = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert names == [
        "pretrain_last.safetensors", "pretrain_step6.safetensors", "pretrain_step7.safetensors"
    ]
