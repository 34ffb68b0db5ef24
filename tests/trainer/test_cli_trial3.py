"""Defects found in a second user trial of the ``faceparse`` CLI: the pipeline end to end, runs
killed with SIGKILL and run again, damaged inputs and a full disk. Each test asserts what the
user noticed: the message, the exit code, the files left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.trainer.cli_trial_helpers import (
    predict_photos,
    run,
    small_celebamask,
    small_lapa,
    user_photos,
)

DEV_FULL = Path("/dev/full")


def a_full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic write goes to /dev/full, whose writes fail with ENOSPC as on a full disk
    (no file named in the error, as the kernel reports it)."""
    import trainer.data.imageio as imageio

    real = imageio._create_temp

    def full(path: Path) -> tuple[int, Path]:
        fd, tmp = real(path)
        os.close(fd)
        return os.open(DEV_FULL, os.O_WRONLY), tmp

    monkeypatch.setattr(imageio, "_create_temp", full)


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["pretrain", "finetune", "predict", "convert", "export-onnx"])
def test_a_full_disk_is_one_line_not_a_traceback(
    parser_ckpt: Path, tmp_path: Path, capsys, monkeypatch, command: str
) -> None:
    """On a full disk every writing command ended in `OSError: [Errno 28] No space left on
    device` and a traceback, with exit status 1."""
    photos, out = user_photos(tmp_path / "photos"), tmp_path / "out"
    argv = {
        "pretrain": ["pretrain", "--image-dirs", str(photos), "--preset", "tiny",
                     "--max-steps", "1", "--batch-size", "2", "--device", "cpu",
                     "--out-dir", str(out)],
        "finetune": ["finetune", "--data", str(small_lapa(tmp_path / "lapa")), "--preset", "tiny",
                     "--max-steps", "1", "--batch-size", "2", "--device", "cpu",
                     "--framing", "whole", "--no-progress-bar", "--out-dir", str(out)],
        "predict": ["predict", str(parser_ckpt), str(photos), str(out), "--device", "cpu",
                    "--runtime", "torch"],
        "convert": ["convert", str(small_celebamask(tmp_path / "celeba", 2)), str(out)],
        "export-onnx": ["export-onnx", str(parser_ckpt), str(out / "parser.onnx")],
    }[command]  # fmt: skip
    a_full_disk(monkeypatch)
    code, _, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"faceparse {command}: error: {out}")
    assert "No space left on device" in last and "free some space" in last
    assert not list(out.rglob("*.tmp"))  # no half-written file left behind


def test_a_fresh_pretraining_never_replaces_a_killed_run_it_could_resume(
    tmp_path: Path, capsys
) -> None:
    """After a SIGKILL (the OOM killer, a lost node) the user ran the same command again,
    without --resume: it started over from step 0 and replaced the killed run's checkpoint at
    its first save, so the hours before the kill were lost without a word."""
    import json
    import signal

    from tests.trainer.cli_trial_helpers import digests, signal_a_run
    from trainer.checkpoint import read_metadata

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "run"
    argv = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--epochs", "100000",
            "--batch-size", "1", "--device", "cpu", "--checkpoint-every", "1",
            "--out-dir", str(out)]  # fmt: skip
    code, _, _ = signal_a_run(argv, out / "pretrain_log.jsonl", signal.SIGKILL)
    assert code == -signal.SIGKILL
    # The newest state: pretrain_last, or a step file when the kill came between the two saves.
    last = out / "pretrain_last.safetensors"
    killed_at, _, newest = max(
        (read_metadata(path)["step"], path == last, path)
        for path in [last, *out.glob("pretrain_step*.safetensors")]
    )
    before = digests(out)

    steps = ("--max-steps", str(killed_at + 2))  # a bound, should the run start over
    code, _, err = run(capsys, *argv, *steps)
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert f"stopped at step {killed_at} of " in line and f"--resume {newest}" in line
    assert "another --out-dir" in line
    assert digests(out) == before  # nothing replaced, the log included

    # --resume continues it from where it was killed; the log never repeats a step.
    code, _, err = run(capsys, *argv, *steps, "--resume", str(newest))
    assert code == 0, err
    assert read_metadata(last)["step"] == killed_at + 2
    log = out / "pretrain_log.jsonl"
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, killed_at + 3))


