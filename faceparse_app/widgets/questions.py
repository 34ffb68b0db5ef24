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


def ask_discard(parent: QWidget, names: list[str], reason: str) -> bool:
    """Whether to close and give up the labels of ``names`` that could not be saved (``reason``:
    the last save error). No is the default: Enter keeps the window, and the edits, open."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    no = QMessageBox.StandardButton.No
    box = QMessageBox(
        QMessageBox.Icon.Warning,
        "Unsaved labels",
        f"The edits of {shown or 'some photos'} could not be saved. Close anyway and lose them?",
        QMessageBox.StandardButton.Yes | no,
        parent,
    )
    box.setInformativeText(
        (f"{reason}\n\n" if reason else "")
        + "No keeps the window open with the edits: fix the cause (free disk space, make the "
        "folder writable), then close again; saving is retried every few seconds."
    )
    box.setDefaultButton(no)
    box.setEscapeButton(no)
    return box.exec() == QMessageBox.StandardButton.Yes
