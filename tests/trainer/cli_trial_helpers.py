"""Helpers of the CLI trial tests (test_cli_trial*.py): the user's own photos and data,
small and synthetic, and the CLI run in this process or as a child to signal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import synthetic_face
from trainer.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``faceparse ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }  # fmt: skip


def predict_photos(
    capsys: pytest.CaptureFixture[str], ckpt: Path, photos: Path, out: Path, *more: str
) -> tuple[int, str, str]:
    """``faceparse predict`` on the CPU in torch (no runtime self-check)."""
    return run(capsys, "predict", str(ckpt), str(photos), str(out), "--device", "cpu",
               "--runtime", "torch", *more)  # fmt: skip


def user_photos(folder: Path) -> Path:
    """Two PNG photos and a JPEG, one in a subfolder: a user's own folder."""
    (folder / "trip").mkdir(parents=True)
    for i, name in enumerate(["anna.png", "trip/ben.png", "carl.jpg"]):
        Image.fromarray(synthetic_face(64, i)[0]).save(folder / name)
    return folder


def small_lapa(root: Path) -> Path:
    """Six synthetic faces in the LaPa layout: train 4, val 2."""
    from tests.conftest import write_synthetic_lapa

    return write_synthetic_lapa(root, {"train": 4, "val": 2})


def small_celebamask(src: Path, n: int = 10) -> Path:
    """n CelebAMask-HQ-style pairs (merged layout: images/*.jpg, masks/*.png)."""
    from trainer.data.imageio import write_image, write_label

    for i in range(n):
        image, label = synthetic_face(32, i)
        write_image(src / "images" / f"{i:05d}.jpg", image)
        write_label(src / "masks" / f"{i:05d}.png", label)  # LaPa ids are CelebAMask ids too
    return src


def signal_a_run(argv: list[str], log: Path, signum: int) -> tuple[int, str, str]:
    """Run ``python -m trainer ARGV`` and send it ``signum`` once ``log`` holds two steps:
    (exit code, stdout, stderr)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "trainer", *argv], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # A child of a non-interactive shell may start with SIGINT ignored; a terminal's never.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        time.sleep(0.2)
    child.send_signal(signum)
    out, err = child.communicate(timeout=120)
    return child.returncode, out, err
