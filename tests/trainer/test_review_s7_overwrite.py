"""Review s7 of --overwrite: it replaces a finished pretraining whatever files that run kept, and
only rank 0 of a torchrun looks at (and tidies) the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_face_photos
from trainer.checkpoint import read_metadata
from trainer.cli import main


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_photos(tmp_path_factory.mktemp("faces"))


def _argv(faces: Path, out: Path, *more: str) -> list[str]:
    return ["pretrain", "--image-dirs", str(faces), "--out-dir", str(out), "--preset", "tiny",
            "--input-size", "64", "--epochs", "2", "--batch-size", "2", "--device", "cpu",
            "--no-progress-bar", "--checkpoint-every", "1", *more]  # fmt: skip


def test_overwrite_replaces_a_finished_pretraining_that_kept_step_checkpoints(
    faces: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "pre"
    assert main(_argv(faces, out)) == 0
    assert sorted(p.name for p in out.glob("pretrain_step*")) == [
        "pretrain_step2.safetensors", "pretrain_step3.safetensors"
    ]  # fmt: skip
    capsys.readouterr()

    # Without --overwrite: the finished run is named, with its step files, and --overwrite offered.
    assert main(_argv(faces, out, "--seed", "1")) == 2
    err = capsys.readouterr().err
    assert "a finished pretraining (4 steps" in err and "pretrain_step3.safetensors" in err
    assert "--overwrite" in err

    # With it the new run replaces all of the old run's checkpoints (it was refused before).
    assert main(_argv(faces, out, "--seed", "1", "--overwrite", "--max-steps", "3")) == 0, (
        capsys.readouterr().err
    )
    assert read_metadata(out / "pretrain_last.safetensors")["total_steps"] == 3
    steps = sorted(p.name for p in out.glob("pretrain_step*"))
    assert steps == ["pretrain_step1.safetensors", "pretrain_step2.safetensors"]
    assert all(read_metadata(out / s)["training"]["recipe"]["seed"] == 1 for s in steps)


def test_rank_1_neither_refuses_nor_deletes(
    faces: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "pre"
    assert main(_argv(faces, out)) == 0
    capsys.readouterr()
    import trainer.pretrain
    from trainer.errors import FaceParseError

    def run(config, resume):
        raise FaceParseError("rank 1 started its run")

    monkeypatch.setattr(trainer.pretrain, "pretrain", run)
    monkeypatch.setenv("RANK", "1")
    # Rank 0 decides (under the folder's lock); a refused rank 0 ends the whole job.
    assert main(_argv(faces, out, "--overwrite")) == 2
    assert "rank 1 started its run" in capsys.readouterr().err
    assert len(list(out.glob("pretrain_step*"))) == 2