def test_a_fresh_pretraining_keeps_its_own_step_checkpoints(tmp_path: Path, capsys) -> None:
    """A new run with --checkpoint-every in the folder of an earlier one deleted each of its
    own step checkpoints as soon as it wrote it: the earlier run's (higher) step numbers were
    "the newest" to keep. The folder then held the new run's last checkpoint beside the earlier
    run's step files, and a resume from "the newest step file" went back to the other run."""
    photos, out = user_photos(tmp_path / "photos"), tmp_path / "run"
    base = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--batch-size", "1",
            "--device", "cpu", "--checkpoint-every", "2", "--out-dir", str(out)]  # fmt: skip
    code, _, err = run(capsys, *base, "--max-steps", "7")
    assert code == 0, err
    earlier = sorted(p.name for p in out.glob("pretrain_step*"))
    assert earlier == ["pretrain_step4.safetensors", "pretrain_step6.safetensors"]

    code, _, err = run(capsys, *base, "--max-steps", "2", "--seed", "1")
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert "pretrain_step6.safetensors" in line and "another --out-dir" in line
    assert sorted(p.name for p in out.glob("pretrain_step*")) == earlier

    new = ("--max-steps", "3", "--seed", "1", "--out-dir", str(tmp_path / "new"))
    code, _, err = run(capsys, *base, *new)
    assert code == 0, err
    assert (tmp_path / "new" / "pretrain_step2.safetensors").is_file()


def test_finetune_from_a_checkpoint_refuses_a_preset_it_would_ignore(
    tmp_path: Path, capsys
) -> None:
    """`finetune --init ssl:TINY_RUN --preset lite` trained the tiny model without a word, and
    its checkpoint recorded preset 'lite'; the user found out from its size."""
    from trainer.checkpoint import read_metadata, save_checkpoint
    from trainer.configs import stored_config
    from trainer.models import build_model, get_preset

    stage1 = save_checkpoint(
        tmp_path / "ssl.safetensors", build_model(get_preset("tiny"), ("reconstruction",)),
        stage="pretrain",
    )  # fmt: skip
    data = small_lapa(tmp_path / "lapa")
    base = ["finetune", "--data", str(data), "--init", f"ssl:{stage1}", "--max-steps", "1",
            "--batch-size", "2", "--device", "cpu", "--framing", "whole", "--no-progress-bar"]  # fmt: skip
    code, _, err = run(capsys, *base, "--preset", "lite", "--out-dir", str(tmp_path / "a"))
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert f"{stage1}: a 'tiny' model" in line and "--preset lite cannot apply" in line
    assert not (tmp_path / "a" / "finetune_last.safetensors").exists()

    code, _, err = run(capsys, *base, "--out-dir", str(tmp_path / "b"))  # no --preset: its own
    assert code == 0, err
    meta = read_metadata(tmp_path / "b" / "finetune_last.safetensors")
    assert meta["model"]["preset"] == "tiny" and stored_config(meta).preset == "tiny"


def test_finetune_on_a_folder_without_training_faces_names_the_folder(
    tmp_path: Path, capsys
) -> None:
    """A LaPa folder whose train/images was empty said only 'no labeled images to fine-tune
    on', naming no folder; a LaPa test set alone (HELEN in LaPa's layout) was called 'neither a
    LaPa dataset nor CelebAMask-HQ'."""
    import shutil

    data = small_lapa(tmp_path / "lapa")
    base = ["finetune", "--preset", "tiny", "--max-steps", "1", "--device", "cpu",
            "--out-dir", str(tmp_path / "run")]  # fmt: skip
    for path in [*(data / "train" / "images").iterdir(), *(data / "train" / "labels").iterdir()]:
        path.unlink()
    code, _, err = run(capsys, *base, "--data", str(data))
    assert code == 2 and "Traceback" not in err, err
    assert f"{data / 'train' / 'images'}: no labeled images to fine-tune on" in err

    shutil.rmtree(data / "train")
    code, _, err = run(capsys, *base, "--data", str(data))
    assert code == 2 and "Traceback" not in err, err
    assert f"{data}: a LaPa dataset without a train split (it has val)" in err


