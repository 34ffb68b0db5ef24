"""Trial 7: the model loop in the real window (training panel, versions, gate, pre-labels).

Each test reproduces what a team lead or an ML engineer saw in the trial of 2026-12-07.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from faceparse_app.loop_state import LoopState, RunOutcome
from faceparse_app.model_store import ModelVersion
from faceparse_app.widgets.train_panel import TrainPanel


@pytest.fixture
def panel(qtbot) -> TrainPanel:
    widget = TrainPanel(LoopState(devices=["cpu"]))
    qtbot.addWidget(widget)
    widget.resize(420, 760)
    widget.show()
    return widget


def parser(vid: str, **metrics: object) -> ModelVersion:
    return ModelVersion(id=vid, kind="parser", dir=Path("/nowhere") / vid,
                        created="2026-12-07T04:33:00+0000", metrics=dict(metrics))


KEPT_ASIDE = {"mean_f1": 0.973, "miou": 0.951, "num_val": 1, "epoch": 1, "activated": False,
              "baseline_mean_f1": 0.998, "candidate_mean_f1": 0.973, "baseline_version": "starter"}
REPLACED = {"mean_f1": 0.9, "miou": 0.8, "num_val": 2, "epoch": 2, "activated": True,
            "baseline_mean_f1": 0.85, "candidate_mean_f1": 0.9, "baseline_version": "starter"}


def test_outcome_follows_activating_the_kept_aside_version(panel: TrainPanel) -> None:
    """The trial: v0001 was kept aside ("starter stays in use; activate v0001 below"); the lead
    activated it, and the panel went on saying the starter stays in use, beside a list whose ★
    said v0001 was the model in use."""
    state = panel.state
    state.set_versions([parser("v0001", **KEPT_ASIDE)], ())
    state.finish(RunOutcome(kind="finetune", version="v0001", metrics=KEPT_ASIDE))
    assert "stays in use" in panel.progress.status_label.text()
    state.set_versions([parser("v0001", **KEPT_ASIDE)], ("v0001",))
    text = panel.progress.status_label.text()
    assert "stays in use" not in text and "activate v0001 below" not in text
    assert "v0001 is in use" in text
    assert "97.3" in text and "99.8" in text  # the gate's comparison is still there to read
    state.set_versions([parser("v0001", **KEPT_ASIDE)], ())  # rolled back: as it was
    assert "stays in use" in panel.progress.status_label.text()


def test_outcome_follows_rolling_back_the_version_it_published(panel: TrainPanel) -> None:
    """A version that passed the gate and was rolled back: the panel must not go on saying
    it replaces the starter."""
    state = panel.state
    state.set_versions([parser("v0001", **REPLACED)], ("v0001",))
    state.finish(RunOutcome(kind="finetune", version="v0001", metrics=REPLACED))
    assert "which it replaces" in panel.progress.status_label.text()
    state.set_versions([parser("v0001", **REPLACED)], ())
    text = panel.progress.status_label.text()
    assert "which it replaces" not in text
    assert "no longer in use" in text


# ------------------------------------------------- a fine-tune cut short by kill -9, next launch


class _Cancelled:
    def summary(self) -> dict:
        return {"kind": "finetune", "version": None, "metrics": {}, "cancelled": True}


def test_a_running_fine_tune_marks_its_run_until_it_ends(qtbot, tmp_path, monkeypatch) -> None:
    """What tells the next launch that a run was cut short: a marker in its folder while the
    job runs, gone once it ends (finished, cancelled or failed)."""
    from faceparse_app import training_runs
    from tests.app.test_gui_model_loop import open_window, project_with, wait_job

    release = threading.Event()
    seen: list[Path] = []

    def blocked_run(files, run_dir, *, cancel=None, on_progress=None, **_kwargs):
        seen.append(Path(run_dir))
        release.wait(60)
        return _Cancelled()

    monkeypatch.setattr(training_runs, "run_finetune_on_files", blocked_run)
    window = open_window(qtbot, tmp_path, project_with(tmp_path / "project", n=3, labeled=2))
    assert window.loop_state.start_finetune()
    qtbot.waitUntil(lambda: bool(seen), timeout=30_000)
    assert (seen[0] / training_runs.RUNNING_MARKER).exists()
    release.set()
    wait_job(qtbot, window)
    assert not (seen[0] / training_runs.RUNNING_MARKER).exists()


def test_the_next_launch_says_a_fine_tune_was_cut_short(qtbot, tmp_path) -> None:
    """The trial: kill -9 at step 10 of 25; the next launch's Training panel said "no training
    yet" and nothing about the run the lead had started."""
    from faceparse_app import training_runs
    from tests.app.test_gui_model_loop import open_window, project_with

    folder = project_with(tmp_path / "project", n=3, labeled=2)
    run = folder / ".faceparse" / "runs" / "finetune-20261207-043701"
    run.mkdir(parents=True)
    (run / training_runs.RUNNING_MARKER).touch()  # what a killed run leaves behind
    (run / "finetune_best.safetensors").write_bytes(b"weights")
    (run / "finetune_log.jsonl").write_text(
        json.dumps({"step": 9, "total_steps": 25}) + "\n" + json.dumps({"step": 10, "total_steps": 25}) + "\n"
    )
    window = open_window(qtbot, tmp_path, folder)
    text = window.train_panel.progress.status_label.text()
    assert "stopped at step 10 of 25" in text and "2026-12-07 04:37" in text
    assert "nothing was published" in text
    assert not (run / "finetune_best.safetensors").exists()  # its weights are dropped, as before
    window.close_project()
    window.open_project(folder)  # said once: the run is not reported again
    assert "stopped at step" not in window.train_panel.progress.status_label.text()


