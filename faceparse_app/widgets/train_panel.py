"""The training panel: start/cancel fine-tuning and pretraining, watch progress, pick versions.

A view of the Qt-free :class:`faceparse_app.loop_state.LoopState`: it holds no training logic,
no policy and no job flag of its own. It shows the state (the form, progress, versions) and turns
the user's clicks into the state's intents; the state decides and the controllers
(``TrainingRuns``, ``ModelLoop``) carry out what it asks. No torch here, and no training code.

Put it in a QDockWidget in the main window.
"""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QSpinBox, QVBoxLayout, QWidget

from faceparse_app.loop_state import LoopState
from faceparse_app.widgets.model_versions import ModelVersions
from faceparse_app.widgets.train_form import TrainForm
from faceparse_app.widgets.train_progress import TrainProgress


class TrainPanel(QWidget):
    """Training form, live progress and plot, model versions, automatic retraining.

    Args:
        state: the loop state this panel shows and asks.

    Attributes:
        form: the settings and the start/cancel buttons.
        progress: the running job's progress and the last outcome.
        versions: the model versions and Activate / Roll back.
    """

    def __init__(self, state: LoopState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("train_panel")
        self.state = state
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.form = TrainForm(state)
        self.progress = TrainProgress(state)
        self.versions = ModelVersions(state)
        layout.addWidget(self.form)
        layout.addWidget(self.progress)
        layout.addWidget(self.versions)
        layout.addWidget(self._build_auto_retrain())
        self.form.cancel_button.clicked.connect(self._on_cancel_clicked)

    def _build_auto_retrain(self) -> QWidget:
        widget = QWidget()
        row = QHBoxLayout(widget)
        row.setContentsMargins(0, 0, 0, 0)
        self.auto_check = QCheckBox("Retrain every")
        self.auto_check.setChecked(self.state.retrain.enabled)
        self.auto_check.toggled.connect(lambda on: self.state.set_retrain(enabled=on))
        self.auto_spin = QSpinBox()
        self.auto_spin.setRange(1, 10000)
        self.auto_spin.setValue(self.state.retrain.every)
        self.auto_spin.setSuffix(" new labels")
        self.auto_spin.valueChanged.connect(lambda every: self.state.set_retrain(every=every))
        row.addWidget(self.auto_check)
        row.addWidget(self.auto_spin)
        row.addStretch(1)
        return widget

    def _on_cancel_clicked(self) -> None:
        self.form.cancel_button.setEnabled(False)
        self.progress.show_cancelling()
        self.state.cancel()