def test_info_says_when_a_checkpoints_weights_are_damaged(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`faceparse info` on a checkpoint with a flipped bit in its weights printed its metadata
    and exited 0, the way a user checks a copied file; every other command refused it."""
    import json
    import shutil

    damaged = tmp_path / "copied.safetensors"
    shutil.copy(parser_ckpt, damaged)
    blob = bytearray(damaged.read_bytes())
    blob[-100] ^= 0x01
    damaged.write_bytes(bytes(blob))

    code, out, err = run(capsys, "info", str(parser_ckpt))
    assert code == 0 and json.loads(out)["stage"] == "finetune", err
    code, out, err = run(capsys, "info", str(damaged))
    assert code == 2 and "Traceback" not in err, err
    assert json.loads(out)["stage"] == "finetune"  # what it says of itself, still shown
    assert err.strip() == (
        f"faceparse info: error: {damaged}: damaged: tensor data does not match its checksum "
        "(the file changed after it was written, e.g. a disk or copy error); use another copy of it"
    )


def test_recon_grid_skips_an_unreadable_photo_as_pretrain_does(
    tmp_path: Path, capsys, caplog
) -> None:
    """`recon-grid` on the folder a pretraining had just used (one truncated photo in it,
    skipped there with a warning) stopped at that photo and wrote no grid."""
    from PIL import Image

    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model, get_preset

    stage1 = save_checkpoint(
        tmp_path / "ssl.safetensors", build_model(get_preset("tiny"), ("reconstruction",)),
        stage="pretrain",
    )  # fmt: skip
    photos = user_photos(tmp_path / "photos")
    (photos / "broken.jpg").write_bytes((photos / "carl.jpg").read_bytes()[:200])
    grid = tmp_path / "grid.png"
    code, out, err = run(capsys, "recon-grid", str(stage1), str(photos), "--out", str(grid),
                         "--num-images", "4", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"skipping {photos / 'broken.jpg'}: unreadable or truncated")
    with Image.open(grid) as im:
        assert im.height == 3 * 64 + 2 * 2  # the three readable photos, one row each

    for path in photos.rglob("*.*"):
        if path.name != "broken.jpg":
            path.unlink()
    code, _, err = run(capsys, "recon-grid", str(stage1), str(photos), "--out", str(grid),
                       "--device", "cpu")  # fmt: skip
    assert code == 2 and "Traceback" not in err, err
    assert f"none of the 1 images under {photos} could be read" in err.strip().splitlines()[-1]


def test_pretrain_runs_without_a_progress_bar_as_finetune_does(tmp_path: Path, capsys) -> None:
    """`pretrain --no-progress-bar` (for a nohup log) was refused as an unknown flag, though
    finetune takes it; the log file filled with the bar's carriage returns instead."""
    from trainer.checkpoint import read_metadata
    from trainer.configs import stored_config

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "run"
    code, _, err = run(capsys, "pretrain", "--image-dirs", str(photos), "--preset", "tiny",
                       "--max-steps", "2", "--batch-size", "2", "--device", "cpu",
                       "--no-progress-bar", "--out-dir", str(out))  # fmt: skip
    assert code == 0, err
    assert "it/s" not in err and "\r" not in err
    meta = read_metadata(out / "pretrain_last.safetensors")
    assert stored_config(meta).runtime.progress_bar is False


def test_evaluate_says_a_celebamask_folder_has_no_split_to_score(
    parser_ckpt: Path, tmp_path: Path, capsys, caplog
) -> None:
    """`evaluate --data CelebAMask-HQ --split test` scored every image of the folder, its
    training faces too, and said nothing of the split; the JSON did not say what was scored."""
    import json

    src = small_celebamask(tmp_path / "celeba", 3)
    report = tmp_path / "metrics.json"
    code, out, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(src), "--split",
                         "test", "--framing", "whole", "--device", "cpu", "--json", str(report))  # fmt: skip
    assert code == 0, err
    assert "3 images" in out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("has no splits, so split 'test' does not apply: all 3 images" in w for w in warnings)
    assert json.loads(report.read_text())["split"] is None

    lapa = small_lapa(tmp_path / "lapa")
    code, _, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(lapa), "--split", "val",
                       "--framing", "whole", "--device", "cpu", "--json", str(report))  # fmt: skip
    assert code == 0, err
    assert json.loads(report.read_text())["split"] == "val"


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [("evaluate", "--batch-size", "0"), ("evaluate", "--batch-size", "-2"),
     ("export-onnx", "--input-size", "0"), ("export-onnx", "--input-size", "-64")],
)  # fmt: skip
def test_a_size_of_zero_is_refused_not_taken_for_nothing_or_the_default(
    parser_ckpt: Path, tmp_path: Path, capsys, command: str, flag: str, value: str
) -> None:
    """`evaluate --batch-size 0` scored no pixel at all and printed a table of n/a with exit
    0; `export-onnx --input-size 0` exported at the model's own size with exit 0."""
    argv = {
        "evaluate": ["evaluate", str(parser_ckpt), "--data", str(small_lapa(tmp_path / "lapa")),
                     "--split", "val", "--framing", "whole", "--device", "cpu"],
        "export-onnx": ["export-onnx", str(parser_ckpt), str(tmp_path / "parser.onnx")],
    }[command]  # fmt: skip
    code, out, err = run(capsys, *argv, flag, value)
    assert code == 2 and "Traceback" not in err, err
    assert f"argument {flag}: must be at least 1, got {value}" in err
    assert out == "" and not (tmp_path / "parser.onnx").exists()