# ------------------------------------- closing the project, or opening another, while training


@pytest.mark.parametrize("leave", ["close", "open another"])
def test_leaving_the_project_asks_while_training(qtbot, tmp_path, monkeypatch, leave) -> None:
    """The trial: File → Close project (or opening a second project) during a fine-tune threw
    the run away without a word (Quit asks first), and the panel forgot it had run."""
    from faceparse_app import training_runs
    from tests.app.test_gui_model_loop import open_window, project_with, wait_job

    started = threading.Event()

    def run_until_cancelled(files, run_dir, *, cancel=None, on_progress=None, **_kwargs):
        started.set()
        cancel.wait(60)
        return _Cancelled()

    monkeypatch.setattr(training_runs, "run_finetune_on_files", run_until_cancelled)
    first = project_with(tmp_path / "first", n=3, labeled=2)
    second = project_with(tmp_path / "second", n=2)
    window = open_window(qtbot, tmp_path, first)
    asked: list[str] = []
    window.confirm_stop_training = lambda leaving="quit": asked.append(leaving) or False
    assert window.loop_state.start_finetune()
    qtbot.waitUntil(started.is_set, timeout=30_000)

    def leave_it() -> None:
        if leave == "close":
            window.close_action.trigger()
        else:
            window.open_project(second)

    leave_it()
    assert asked and asked[0] != "quit"  # the question names what the user is doing
    assert window.session is not None and window.session.project.root == first
    assert window.model_loop.training.running  # "No" kept the run going
    window.confirm_stop_training = lambda leaving="quit": True
    leave_it()
    wait_job(qtbot, window)
    assert window.session is None if leave == "close" else window.session.project.root == second


# ------------------------------------------ scrolling the training panel changes no setting


def _wheel(widget, up: bool = True) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 if up else -120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_scrolling_the_panel_over_a_field_changes_no_setting(panel: TrainPanel, monkeypatch) -> None:
    """The trial: the lead set Max steps to 20, scrolled the panel with the mouse wheel to reach
    the versions list, and the fine-tune ran with 25: the field under the pointer took the wheel
    (over "Start from" it could land on "Choose file…" and open a file dialog)."""
    dialogs: list[object] = []
    monkeypatch.setattr("faceparse_app.widgets.train_form.QFileDialog.getOpenFileName",
                        lambda *a, **k: dialogs.append(a) or ("", ""))
    form = panel.form
    form.finetune.steps_spin.setValue(20)
    before = panel.state.settings
    for widget in (*form.finetune.spins, *form.pretrain.spins, form.preset_combo, form.device_combo,
                   form.init_combo):
        widget.clearFocus()  # the pointer passes over it; the user never clicked it
        _wheel(widget)
        _wheel(widget, up=False)
        _wheel(widget, up=False)
    assert panel.state.settings == before and not dialogs
    assert form.finetune.steps_spin.value() == 20
    form.finetune.steps_spin.setFocus()  # a field the user clicked into still takes the wheel
    assert form.finetune.steps_spin.hasFocus()
    _wheel(form.finetune.steps_spin)
    assert form.finetune.steps_spin.value() == 21


def test_the_plot_does_not_say_no_training_while_a_run_prepares_or_after_a_cut_short_one(panel: TrainPanel) -> None:
    """The trial: "Preparing fine-tuning…" above a plot saying "no training yet"; and after a
    killed run, the note "stopped at step 18 of 25" above the same words."""
    state, plot = panel.state, panel.progress.plot
    assert plot.empty_text == "no training yet"
    state.job_started("finetune")
    assert "no training" not in plot.empty_text
    state.finish(RunOutcome(kind="finetune", cancelled=True))  # cancelled before its first step
    assert plot.empty_text == "no step finished"
    state.abandon(RunOutcome(kind="finetune", cancelled=True, note="The fine-tuning run was stopped at step 18 of 25"))
    assert "stopped at step 18" in panel.progress.status_label.text()
    assert "no training" not in plot.empty_text and "no step" not in plot.empty_text
