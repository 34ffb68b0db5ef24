"""Defects found in a second user trial of the ``faceparse`` CLI: the pipeline end to end, runs
killed with SIGKILL and run again, damaged inputs and a full disk. Each test asserts what the
user noticed: the message, the exit code, the files left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.trainer.cli_trial_helpers import (
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
