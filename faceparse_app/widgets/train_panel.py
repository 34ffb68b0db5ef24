"""The training panel: start/cancel fine-tuning and pretraining, watch progress, pick versions.

The panel holds no training logic. It asks through signals and is told through slots:

- out: ``start_finetune_requested(dict)``, ``start_pretrain_requested(dict)``,
  ``cancel_requested()``, ``activate_requested(str)``, ``rollback_requested()``,
  ``auto_retrain_requested(dict)`` (same settings as a fine-tune start).
- in: ``on_progress(dict)``, ``on_finished(dict)``, ``on_error(str)``, ``on_cancelled()``,
  ``set_versions(list, active_ids)``, ``set_init_options(project, starter)``,
  ``set_pretrain_resume(point)``, ``set_running(kind)``, ``notify_labeled(n)``.

Put it in a QDockWidget in the main window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from faceparse_app.training import AutoRetrainCounter
from faceparse_app.widgets.loss_plot import LossPlot

INIT_CHOICES = (
    ("project", "Project backbone"),
    ("starter_parser", "Starter parser"),
    ("starter", "Starter backbone"),
    ("file", "Choose file…"),
    ("scratch", "No backbone (random weights)"),
)
# The choice made until the user picks one: the first available. The starter parser first: for
# K = 10 new labels it beat a backbone start by 7.2 mIoU on CelebA faces and 10.6 on HELEN, and a
# backbone continued on the photos (what the app's pretraining makes) fine-tunes no better than
# the starter backbone (BENCHMARKS.md, "Starter models"); then the project's own backbone.
DEFAULT_INIT_ORDER = ("starter_parser", "project", "starter", "scratch")
NEEDS_FILE = ("project", "starter", "starter_parser")  # choices that need a file to exist
PRESETS = ("lite", "paper", "tiny")


def available_devices() -> list[str]:
    """Devices this machine can train on: "cpu", then "cuda"/"cuda:N" and "mps" when present."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        devices += ["cuda"] if count == 1 else [f"cuda:{i}" for i in range(count)]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


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


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


