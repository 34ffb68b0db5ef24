"""The annotation session: the Qt face of the Qt-free :class:`Annotation`.

The rules (what may be written, when a pre-label may replace a label, never losing work) live in
:mod:`faceparse_app.annotation`; this adapter only re-emits its events as Qt signals, so widgets
and controllers connect to them as to any Qt signal, and runs the autosave timer. Everything
else (``project``, ``current``, ``document``, ``open_image``, ``apply_prelabel``, ...) is the
annotation's own, reached through the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from faceparse_app.annotation import Annotation
from faceparse_app.label_writer import LabelWriter
from faceparse_app.project import Project
from faceparse_app.project_scan import FINISHED
from faceparse_app.workers import Relay
from trainer.errors import FaceParseError
from trainer.labels import LAPA, LabelSet

# Inputs that show the annotator at work (a move counts only while a button is held: a drag).
# A key that is a shortcut (A, N, B, Ctrl+Return, ...) never arrives as a KeyPress: Qt offers it
# as a ShortcutOverride first, then fires the action instead.
INPUTS = {
    QEvent.Type.MouseButtonPress,
    QEvent.Type.MouseButtonDblClick,
    QEvent.Type.KeyPress,
    QEvent.Type.ShortcutOverride,
    QEvent.Type.Wheel,
}

EVENTS = ("image_changed", "records_changed", "message", "saved", "status_changed", "prelabeled")


def _forward(name: str) -> property:
    """A read-only attribute (or bound method) of the session's annotation."""
    return property(lambda self: getattr(self.annotation, name), doc=f"``Annotation.{name}``")


class AnnotationSession(QObject):
    """One open project and the image being labeled, for the GUI thread.

    Args:
        project: the open project (the session closes it in `close`).
        autosave_ms: save this often while there are unsaved edits.
        label_set: the class table.

    Signals: those of :class:`Annotation`, emitted in the GUI thread:
        image_changed(record_or_None), records_changed(), message(text, level),
        saved(image_id), status_changed(image_id, old, new), prelabeled(image_id, version).

    Attributes:
        annotation: the rules and state this session shows.
        autosave_timer: calls ``annotation.autosave`` every ``autosave_ms``.
    """

    image_changed = Signal(object)
    records_changed = Signal()
    message = Signal(str, str)
    saved = Signal(int)
    status_changed = Signal(int, str, str)
    prelabeled = Signal(int, str)
    closing = Signal()  # close() begins: background readers of the project stop
    labels_imported = Signal(list)  # image ids whose labels an import wrote (no "saved" each)

    def __init__(
        self,
        project: Project,
        autosave_ms: int = 3000,
        label_set: LabelSet = LAPA,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.annotation = Annotation(project, label_set)
        for name in EVENTS:
            getattr(self.annotation, name).connect(self._relay(name))
        # Autosaves are written on a background thread; their results come back here.
        self._writes = Relay(lambda _kind, _payload: self.annotation.writer.drain(), self)
        self.annotation.writer = LabelWriter(lambda: self._writes.post("drain"))
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(int(autosave_ms))
        self.autosave_timer.timeout.connect(self.annotation.autosave)
        self.autosave_timer.start()
        # Active time is measured from the annotator's inputs (annotation.note_activity).
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind in INPUTS or (kind == QEvent.Type.MouseMove and event.buttons()):  # type: ignore[attr-defined]
            self.annotation.note_activity()
        return False

    def _relay(self, name: str) -> Any:
        signal = getattr(self, name)
        return lambda *args: signal.emit(*args)

    def close(self) -> bool:
        """Stop autosaving, save everything and close the project; False when some edits could
        not be saved."""
        self.closing.emit()
        self.autosave_timer.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        return self.annotation.close()

    def undo(self) -> bool:
        """Undo the open image's last step. A pre-label is the image's starting state (undo
        stops there); one that came after the first strokes is a step, and undoing it on a
        finished image may leave no face part: it goes back to in progress then, so a face of
        nothing but background is never exported or trained on."""
        annotation = self.annotation
        if not annotation.undo():
            return False
        doc, rec = annotation.document, annotation.current
        undone = doc.history.redo_steps[-1] if doc is not None and doc.history.redo_steps else None
        if undone is not None and not undone.by_hand and rec.status in FINISHED and not doc.label.any():
            if annotation.set_status("in_progress"):
                self.message.emit(
                    f"The pre-label of {rec.relpath} was undone (Ctrl+Y brings it back): with no "
                    "face part left, it is in progress again.",
                    "warning",
                )
        return True

    def resume(self, relpath: str | None) -> bool:
        """Open the photo the annotator was on when the project was last closed (``relpath``);
        when it is gone, or None, the next unfinished photo (the first, when all are done). A
        photo renamed since (the open's scan followed it) is found under its new name."""
        rec = self.project.find(self.project.moved.get(relpath, relpath)) if relpath else None
        if rec is not None and not rec.missing and self.open_image(rec.id):
            return True
        return self.next_unfinished() or self.current is not None or self.step(0)

    def labels_replaced(self, image_ids: list[int]) -> None:
        """``Annotation.labels_replaced`` (an import's labels), then the label checks look at
        them (``labels_imported``) and the lists refresh."""
        self.annotation.labels_replaced(image_ids)
        self.labels_imported.emit(list(image_ids))
        self.records_changed.emit()

    def export_lapa(self, out_dir: str | Path, reviewed_only: bool = False) -> dict[str, int] | None:
        """Save, then export the labeled images as a LaPa folder (counts per split, or None:
        the message says why)."""
        from faceparse_app.export import export_message, export_project

        self.annotation.save()
        try:
            counts = export_project(self.project, Path(out_dir), reviewed_only=reviewed_only)
        except (FaceParseError, OSError) as exc:
            self.message.emit(f"Export failed: {exc}", "error")
            return None
        self.message.emit(export_message(out_dir, counts, self.counts(), reviewed_only), "info")
        return counts

    # The annotation's state and rules (see Annotation for each).
    project = _forward("project")
    label_set = _forward("label_set")
    current = _forward("current")
    image = _forward("image")
    document = _forward("document")
    problems = _forward("problems")
    protected = _forward("protected")
    records = _forward("records")
    counts = _forward("counts")
    open_image = _forward("open_image")
    next_unfinished = _forward("next_unfinished")
    step = _forward("step")
    may_prelabel = _forward("may_prelabel")
    apply_prelabel = _forward("apply_prelabel")
    edited_here = _forward("edited_here")
    may_refresh = _forward("may_refresh")
    refresh_prelabel = _forward("refresh_prelabel")
    note_edit = _forward("note_edit")
    note_activity = _forward("note_activity")
    redo = _forward("redo")
    set_protected = _forward("set_protected")
    set_status = _forward("set_status")
    accept = _forward("accept")
    autosave = _forward("autosave")
    save = _forward("save")
    save_all = _forward("save_all")
    unsaved = _forward("unsaved")
