"""The training form: where fine-tuning starts, device, model size, each kind of run's length,
and the start and cancel buttons. A view of :class:`LoopState`: it shows the state's settings,
start choice and resume point, and writes the user's changes back to it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from faceparse_app.loop_state import NEEDS_FILE, LoopState
from faceparse_app.training_settings import MAX_BATCH, MAX_EPOCHS, MAX_STEPS, PRESETS, RunLength

START_CHOICES = (
    ("project", "Project backbone"),
    ("starter_parser", "Starter parser"),
    ("starter", "Starter backbone"),
    ("file", "Choose file…"),
    ("scratch", "No backbone (random weights)"),
)


class _WheelOnceClickedInto:
    """A field that takes the wheel only once clicked into: the panel scrolls with the wheel,
    and a field passing under the pointer must not change the run's settings on the way (the
    wheel over "Start from" could land on "Choose file…" and open a file dialog)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt API)
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()  # to the scroll area


class FieldSpinBox(_WheelOnceClickedInto, QSpinBox):
    """A spin box of the form (see :class:`_WheelOnceClickedInto`)."""


class FieldComboBox(_WheelOnceClickedInto, QComboBox):
    """A combo box of the form (see :class:`_WheelOnceClickedInto`)."""


class LengthRow:
    """The three spin boxes of one kind of run's length (epochs, max steps, batch size)."""

    def __init__(self, what: str, length: RunLength) -> None:
        self.epochs_spin = FieldSpinBox()
        self.epochs_spin.setRange(1, MAX_EPOCHS)
        self.steps_spin = FieldSpinBox()
        self.steps_spin.setRange(0, MAX_STEPS)
        self.steps_spin.setSpecialValueText("no limit")
        self.batch_spin = FieldSpinBox()
        self.batch_spin.setRange(1, MAX_BATCH)
        for spin, name in ((self.epochs_spin, "epochs"), (self.steps_spin, "maximum steps"),
                           (self.batch_spin, "batch size")):
            spin.setAccessibleName(f"{what} {name}")
            spin.setToolTip(f"{what[0].upper()}{what[1:]}: {name}")
        self.show(length)

    @property
    def spins(self) -> tuple[QSpinBox, QSpinBox, QSpinBox]:
        return self.epochs_spin, self.steps_spin, self.batch_spin

    def show(self, length: RunLength) -> None:
        self.epochs_spin.setValue(length.epochs)
        self.steps_spin.setValue(length.max_steps or 0)
        self.batch_spin.setValue(length.batch_size)

    def length(self) -> RunLength:
        return RunLength(
            epochs=self.epochs_spin.value(),
            batch_size=self.batch_spin.value(),
            max_steps=self.steps_spin.value() or None,
        )


