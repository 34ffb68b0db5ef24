"""A training run's progress: bar, step, loss, speed, time left, validation, plot, outcome and
error. A view of :class:`LoopState` (its running, progress, finished and failed events).
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QProgressBar, QVBoxLayout, QWidget

from faceparse_app.loop_state import LoopState, RunOutcome
from faceparse_app.widgets.loss_plot import LossPlot


def format_duration(seconds: float | None) -> str:
    """'45 s', '3 min', '1 h 20 min'; '' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def percent(value: Any) -> str:
    """A score in [0, 1] as a percentage with one decimal; '–' when unknown."""
    return "–" if value is None else f"{100 * float(value):.1f}"


def finetune_outcome_text(version: str, metrics: dict[str, Any] | Any, in_use: bool | None = None) -> str:
    """What a published parser scored, and only where the score means something.

    ``in_use``: whether the version is the model in use now (None: as the gate left it). The
    text is shown until the next run, and Activate / Roll back change what the gate decided.
    """
    held_out = metrics.get("num_val")  # None: a version recorded before it was kept
    if metrics.get("mean_f1") is None or held_out == 0:
        return _unscored_text(version, metrics, in_use)
    faces = (
        f"{held_out} held-out hand-labeled face{'s' if held_out != 1 else ''}"
        if held_out else "the held-out hand-labeled faces"
    )  # fmt: skip
    epoch = metrics.get("epoch")  # the score is the best epoch's, not the last one shown above
    best = f" (the run's best epoch, {epoch})" if epoch is not None else ""
    base, new = metrics.get("baseline_mean_f1"), metrics.get("candidate_mean_f1")
    if metrics.get("baseline_error") or base is None or new is None:
        text = f"Published {version}{best}: mean F1 {percent(metrics.get('mean_f1'))}% on {faces}"
        if metrics.get("baseline_error"):
            return text + (
                f". It replaces {metrics.get('baseline_version')}, whose file could not be loaded "
                "(so it could not be compared)."
            )
        return text + "."
    # One score per parser: the comparison that decides (both parse the faces the finder finds,
    # as pre-labels are made), not also the epoch's pick (the faces framed from the labels).
    was = metrics.get("baseline_version")
    scores = (
        f"On {faces}, parsed as pre-labels are, it scores mean F1 {percent(new)}% against "
        f"{percent(base)}% for {was}"
    )
    text = f"Published {version}{best}. {scores}"
    gate_activated = bool(metrics.get("activated", True))
    if in_use is not None and in_use != gate_activated:
        return text + (
            f"; it was kept aside, then activated by hand: {version} is in use." if in_use
            else f"; it replaced {was}, and is no longer in use."
        )  # fmt: skip
    if gate_activated:
        return text + ", which it replaces."
    return text + f", so {was} stays in use; activate {version} below to use it anyway."


def _unscored_text(version: str, metrics: dict, in_use: bool | None) -> str:
    """The outcome of a fine-tune no hand-labeled face could score."""
    if metrics.get("num_by_hand") == 1:  # held out, none of the annotator's would be left
        text = (
            f"Published {version}, not validated: 1 face was labeled or corrected by hand, and a "
            "score needs one more (one is held out to measure the model; accepted pre-labels "
            "are its own output, so they cannot). Correct one more face by hand to get a score."
        )
    else:
        text = (
            f"Published {version}, not validated: no faces were labeled or corrected by hand "
            "yet (accepted pre-labels are the model's own output, so they cannot measure it). "
            "Correct a few faces by hand to get a score."
        )
    was = metrics.get("baseline_version")
    if metrics.get("activated") is False and was:
        if in_use:
            return text + f" Kept aside unscored, then activated by hand: {version} is in use."
        text += f" Unscored, it does not replace {was}: {was} stays in use; activate {version} "
        text += "below to use it anyway."
    return text


