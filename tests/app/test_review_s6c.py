"""Review of the model-loop trial's changes (session 6c): defects a user would notice."""

from __future__ import annotations

import threading
from pathlib import Path


class _Cancelled:
    def summary(self) -> dict:
        return {"kind": "finetune", "version": None, "metrics": {}, "cancelled": True}


def test_quitting_during_a_fine_tune_is_not_told_as_a_kill_at_the_next_launch(
    qtbot, tmp_path, monkeypatch
) -> None:
    """Quit (or SIGTERM) during a fine-tune, answered yes: the run is cancelled and waited for,
    then the app exits before the worker's queued "done" reaches the GUI thread. The marker
    must go with the run, else the next launch says the run was "killed or crashed"."""
    from faceparse_app import training_runs
    from tests.app.test_gui_model_loop import open_window, project_with

    seen: list[Path] = []

    def run_until_cancelled(files, run_dir, *, cancel=None, on_progress=None, **_kwargs):
        seen.append(Path(run_dir))
        cancel.wait(60)
        return _Cancelled()

    monkeypatch.setattr(training_runs, "run_finetune_on_files", run_until_cancelled)
    folder = project_with(tmp_path / "project", n=3, labeled=2)
    window = open_window(qtbot, tmp_path, folder)
    window.confirm_stop_training = lambda leaving="quit": True
    assert window.loop_state.start_finetune()
    qtbot.waitUntil(lambda: bool(seen), timeout=30_000)
    assert (seen[0] / training_runs.RUNNING_MARKER).exists()
    window.close()  # the app's event loop ends here: no queued signal is delivered after
    assert not window.model_loop.training.running
    assert not (seen[0] / training_runs.RUNNING_MARKER).exists()


def test_a_run_that_does_not_stop_in_time_keeps_its_marker(qtbot, tmp_path, monkeypatch) -> None:
    """The other way round: a run that Quit cancels but whose thread does not end in time keeps
    its marker (it is still going and the exit kills it), which the next launch reports."""
    from faceparse_app import training_runs
    from tests.app.test_gui_model_loop import open_window, project_with

    seen: list[Path] = []
    release = threading.Event()

    def stubborn_run(files, run_dir, *, cancel=None, on_progress=None, **_kwargs):
        seen.append(Path(run_dir))
        release.wait(60)  # ignores cancel
        return _Cancelled()

    monkeypatch.setattr(training_runs, "run_finetune_on_files", stubborn_run)
    window = open_window(qtbot, tmp_path, project_with(tmp_path / "project", n=3, labeled=2))
    assert window.loop_state.start_finetune()
    qtbot.waitUntil(lambda: bool(seen), timeout=30_000)
    window.model_loop.training.stop_job(timeout_ms=50)
    assert (seen[0] / training_runs.RUNNING_MARKER).exists()  # still running: a kill is true
    release.set()
    qtbot.waitUntil(lambda: not (seen[0] / training_runs.RUNNING_MARKER).exists(), timeout=30_000)