def test_predict_says_when_a_file_is_given_for_a_folder(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`predict MODEL photo.jpg out` said 'photo.jpg: folder of images not found' of a photo
    that was there; `predict MODEL photos notes.txt` said 'notes.txt: File exists'."""
    photos = user_photos(tmp_path / "photos")
    photo = photos / "carl.jpg"
    code, _, err = predict_photos(capsys, parser_ckpt, photo, tmp_path / "out")
    assert code == 2 and "Traceback" not in err, err
    assert f"{photo}: a file; give the folder that holds it" in err

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, _, err = predict_photos(capsys, parser_ckpt, photos, notes)
    assert code == 2 and "Traceback" not in err, err
    assert f"{notes}: a file stands where a folder is needed" in err
    assert notes.read_text() == "mine"


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_quiet_means_no_progress_bar(tmp_path: Path, capsys, command: str) -> None:
    """`faceparse -q` ('only warnings and errors') still drew the training's progress bar."""
    out = str(tmp_path / "run")
    argv = {
        "pretrain": ["pretrain", "--image-dirs", str(user_photos(tmp_path / "photos"))],
        "finetune": ["finetune", "--data", str(small_lapa(tmp_path / "lapa")), "--framing",
                     "whole"],
    }[command]  # fmt: skip
    code, _, err = run(capsys, "-q", *argv, "--preset", "tiny", "--max-steps", "2",
                       "--batch-size", "2", "--device", "cpu", "--out-dir", out)  # fmt: skip
    assert code == 0, err
    assert "it/s" not in err and "\r" not in err


def test_predicts_summary_counts_one_of_a_kind_in_the_singular(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """On one photo predict said 'wrote 1 label maps to out: 1 faces parsed, 1 photos without
    a face'."""
    from PIL import Image

    from tests.conftest import synthetic_face

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(synthetic_face(64, 0)[0]).save(photos / "anna.png")
    code, out, err = predict_photos(capsys, parser_ckpt, photos, tmp_path / "out")
    assert code == 0, err
    assert "wrote 1 label map to" in out
    assert ": 1 face parsed, 0 photos without a face" in out or (
        ": 0 faces parsed, 1 photo without a face" in out
    )


def test_a_plain_safetensors_file_says_what_the_command_needs(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """Encoder weights (a plain safetensors file) given as a model said only 'a safetensors
    file without faceparse metadata', not what to give instead."""
    import torch
    from safetensors.torch import save_file

    plain = tmp_path / "encoder.safetensors"
    save_file({"conv.weight": torch.zeros(3)}, str(plain))
    photos = user_photos(tmp_path / "photos")
    code, _, err = predict_photos(capsys, plain, photos, tmp_path / "out")
    assert code == 2 and "Traceback" not in err, err
    assert err.strip() == (
        f"faceparse predict: error: {plain}: a safetensors file without faceparse metadata, not a "
        "checkpoint that faceparse pretrain or finetune wrote (an encoder's weights go to "
        "--encoder-weights)"
    )
