"""Review of the second CLI trial's changes (session 6c): defects a user would notice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.cli_trial_helpers import run, user_photos


def test_a_pretraining_still_running_is_called_busy_not_stopped(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second `faceparse pretrain` into the folder a first one is writing: the refusal said
    the folder "holds a pretraining stopped at step 3 of 10; continue it with --resume" of a
    run that was going, and --resume then met the busy folder. It must say the folder is busy."""
    import trainer.checkpoint
    from trainer.run_files import RunFiles

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "run"
    out.mkdir()
    files = RunFiles(out, "pretrain")
    files.last.write_bytes(b"the running run's newest state")
    monkeypatch.setattr(trainer.checkpoint, "read_metadata", lambda _p: {"step": 3, "total_steps": 10})
    argv = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--max-steps", "1",
            "--batch-size", "1", "--device", "cpu", "--out-dir", str(out)]  # fmt: skip
    with files.hold():  # the first run, going
        code, _, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert "another faceparse pretrain is writing this folder" in line
    assert "stopped at step" not in line


def test_a_fresh_pretraining_in_a_new_folder_makes_no_folder_when_refused_elsewhere(
    tmp_path: Path, capsys
) -> None:
    """The check before a fresh run must not make the --out-dir of a run that fails on its
    input (a folder of photos that does not exist)."""
    out = tmp_path / "run"
    code, _, err = run(capsys, "pretrain", "--image-dirs", str(tmp_path / "none"), "--preset",
                       "tiny", "--max-steps", "1", "--device", "cpu", "--out-dir", str(out))
    assert code == 2, err
    assert not out.exists()
