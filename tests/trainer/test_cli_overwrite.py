"""A new run never replaces an earlier run's checkpoints by reusing its --out-dir, unless told to
(--overwrite): a reused folder name cost a finished fine-tune (stage 2 replaced its checkpoints
at its first save) or a finished pretraining."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_face_photos, write_synthetic_lapa
from trainer.checkpoint import read_metadata
from trainer.cli import main


@pytest.fixture(scope="module")
def lapa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_lapa(tmp_path_factory.mktemp("data") / "lapa", {"train": 4, "val": 2})


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_a_second_finetune_into_the_same_folder_stops_before_touching_the_first(
    lapa: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    argv = ["finetune", "--data", str(lapa), "--out-dir", str(out), "--preset", "tiny",
            "--max-steps", "2", "--batch-size", "2", "--device", "cpu", "--no-progress-bar"]  # fmt: skip
    code, err = _run(capsys, *argv)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "finetune_best.safetensors" in before and "finetune_log.jsonl" in before

    code, err = _run(capsys, *argv, "--max-steps", "3")
    assert code == 2
    assert str(out) in err and "finetune_best.safetensors, finetune_last.safetensors" in err
    assert "trained 2 steps" in err and "--overwrite" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    code, err = _run(capsys, *argv, "--max-steps", "3", "--overwrite")
    assert code == 0, err
    assert read_metadata(out / "finetune_last.safetensors")["step"] == 3


def test_a_fresh_pretraining_over_a_finished_one_needs_overwrite(tmp_path: Path, capsys) -> None:
    faces = write_face_photos(tmp_path / "faces")
    out = tmp_path / "pre"
    argv = ["pretrain", "--image-dirs", str(faces), "--out-dir", str(out), "--preset", "tiny",
            "--input-size", "64", "--epochs", "1", "--batch-size", "2", "--device", "cpu",
            "--no-progress-bar"]  # fmt: skip
    code, err = _run(capsys, *argv)
    assert code == 0, err
    finished = (out / "pretrain_last.safetensors").read_bytes()

    code, err = _run(capsys, *argv)
    assert code == 2
    assert "a finished pretraining (2 steps)" in err and "--overwrite" in err
    assert (out / "pretrain_last.safetensors").read_bytes() == finished

    code, err = _run(capsys, *argv, "--overwrite")
    assert code == 0, err
    # ... and --resume still continues it without being asked to overwrite.
    longer = [("2" if previous == "--epochs" else a) for previous, a in zip(["", *argv[:-1]], argv, strict=True)]
    code, err = _run(capsys, *longer, "--resume", str(out / "pretrain_last.safetensors"))
    assert code == 0, err
    assert read_metadata(out / "pretrain_last.safetensors")["step"] == 4
