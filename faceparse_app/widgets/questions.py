"""Questions the window asks before it closes (one answers itself when its reason goes)."""

from __future__ import annotations

from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QMessageBox, QWidget

STOP_TRAINING_QUESTIONS = {  # what the user is doing: (what it does to the run, the question)
    "quit": ("quitting", "Quit anyway?"),
    "close": ("closing the project", "Close it anyway?"),
    "open": ("opening another project", "Open it anyway?"),
}


def ask_stop_training(parent: QWidget, running_changed: SignalInstance, leaving: str = "quit") -> bool:
    """"Quit anyway?" (or close, or open another project: ``leaving``) while a training run is
    going. If the run ends while the question is up (``running_changed`` emits None), the
    question goes and the answer is yes: there is nothing left to stop, and the annotator asked
    to leave."""
    doing, question = STOP_TRAINING_QUESTIONS[leaving]
    yes = QMessageBox.StandardButton.Yes
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "Training is running",
        f"A training run is going; {doing} stops it and publishes nothing. {question}",
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
