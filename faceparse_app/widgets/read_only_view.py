"""A project opened to look only: its folder cannot be written (a read-only share or disk) but
its store exists, so the images and their labels can be browsed and exported elsewhere. Editing
is off (tools, classes, training, save, undo, statuses; the views of the labels stay), a badge and the title say so, and
nothing is written in the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QLabel

from faceparse_app.project import STORE_DIR, Project, ReadOnlyFolderError
from faceparse_app.store_guard import LookLock
from faceparse_app.store_open import DB_NAME, connect_read_only

if TYPE_CHECKING:
    from faceparse_app.annotation import AnnotationSession
    from faceparse_app.main_window import MainWindow
    from faceparse_app.store_rows import ImageRecord

__all__ = [
    "ReadOnlyFolderError",
    "ReadOnlyView",
    "editable_session",
    "open_read_only",
    "read_only_text",
    "window_title",
]

# The window's actions that write to the project (the status keys are refused by the session).
EDIT_ACTIONS = ("save_action", "undo_action", "redo_action", "accept_action", "rescan_action", "import_action")


def open_read_only(folder: str | Path, refused: ReadOnlyFolderError) -> Project:
    """Open the project of a folder that cannot be written, to look only (no lock, no scan,
    no writes); ``refused`` (why it could not be opened to edit) when it has no store (one
    cannot be made there, so there is nothing to look at)."""
    root = Path(folder).expanduser().absolute()
    if not (root / STORE_DIR / DB_NAME).is_file():
        raise refused
    # Read as immutable: nothing, not even SQLite's -shm file, is made in the folder; so no
    # writer may hold it meanwhile (ProjectLockedError when one does now).
    lock = LookLock(root / STORE_DIR)
    lock.acquire()
    try:
        conn = connect_read_only(root / STORE_DIR / DB_NAME, immutable=True)
    except BaseException:
        lock.release()
        raise
    return Project(root, conn, lock, read_only=True)


def read_only_text(project: Project) -> str:
    """The banner of a project opened to look only: why, what works, what to do to edit."""
    return (
        f"{project.root.name} is read-only, so it is open to look only: editing is off and "
        "nothing is written in the folder. File → Export copies its labels to a folder you "
        "choose; to edit, copy the folder somewhere you can write and open the copy."
    )


def editable_session(window: MainWindow, refused: str) -> AnnotationSession | None:
    """The window's session when its project may be written; None when no project is open, or
    when it is open to look only (the message bar says so, ending with ``refused``)."""
    session = window.session
    if session is not None and session.project.read_only:
        window.show_message(f"{session.project.root} is open to look only: {refused}.", "error")
        return None
    return session


def window_title(project: Project, rec: ImageRecord | None = None) -> str:
    """'image — folder (read-only) — FaceParse Studio'."""
    name = project.root.name + (" (read-only)" if project.read_only else "")
    return " — ".join([*([rec.relpath] if rec is not None else []), name, "FaceParse Studio"])


class ReadOnlyView:
    """Turns the window's editing off and on for the project opened, with a status bar badge."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.badge = QLabel("Read-only")
        self.badge.setObjectName("read_only_badge")
        self.badge.setStyleSheet("#read_only_badge { background: #fff3e0; color: #8a4b00; padding: 0 6px; }")
        window.statusBar().addPermanentWidget(self.badge)
        self.badge.hide()

    def show(self, project: Project | None) -> None:
        """Editing off for a read-only ``project`` (with the banner), on for any other; None:
        no project (the badge goes)."""
        window, on = self.window, project is not None and project.read_only
        window.canvas.read_only = on
        self.badge.setVisible(on)
        if project is None:
            return
        # The tools go; the views of the labels (show, outline, opacity, confidence, faces)
        # stay: checking labels is what a look is for.
        tools = window.tool_bar
        for widget in (tools.size_box, window.palette, window.train_panel):
            widget.setEnabled(not on)
        for action in [*tools.tool_actions.values(), *(getattr(window, n) for n in EDIT_ACTIONS)]:
            action.setEnabled(not on)
        if on:
            self.badge.setToolTip(read_only_text(project))
            window.show_message(read_only_text(project), "warning")