class TrainProgress(QGroupBox):
    """Shows the running job's progress and how the last one ended."""

    def __init__(self, state: LoopState, parent: QWidget | None = None) -> None:
        super().__init__("Progress", parent)
        layout = QVBoxLayout(self)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        layout.addWidget(self.progress_bar)
        self.step_label = QLabel("")
        self.loss_label = QLabel("")
        self.speed_label = QLabel("")
        self.eta_label = QLabel("")
        # Two by two, so a running job's numbers do not widen the dock (and shrink the canvas).
        grid = QGridLayout()
        for k, label in enumerate((self.step_label, self.eta_label, self.loss_label, self.speed_label)):
            grid.addWidget(label, k // 2, k % 2)
        layout.addLayout(grid)
        self.val_label = QLabel("")
        self.val_label.setWordWrap(True)
        layout.addWidget(self.val_label)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.plot = LossPlot()
        layout.addWidget(self.plot, 1)
        self.error_label = QLabel("")
        self.error_label.setObjectName("train_error")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("#train_error { background: #ffebee; color: #b71c1c; padding: 4px; }")
        self.error_label.hide()
        layout.addWidget(self.error_label)

        state.running_changed.connect(self._show_running)
        state.retraining.connect(lambda: self.status_label.setText("Enough new labels: retraining…"))
        state.progress.connect(self._show_progress)
        state.finished.connect(self._show_finished)
        state.failed.connect(self._show_error)
        state.refused.connect(self._show_refusal)
        state.project_left.connect(self.clear)
        state.versions_changed.connect(self._show_in_use)
        self._state = state
        self._outcome: RunOutcome | None = None  # the fine-tune the status text describes

    def clear(self) -> None:
        """Show no run: the last one belonged to a project that is closed now."""
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        for label in (self.step_label, self.loss_label, self.speed_label, self.eta_label,
                      self.val_label, self.status_label):
            label.setText("")
        self.plot.clear()
        self.plot.empty_text = "no training yet"
        self.error_label.hide()
        self._outcome = None

    def show_cancelling(self) -> None:
        self.status_label.setText("Cancelling…")

    def _show_running(self, kind: str | None) -> None:
        if kind is None:
            return
        self._outcome = None
        self.error_label.hide()
        self.plot.clear()
        self.plot.empty_text = "waiting for the first step"
        self.progress_bar.setRange(0, 0)  # busy until the first step reports its total
        self.status_label.setText(
            "Preparing fine-tuning…" if kind == "finetune" else "Preparing pretraining…"
        )
        for label in (self.step_label, self.loss_label, self.speed_label, self.eta_label, self.val_label):
            label.setText("")

    def _show_progress(self, report: dict[str, Any]) -> None:
        self.plot.add_progress(report)
        if report.get("phase") == "val":
            self.val_label.setText(
                # Framed from their labels (picks the epoch); the outcome compares as pre-labels are.
                f"On the held-out hand-labeled faces, framed from their labels (epoch "
                f"{report.get('epoch')}): mean F1 "
                f"{percent(report.get('mean_f1'))}%, mIoU {percent(report.get('miou'))}%"
            )
            return
        step, total = int(report.get("step", 0)), int(report.get("total_steps", 0))
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(step, total))
        self.step_label.setText(
            f"step {step}/{total} · epoch {report.get('epoch', '?')}/{report.get('epochs', '?')}"
        )
        loss = report.get("loss")
        if loss is not None:
            self.loss_label.setText(f"loss {loss:.4f}")
        speed = report.get("images_per_s")
        if speed:
            self.speed_label.setText(f"{speed:.1f} img/s")
        left = format_duration(report.get("eta_s"))
        self.eta_label.setText(f"{left} left" if left else "")
        if report.get("phase") == "pretrain":
            self.status_label.setText("Pretraining…")
        elif report.get("backbone_held"):
            self.status_label.setText("Fine-tuning: fitting the new head, the backbone held…")
        else:
            self.status_label.setText("Fine-tuning…")

    def _show_finished(self, outcome: RunOutcome) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0 if outcome.cancelled else 1)
        what = "pretraining" if outcome.kind == "pretrain" else "fine-tuning"
        if outcome.cancelled:
            # The last step's numbers ("step 7/30 … 43 s left") no longer describe anything.
            for label in (self.step_label, self.loss_label, self.speed_label, self.eta_label):
                label.setText("")
            text = f"{what.capitalize()} cancelled; nothing was published."
            if outcome.kind == "finetune" and outcome.note:  # one the app's end cut short
                text = outcome.note
            self.plot.empty_text = "" if outcome.note else "no step finished"
            self.plot.update()
            if outcome.kind == "pretrain":
                text += " Start it again to resume."
        elif outcome.version and outcome.kind == "finetune":
            self._outcome = outcome
            text = finetune_outcome_text(outcome.version, outcome.metrics)
        elif outcome.version:
            text = f"Published {outcome.version}."
        else:
            text = f"{what.capitalize()} finished."
        self.status_label.setText(text)

    def _show_in_use(self) -> None:
        """Activate or Roll back changed what the last run's gate decided: say what is in use."""
        outcome = self._outcome
        if outcome is None or outcome.version is None:
            return
        in_use = outcome.version in self._state.active_ids
        self.status_label.setText(finetune_outcome_text(outcome.version, outcome.metrics, in_use))

    def _show_refusal(self, kind: str, message: str) -> None:
        """Why a start could not begin (nothing ran, so nothing "stopped")."""
        self._show_error(message)
        what = "Pretraining" if kind == "pretrain" else "Fine-tuning"
        self.status_label.setText(f"{what} did not start.")

    def _show_error(self, message: str) -> None:
        """Why a run failed (stays until the next start)."""
        self._outcome = None
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label.setText(
            "Training stopped with an error; no model was published and no label was changed."
        )
        self.error_label.setText(message)
        self.error_label.show()