class TrainPanel(QWidget):
    """Fine-tuning and pretraining controls, live progress and plot, model versions.

    Signals:
        start_finetune_requested(dict): settings from :meth:`finetune_settings`.
        start_pretrain_requested(dict): settings from :meth:`pretrain_settings`.
        cancel_requested(): the user pressed Cancel.
        activate_requested(str): a version id to make active.
        rollback_requested(): go back to the previous parser version.
        auto_retrain_requested(dict): enough new labels; fine-tune with these settings.
    """

    start_finetune_requested = Signal(dict)
    start_pretrain_requested = Signal(dict)
    cancel_requested = Signal()
    activate_requested = Signal(str)
    rollback_requested = Signal()
    auto_retrain_requested = Signal(dict)

    def __init__(self, parent: QWidget | None = None, devices: Sequence[str] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("train_panel")
        self.counter = AutoRetrainCounter(every=10, enabled=False)
        self.running: str | None = None
        self._init_paths: dict[str, Path | None] = {
            "project": None, "starter": None, "starter_parser": None, "file": None
        }
        self._retrain_pending = False
        self._resume_point: Mapping[str, Any] | None = None
        self._init_automatic = True

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self._build_settings(devices))
        layout.addWidget(self._build_progress())
        layout.addWidget(self._build_versions())
        layout.addWidget(self._build_auto_retrain())
        self.set_init_options(None, None)
        self.set_running(None)

    # -- construction -------------------------------------------------------------------------

    def _build_settings(self, devices: Sequence[str] | None) -> QGroupBox:
        box = QGroupBox("Training")
        form = QFormLayout(box)
        self.init_combo = QComboBox()
        for key, text in INIT_CHOICES:
            self.init_combo.addItem(text, key)
        self.init_combo.activated.connect(self._on_init_activated)
        form.addRow("Start from", self.init_combo)
        self.device_combo = QComboBox()
        self.device_combo.addItem("Auto (GPU if present)", "auto")
        for device in devices if devices is not None else available_devices():
            self.device_combo.addItem(device, device)
        form.addRow("Device", self.device_combo)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(PRESETS)
        self.preset_combo.setToolTip("Model size when there is no backbone (a backbone brings its own)")
        form.addRow("Model", self.preset_combo)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10000)
        self.epochs_spin.setValue(30)
        form.addRow("Epochs", self.epochs_spin)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 10_000_000)
        self.steps_spin.setSpecialValueText("no limit")
        form.addRow("Max steps", self.steps_spin)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(4)
        form.addRow("Batch size", self.batch_spin)
        buttons = QHBoxLayout()
        self.finetune_button = QPushButton("Start fine-tuning")
        self.finetune_button.clicked.connect(self._on_finetune_clicked)
        self.pretrain_button = QPushButton("Start pretraining")
        self.pretrain_button.setToolTip("Self-supervised pretraining on all project images")
        self.pretrain_button.clicked.connect(self._on_pretrain_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        for button in (self.finetune_button, self.pretrain_button, self.cancel_button):
            buttons.addWidget(button)
        form.addRow(buttons)
        return box

    def _build_progress(self) -> QGroupBox:
        box = QGroupBox("Progress")
        layout = QVBoxLayout(box)
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
        return box

    def _build_versions(self) -> QGroupBox:
        box = QGroupBox("Model versions")
        layout = QVBoxLayout(box)
        self.versions_tree = QTreeWidget()
        self.versions_tree.setHeaderLabels(["Version", "Kind", "Mean F1 %", "mIoU %", "Created", "Note"])
        self.versions_tree.setRootIsDecorated(False)
        self.versions_tree.itemSelectionChanged.connect(self._update_version_buttons)
        self.versions_tree.itemDoubleClicked.connect(lambda *_: self._on_activate_clicked())
        layout.addWidget(self.versions_tree)
        row = QHBoxLayout()
        self.activate_button = QPushButton("Activate")
        self.activate_button.clicked.connect(self._on_activate_clicked)
        self.rollback_button = QPushButton("Roll back")
        self.rollback_button.setToolTip("Go back to the previous model")
        self.rollback_button.clicked.connect(self.rollback_requested)
        row.addWidget(self.activate_button)
        row.addWidget(self.rollback_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.no_model_label = QLabel("No model yet: label a few faces, then start fine-tuning.")
        self.no_model_label.setWordWrap(True)
        layout.addWidget(self.no_model_label)
        return box

    def _build_auto_retrain(self) -> QWidget:
        widget = QWidget()
        row = QHBoxLayout(widget)
        row.setContentsMargins(0, 0, 0, 0)
        self.auto_check = QCheckBox("Retrain every")
        self.auto_check.toggled.connect(self._on_auto_toggled)
        self.auto_spin = QSpinBox()
        self.auto_spin.setRange(1, 10000)
        self.auto_spin.setValue(self.counter.every)
        self.auto_spin.setSuffix(" new labels")
        self.auto_spin.valueChanged.connect(self.counter.set_every)
        row.addWidget(self.auto_check)
        row.addWidget(self.auto_spin)
        row.addStretch(1)
        return widget

    # -- settings -----------------------------------------------------------------------------

    def set_init_options(
        self,
        project: Path | str | None,
        starter: Path | str | None,
        starter_parser: Path | str | None = None,
    ) -> None:
        """Which starting points exist; unavailable choices are disabled, the best one selected.

        Until the user picks a choice, the best available one (``DEFAULT_INIT_ORDER``) is
        selected; a choice the user picked stays while its file exists.
        """
        self._init_paths["project"] = Path(project) if project else None
        self._init_paths["starter"] = Path(starter) if starter else None
        self._init_paths["starter_parser"] = Path(starter_parser) if starter_parser else None
        self._update_pretrain_tooltip()
        model = self.init_combo.model()
        for index in range(self.init_combo.count()):
            key = self.init_combo.itemData(index)
            if key in NEEDS_FILE:
                item = model.item(index)  # type: ignore[attr-defined]
                item.setEnabled(self._init_paths[key] is not None)
                path = self._init_paths[key]
                item.setToolTip(str(path) if path else "not available")
        current = self.init_combo.currentData()
        unavailable = current in NEEDS_FILE and self._init_paths[current] is None
        if unavailable or self._init_automatic:
            best = next(k for k in DEFAULT_INIT_ORDER if k == "scratch" or self._init_paths[k])
            self.init_combo.setCurrentIndex(self.init_combo.findData(best))
            self._init_automatic = True

    def set_init_file(self, path: Path | str) -> None:
        """Use a backbone file the user chose."""
        self._init_paths["file"] = Path(path)
        self._init_automatic = False
        index = self.init_combo.findData("file")
        self.init_combo.setItemText(index, f"File: {Path(path).name}")
        self.init_combo.setCurrentIndex(index)

    def _on_init_activated(self, index: int) -> None:
        self._init_automatic = False  # the user chose; keep it
        if self.init_combo.itemData(index) != "file":
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a pretrained backbone", "", "Checkpoints (*.safetensors)"
        )
        if path:
            self.set_init_file(path)
        elif self._init_paths["file"] is None:
            self._init_automatic = True  # dialog cancelled: back to the best available choice
            self.set_init_options(
                self._init_paths["project"],
                self._init_paths["starter"],
                self._init_paths["starter_parser"],
            )

    def finetune_settings(self) -> dict[str, Any]:
        """What a fine-tuning start asks for.

        Keys: init ("project", "starter_parser", "starter", "file", "scratch"), init_path (str or None), device,
        preset, epochs, max_steps (None = no limit), batch_size.
        """
        init = self.init_combo.currentData()
        path = self._init_paths.get(init)
        return {
            "init": init,
            "init_path": str(path) if path else None,
            **self._common_settings(),
        }

    def pretrain_settings(self) -> dict[str, Any]:
        """What a pretraining start asks for: device, preset, epochs, max_steps, batch_size,
        resume, init_path (the backbone a fresh run continues: the project's, else the
        starter; None when resuming or when there is neither)."""
        settings = self._common_settings()
        settings["resume"] = self._resume_point is not None
        settings["init_path"] = None
        if self._resume_point is not None and self._resume_point.get("preset"):
            settings["preset"] = self._resume_point["preset"]
        elif self._resume_point is None:
            path = self._pretrain_start()
            settings["init_path"] = str(path) if path else None
        return settings

    def _pretrain_start(self) -> Path | None:
        return self._init_paths["project"] or self._init_paths["starter"]

    def _update_pretrain_tooltip(self) -> None:
        start = self._pretrain_start()
        if self._resume_point:
            text = "Continue the unfinished pretraining run on all project images"
        else:
            if start is None:
                origin = "from random weights"
            elif start == self._init_paths["project"]:
                origin = "continuing the project's backbone"
            else:
                origin = "continuing the starter backbone"
            text = f"Self-supervised pretraining on all project images, {origin}"
        self.pretrain_button.setToolTip(text)

    def _common_settings(self) -> dict[str, Any]:
        steps = self.steps_spin.value()
        return {
            "device": self.device_combo.currentData(),
            "preset": self.preset_combo.currentText(),
            "epochs": self.epochs_spin.value(),
            "max_steps": steps or None,
            "batch_size": self.batch_spin.value(),
        }

    def set_pretrain_resume(self, point: Mapping[str, Any] | None) -> None:
        """Offer to resume an unfinished pretraining run (``training.pretrain_resume_point``)."""
        self._resume_point = point
        if point:
            self.pretrain_button.setText(
                f"Resume pretraining ({point.get('step', 0)}/{point.get('total_steps', '?')})"
            )
        else:
            self.pretrain_button.setText("Start pretraining")
        self._update_pretrain_tooltip()

    # -- buttons ------------------------------------------------------------------------------

    # A start request puts the panel in its running state at once (no double start); the owner
    # answers with on_progress/on_finished, or on_error if the run could not start.

    def _on_finetune_clicked(self) -> None:
        self.counter.reset()
        settings = self.finetune_settings()
        self.set_running("finetune")
        self.start_finetune_requested.emit(settings)

    def _on_pretrain_clicked(self) -> None:
        settings = self.pretrain_settings()
        self.set_running("pretrain")
        self.start_pretrain_requested.emit(settings)

    def _on_cancel_clicked(self) -> None:
        self.cancel_button.setEnabled(False)
        self.status_label.setText("Cancelling…")
        self.cancel_requested.emit()

    def _on_activate_clicked(self) -> None:
        item = self.versions_tree.currentItem()
        if item is not None:
            self.activate_requested.emit(item.data(0, Qt.ItemDataRole.UserRole))

    def _on_auto_toggled(self, on: bool) -> None:
        self.counter.enabled = on
        self.counter.reset()

    # -- state in -----------------------------------------------------------------------------

    @Slot(object)
    def set_running(self, kind: str | None) -> None:
        """'finetune', 'pretrain' or None; enables the right buttons."""
        self.running = kind
        idle = kind is None
        self.finetune_button.setEnabled(idle)
        self.pretrain_button.setEnabled(idle)
        self.cancel_button.setEnabled(not idle)
        for widget in (self.init_combo, self.device_combo, self.preset_combo, self.epochs_spin,
                       self.steps_spin, self.batch_spin):
            widget.setEnabled(idle)
        if not idle:
            self.error_label.hide()
            self.plot.clear()
            self.progress_bar.setRange(0, 0)  # busy until the first step reports its total
            self.status_label.setText("Preparing fine-tuning…" if kind == "finetune" else "Preparing pretraining…")
            for label in (self.step_label, self.loss_label, self.speed_label, self.eta_label, self.val_label):
                label.setText("")

    @Slot(dict)
    def on_progress(self, report: dict) -> None:
        """A trainer progress dict (``phase`` "train", "val" or "pretrain")."""
        self.plot.add_progress(report)
        if report.get("phase") == "val":
            self.val_label.setText(
                f"Validation (epoch {report.get('epoch')}): mean F1 {_pct(report.get('mean_f1'))}%, "
                f"mIoU {_pct(report.get('miou'))}%"
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

    @Slot(dict)
    def on_finished(self, summary: dict) -> None:
        """A run ended. ``summary``: kind, version (id or None), metrics (dict), cancelled (bool)."""
        self.set_running(None)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0 if summary.get("cancelled") else 1)
        version = summary.get("version")
        metrics = summary.get("metrics") or {}
        what = "pretraining" if summary.get("kind") == "pretrain" else "fine-tuning"
        if summary.get("cancelled"):
            text = f"{what.capitalize()} cancelled; nothing was published."
            if summary.get("kind") == "pretrain":
                text += " Start it again to resume."
        elif version:
            text = f"Published {version}"
            if metrics.get("mean_f1") is not None:
                text += f": mean F1 {_pct(metrics.get('mean_f1'))}%, mIoU {_pct(metrics.get('miou'))}%"
            text += "."
        else:
            text = f"{what.capitalize()} finished."
        self.status_label.setText(text)
        self._maybe_run_pending_retrain()

    @Slot()
    def on_cancelled(self) -> None:
        self.on_finished({"kind": self.running, "cancelled": True})

    @Slot(str)
    def on_error(self, message: str) -> None:
        """Show why a run failed (stays until the next start); the panel becomes idle."""
        self.set_running(None)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label.setText("Training stopped with an error; no model was published and no label was changed.")
        self.error_label.setText(message)
        self.error_label.show()
        self._retrain_pending = False

    @property
    def error_text(self) -> str:
        """The error shown ('' when none)."""
        return "" if self.error_label.isHidden() else self.error_label.text()

    def set_versions(self, versions: Iterable[Any], active_ids: Iterable[str] = ()) -> None:
        """List model versions (``ModelVersion`` objects or their ``to_dict()``), newest first.

        Args:
            versions: the store's versions.
            active_ids: ids currently active (shown in bold with a ★).
        """
        active = set(active_ids)
        self.versions_tree.clear()
        rows = [v.to_dict() if hasattr(v, "to_dict") else dict(v) for v in versions]
        rows.sort(key=lambda r: r["id"], reverse=True)
        for row in rows:
            metrics = row.get("metrics") or {}
            is_active = row["id"] in active
            item = QTreeWidgetItem([
                ("★ " if is_active else "") + row["id"],
                row.get("kind", ""),
                _pct(metrics.get("mean_f1")) if row.get("kind") == "parser" else "",
                _pct(metrics.get("miou")) if row.get("kind") == "parser" else "",
                str(row.get("created", ""))[:16].replace("T", " "),
                row.get("note", ""),
            ])
            item.setData(0, Qt.ItemDataRole.UserRole, row["id"])
            if is_active:
                font = item.font(0)
                font.setBold(True)
                for column in range(item.columnCount()):
                    item.setFont(column, font)
            self.versions_tree.addTopLevelItem(item)
        parsers = [r for r in rows if r.get("kind") == "parser"]
        self.no_model_label.setVisible(not parsers)
        self.rollback_button.setEnabled(len(parsers) > 1)
        self._update_version_buttons()

    def _update_version_buttons(self) -> None:
        item = self.versions_tree.currentItem()
        self.activate_button.setEnabled(item is not None and not item.text(0).startswith("★"))

    def version_ids(self) -> list[str]:
        """Ids listed, top to bottom."""
        tree = self.versions_tree
        return [tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) for i in range(tree.topLevelItemCount())]

    def select_version(self, version_id: str) -> None:
        for i in range(self.versions_tree.topLevelItemCount()):
            item = self.versions_tree.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == version_id:
                self.versions_tree.setCurrentItem(item)
                return

    # -- auto-retrain -------------------------------------------------------------------------

    @Slot(int)
    def notify_labeled(self, n: int = 1) -> None:
        """Tell the panel that ``n`` more faces were labeled; may request a retrain.

        When the threshold is crossed during a run, the retrain is requested when it ends.
        """
        if not self.counter.labeled(n):
            return
        if self.running is None:
            self._request_auto_retrain()
        else:
            self._retrain_pending = True

    def _maybe_run_pending_retrain(self) -> None:
        if self._retrain_pending and self.running is None:
            self._retrain_pending = False
            self._request_auto_retrain()

    def _request_auto_retrain(self) -> None:
        settings = self.finetune_settings()
        self.set_running("finetune")
        self.status_label.setText("Enough new labels: retraining…")
        self.auto_retrain_requested.emit(settings)
