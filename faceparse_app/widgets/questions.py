"""Questions the window asks before it closes (one answers itself when its reason goes)."""

from __future__ import annotations

from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QMessageBox, QWidget


def ask_stop_training(parent: QWidget, running_changed: SignalInstance) -> bool:
    """"Quit anyway?" while a training run is going. If the run ends while the question is up
    (``running_changed`` emits None), the question goes and the answer is yes: there is nothing
    left to stop, and the annotator asked to quit."""
    yes = QMessageBox.StandardButton.Yes
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "Training is running",
        "A training run is going; quitting stops it and publishes nothing. Quit anyway?",
        yes | QMessageBox.StandardButton.No,
        parent,
    )

    def ended(kind: object) -> None:
        if kind is None:
            box.done(yes)

    running_changed.connect(ended)
    try:
        return box.exec() == yes
    finally:
        running_changed.disconnect(ended)


def ask_discard(parent: QWidget) -> bool:
    """Whether to close and give up labels that could not be saved."""
    answer = QMessageBox.question(
        parent,
        "Unsaved labels",
        "Some labels could not be saved (see the message). Close anyway and lose them?",
    )
    return answer == QMessageBox.StandardButton.Yes