class TrainForm(QGroupBox):
    """Training settings and the start/cancel buttons (the panel connects Cancel).

    Signals:
        editing_done(): a length was confirmed with Enter; the window gives the keys back to
            the canvas (leaving a field with Tab or a click stays in the form).
    """

    editing_done = Signal()

    def __init__(self, state: LoopState, parent: QWidget | None = None) -> None:
        super().__init__("Training", parent)
        self.state = state
        form = QFormLayout(self)
        self.init_combo = FieldComboBox()
        for key, text in START_CHOICES:
            self.init_combo.addItem(text, key)
        self.init_combo.activated.connect(self._on_start_activated)
        form.addRow("Start from", self.init_combo)
        self.device_combo = FieldComboBox()
        self.device_combo.addItem("Auto (GPU if present)", "auto")
        for device in state.devices:
            self.device_combo.addItem(device, device)
        self.device_combo.currentIndexChanged.connect(
            lambda: state.update_settings(device=self.device_combo.currentData())
        )
        form.addRow("Device", self.device_combo)
        self.preset_combo = FieldComboBox()
        self.preset_combo.addItems(PRESETS)
        self.preset_combo.setToolTip("Model size when there is no backbone (a backbone brings its own)")
        self.preset_combo.currentTextChanged.connect(lambda text: state.update_settings(preset=text))
        form.addRow("Model", self.preset_combo)

        # Each kind of run has its own length: pretraining sees every photo, fine-tuning a few.
        self.finetune = LengthRow("fine-tuning", state.settings.finetune)
        self.pretrain = LengthRow("pretraining", state.settings.pretrain)
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        for column, title in enumerate(("Epochs", "Max steps", "Batch size"), start=1):
            grid.addWidget(QLabel(title), 0, column)
        for row, (title, lengths, field) in enumerate(
            (("Fine-tuning", self.finetune, "finetune"), ("Pretraining", self.pretrain, "pretrain")),
            start=1,
        ):
            grid.addWidget(QLabel(title), row, 0)
            for column, spin in enumerate(lengths.spins, start=1):
                grid.addWidget(spin, row, column)
                # Finished while it still has the focus: Enter, not Tab or a click elsewhere.
                spin.editingFinished.connect(
                    lambda spin=spin: spin.hasFocus() and self.editing_done.emit()
                )
                spin.valueChanged.connect(
                    lambda _value, lengths=lengths, field=field: state.update_settings(
                        **{field: lengths.length()}
                    )
                )
        form.addRow(grid)

        buttons = QHBoxLayout()
        self.finetune_button = QPushButton("Start fine-tuning")
        self.finetune_button.clicked.connect(state.start_finetune)
        self.pretrain_button = QPushButton("Start pretraining")
        self.pretrain_button.clicked.connect(state.start_pretrain)
        self.cancel_button = QPushButton("Cancel")
        for button in (self.finetune_button, self.pretrain_button, self.cancel_button):
            buttons.addWidget(button)
        form.addRow(buttons)

        state.settings_changed.connect(self._show_settings)
        state.start_changed.connect(self._show_start)
        state.resume_changed.connect(self._show_resume)
        state.running_changed.connect(self._show_running)
        self._show_settings()
        self._show_start()
        self._show_resume()
        self._show_running(state.running)

    # -- the user's choices ---------------------------------------------------------------------

    def _on_start_activated(self, index: int) -> None:
        key = self.init_combo.itemData(index)
        if key == "file":
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Start from a checkpoint: a fine-tuned parser (faceparse finetune) or a pretrained backbone",
                "",
                "Checkpoints (*.safetensors)",
            )
            if path:
                self.state.set_start_file(path)
                return
        self.state.choose_start(key)  # "file" with none chosen: back to the best start

    # -- the state, shown -----------------------------------------------------------------------

    def _show_settings(self) -> None:
        settings = self.state.settings
        widgets = (self.device_combo, self.preset_combo, *self.finetune.spins, *self.pretrain.spins)
        blockers = [QSignalBlocker(w) for w in widgets]  # showing the state writes nothing back
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(settings.device)))
        self.preset_combo.setCurrentText(settings.preset)
        self.finetune.show(settings.finetune)
        self.pretrain.show(settings.pretrain)
        del blockers

    def _show_start(self) -> None:
        start = self.state.start
        model = self.init_combo.model()
        with QSignalBlocker(self.init_combo):
            for index in range(self.init_combo.count()):
                key = self.init_combo.itemData(index)
                if key in NEEDS_FILE:
                    item = model.item(index)  # type: ignore[attr-defined]
                    item.setEnabled(start.available(key))
                    path = start.paths[key]
                    item.setToolTip(str(path) if path else "not available")
            file = start.paths["file"]
            if file is not None:
                self.init_combo.setItemText(self.init_combo.findData("file"), f"File: {Path(file).name}")
            self.init_combo.setCurrentIndex(self.init_combo.findData(start.key))
        self._show_resume()  # the pretraining tooltip names the backbone it continues

    def _show_resume(self) -> None:
        point, start = self.state.resume_point, self.state.start
        if point:
            self.pretrain_button.setText(
                f"Resume pretraining ({point.get('step', 0)}/{point.get('total_steps', '?')})"
            )
            tip = "Continue the unfinished pretraining run on all project images"
        else:
            self.pretrain_button.setText("Start pretraining")
            backbone = start.pretrain_start
            if backbone is None:
                origin = "from random weights"
            elif backbone == start.paths["project"]:
                origin = "continuing the project's backbone"
            else:
                origin = "continuing the starter backbone"
            tip = f"Self-supervised pretraining on all project images, {origin}"
        self.pretrain_button.setToolTip(tip)

    def _show_running(self, kind: str | None) -> None:
        idle = kind is None
        self.finetune_button.setEnabled(idle)
        self.pretrain_button.setEnabled(idle)
        self.cancel_button.setEnabled(not idle)
        for widget in (self.init_combo, self.device_combo, self.preset_combo,
                       *self.finetune.spins, *self.pretrain.spins):
            widget.setEnabled(idle)
