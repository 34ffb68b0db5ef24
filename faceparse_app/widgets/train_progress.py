"""A training run's progress: bar, step, loss, speed, time left, validation, plot, outcome and
error. A view of :class:`LoopState` (its running, progress, finished and failed events).
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

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
        row = QHBoxLayout()
        for label in (self.step_label, self.loss_label, self.speed_label, self.eta_label):
            row.addWidget(label)
        layout.addLayout(row)
        self.val_label = QLabel("")
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

    def show_cancelling(self) -> None:
        self.status_label.setText("Cancelling…")

    def _show_running(self, kind: str | None) -> None:
        if kind is None:
            return
        self.error_label.hide()
        self.plot.clear()
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
                f"Validation (epoch {report.get('epoch')}): mean F1 {percent(report.get('mean_f1'))}%, "
                f"mIoU {percent(report.get('miou'))}%"
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
            text = f"{what.capitalize()} cancelled; nothing was published."
            if outcome.kind == "pretrain":
                text += " Start it again to resume."
        elif outcome.version:
            text = f"Published {outcome.version}"
            metrics = outcome.metrics
            if metrics.get("mean_f1") is not None:
                text += f": mean F1 {percent(metrics.get('mean_f1'))}%, mIoU {percent(metrics.get('miou'))}%"
            text += "."
        else:
            text = f"{what.capitalize()} finished."
        self.status_label.setText(text)

    def _show_error(self, message: str) -> None:
        """Why a run failed (stays until the next start)."""
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label.setText(
            "Training stopped with an error; no model was published and no label was changed."
        )
        self.error_label.setText(message)
        self.error_label.show()
