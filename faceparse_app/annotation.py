"""The annotation rules, Qt-free: which image is open, its LabelDocument, saving, active time.

:class:`Annotation` holds one open project and the image being labeled and decides what may be
written (events: psygnal signals). The app uses it through the Qt adapter
``faceparse_app.session.AnnotationSession`` (Qt signals, the autosave timer), which widgets observe.

Pre-labels (`faceparse_app.model_loop`) come through `apply_prelabel`, only to an unedited image.

Never losing work:
    - the current label is saved (atomically) on image switch, every few seconds while edited
      (the session's timer), and on close; a save that fails (disk full, read-only) keeps the
      edits in memory, says so, and is retried; the label file on disk is left as it was;
    - a label file that cannot be read (wrong size, values > 10) is never overwritten unless
      the annotator edits the image, and then it is first kept aside as `<name>.invalid`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

import numpy as np
from psygnal import Signal

from faceparse_app.document import LabelDocument
from faceparse_app.history import HistoryShelf
from faceparse_app.label_writer import (
    LabelWriter,
    autosave_in_background,
    keep_invalid_aside,
    note_not_saved,
    note_saved,
)
from faceparse_app.prelabel_start import PrelabelStarts
from faceparse_app.project import FINISHED, ImageRecord, Project, ProjectError
from faceparse_app.scan_texts import all_done_text, without_path
from faceparse_app.store_watch import StoreWatch, label_file_gone
from trainer.errors import FaceParseError, ImageReadError, LabelMapError
from trainer.labels import LAPA, LabelSet

log = logging.getLogger(__name__)

IDLE_SECONDS = 30.0  # a pause longer than this between two inputs is idle: none of it counts


class Annotation:
    """One open project and the image being labeled.

    Args:
        project: the open project (closed by :meth:`close`).
        label_set: the class table.

    Events (psygnal signals):
        image_changed(record_or_None): a new image (and document) is current.
        records_changed(): statuses or problems changed; refresh lists and counts.
        message(text, level): something the user should know ("info", "warning", "error").
        saved(image_id): a label was written.
        status_changed(image_id, old, new): the annotator changed an image's status.
        prelabeled(image_id, version): a model's pre-label was applied to the current image.
    """

    image_changed = Signal(object)
    records_changed = Signal()
    message = Signal(str, str)
    saved = Signal(int)
    status_changed = Signal(int, str, str)
    prelabeled = Signal(int, str)

    def __init__(self, project: Project, label_set: LabelSet = LAPA) -> None:
        self.project = project
        self.label_set = label_set
        self.current: ImageRecord | None = None
        self.image: np.ndarray | None = None
        self.document: LabelDocument | None = None
        self.problems: dict[int, str] = {}
        self.protected: frozenset[int] = frozenset()
        self._histories = HistoryShelf()
        self._unsaved: dict[int, LabelDocument] = {}  # edits whose save failed, kept in memory
        self._save_error = ""  # why the last failed save failed
        self._invalid_label: set[int] = set()  # ids whose label file on disk is unreadable
        self._touched: set[int] = set()  # ids edited by hand in this session (no pre-label over them)
        self._pending_seconds, self._pending_actions = 0.0, 0
        self._last_activity: float | None = None
        self.writer: LabelWriter | None = None  # autosaves off this thread (the session's)
        self.watch = StoreWatch(project)  # the store's files, changed by another program
        self.starts = PrelabelStarts()  # the pre-label each photo started from

    # ------------------------------------------------------------------ listing
    def records(self) -> list[ImageRecord]:
        return self.project.images()

    def counts(self) -> dict[str, int]:
        return self.project.counts()

    # ------------------------------------------------------------------ opening
    def open_image(self, image_id: int) -> bool:
        """Save the current image, then make `image_id` current.

        Returns:
            True when the image and its label are shown; False when it could not be read
            (the reason goes to `message` and `problems`; the image is current but empty).
        """
        if self.current is not None and self.current.id == image_id and self.document is not None:
            return True
        self._end_stroke()
        self.watch.check(self)
        self.save()
        self.image, self.document = None, None
        rec = self.watch.photo_opened(self, image_id)
        self.current = rec
        try:
            self.watch.refuse_unscanned(rec)  # its name holds another picture, not rescanned
            image = self.project.load_image(rec)
            rec = self.project.get(rec.id)  # load_image may have corrected the size
            self.current = rec
            document = self._unsaved.get(rec.id) or self._document_for(rec, image)
        except ImageReadError as exc:
            reason = without_path(str(exc), self.project.image_path(rec))
            return self._fail(rec, f"Cannot open {rec.shown_name}: {reason}")
        except (MemoryError, FaceParseError) as exc:
            # Too big for this machine, or a store error: say so; the canvas takes no strokes.
            reason = "not enough memory" if isinstance(exc, MemoryError) else str(exc)
            return self._fail(rec, f"Cannot open {rec.shown_name}: {reason}")
        except Exception as exc:  # a decoder's own error: the same, never a stale canvas
            log.exception("cannot open %s", rec.relpath)
            return self._fail(rec, f"Cannot open {rec.shown_name}: {type(exc).__name__}: {exc}")
        self.image, self.document = image, document
        document.protected = set(self.protected)
        self._last_activity = time.monotonic()
        self._pending_seconds = 0.0
        self._pending_actions = 0
        self.image_changed.emit(rec)
        self.watch.tell_replaced(self, rec)
        return True

    def _document_for(self, rec: ImageRecord, image: np.ndarray) -> LabelDocument | None:
        history = self._histories.for_image(rec.id, image.shape[:2])
        label: np.ndarray | None
        try:
            label = self.project.load_label(rec)
            if label is None and rec.label_source is not None:
                label_file_gone(self, rec)  # the store recorded one: deleted by another program
            elif label is not None and rec.label_source == "model":
                self.starts.note(rec.id, label, rec.model_version)
            self._invalid_label.discard(rec.id)
            if rec.id in self.problems:
                del self.problems[rec.id]
                self.records_changed.emit()
        except LabelMapError as exc:
            self._invalid_label.add(rec.id)
            self._note_problem(
                rec,
                f"The label of {rec.relpath} is unusable ({exc}). Starting from an empty label; "
                "the file is kept as it is unless you edit this image (then it is kept aside "
                "as .invalid).",
                level="warning",
            )
            label = None
            history.clear()  # old steps belong to a map that is not the one shown
        label = np.zeros(image.shape[:2], np.uint8) if label is None else label
        return LabelDocument(label, num_classes=self.label_set.num_classes, history=history)

    # ---------------------------------------------------------------- pre-labels
    def may_prelabel(self, image_id: int, version: str) -> bool:
        """Whether a pre-label of model `version` may replace the current image's label.

        Only an image nobody has edited: ``Project.may_prelabel`` allows it (status "new" or
        "pre-labeled", no label file but the store's own pre-label), not already this version's,
        not :meth:`edited_here`, no unsaved edits, no stroke in progress.
        """
        rec, doc = self.current, self.document
        if rec is None or doc is None or rec.id != image_id:
            return False
        if not self.may_replace(image_id):
            return False
        fresh = self.project.get(image_id)
        if fresh.status == "pre-labeled" and fresh.model_version == version:
            return False
        return self.project.may_prelabel(fresh)

    def apply_prelabel(self, image_id: int, label: np.ndarray, version: str) -> bool:
        """Show and save a model's prediction as the current image's label, if nobody edited it.

        The label is saved first (status "pre-labeled", the model version recorded), then
        shown as the image's starting state, where undo stops (only the model's steps go).

        Args:
            image_id: the image predicted; nothing happens unless it is the current one.
            label: (H, W) uint8 class indices at the image's size.
            version: the model version that predicted it.

        Returns:
            True when the pre-label replaced the label.
        """
        if not self.may_prelabel(image_id, version):
            return False
        rec, doc = self.current, self.document
        assert rec is not None and doc is not None
        label = np.asarray(label)
        if label.shape != doc.shape:
            self.message.emit(
                f"No pre-label for {rec.relpath}: the model's label map is "
                f"{label.shape[1]}×{label.shape[0]} but the image is {doc.shape[1]}×{doc.shape[0]}",
                "warning",
            )
            return False
        try:
            new = self.project.save_label(rec, label, model_version=version)
        except (ProjectError, LabelMapError) as exc:
            self.message.emit(f"The pre-label of {rec.relpath} was not saved: {exc}", "warning")
            return False
        doc.start_from(label)
        doc.mark_saved()
        self.starts.note(image_id, label, version)
        self.current = new
        self.records_changed.emit()
        self.prelabeled.emit(image_id, version)
        return True

    def edited_here(self, image_id: int) -> bool:
        """Whether the annotator has edited an image in this session, so no model may replace
        it: edited by hand (even if since saved or undone), edits whose save failed, or an
        unreadable label file waiting to be kept aside."""
        return image_id in self._touched or image_id in self._invalid_label or image_id in self._unsaved

    def may_replace(self, image_id: int) -> bool:
        """Whether this window lets a label made elsewhere (a model's, an import's) replace an
        image's: not :meth:`edited_here` and, on screen, no unsaved edit, no stroke in progress."""
        doc = self.document if self.current is not None and self.current.id == image_id else None
        return not self.edited_here(image_id) and not (doc is not None and (doc.dirty or doc.in_stroke))

    def labels_replaced(self, image_ids: Collection[int]) -> None:
        """An import wrote these labels: the undo steps and pre-label starts that led to the
        old ones go; the image on screen shows its new one unless edited here (:meth:`may_replace`)."""
        for image_id in image_ids:
            self._histories.drop(image_id)
            self.starts.forget(image_id)
        if (rec := self.current) is not None and rec.id in image_ids and self.may_replace(rec.id):
            self.image, self.document = None, None
            self.open_image(rec.id)

    def may_refresh(self, image_id: int, version: str) -> bool:
        """Whether model `version` may re-do the pre-label of an image not on screen.

        Only a stale pre-label nobody touched: status "pre-labeled" by another model version,
        the file present, not :meth:`edited_here`. The image on screen: :meth:`may_prelabel`.
        """
        if self.current is not None and self.current.id == image_id:
            return False
        if self.edited_here(image_id):
            return False
        try:
            fresh = self.project.get(image_id)
            return (
                fresh.status == "pre-labeled"
                and fresh.model_version != version
                and self.project.may_prelabel(fresh)
            )
        except (KeyError, ProjectError):
            return False  # gone from the project since the refresh was queued

    def refresh_prelabel(self, image_id: int, label: np.ndarray, version: str) -> bool:
        """Save a newer model's pre-label of an image nobody edited (after a model swap).

        Checked again at save time (the image may have been edited since the refresh was
        queued). The image on screen is handled as by :meth:`apply_prelabel`; for any other the
        label is saved and its kept undo history dropped (its steps led to the old pre-label).

        Args:
            image_id: the image predicted.
            label: (H, W) uint8 class indices at the image's size.
            version: the model version that predicted it.

        Returns:
            True when the new pre-label was saved; False when the image was edited or has
            changed status meanwhile (nothing written).

        Raises:
            LabelMapError: the label does not fit the image; nothing is written.
            ProjectError: the write failed; the previous label file is left as it was.
        """
        if self.current is not None and self.current.id == image_id:
            return self.apply_prelabel(image_id, label, version)
        if not self.may_refresh(image_id, version):
            return False
        rec = self.project.get(image_id)
        self.project.save_label(rec, label, status="pre-labeled", model_version=version)
        self._histories.drop(image_id)
        return True

    def _fail(self, rec: ImageRecord, text: str) -> bool:
        self.image, self.document = None, None
        self._note_problem(rec, text, level="error")
        self.image_changed.emit(rec)
        return False

    def _note_problem(self, rec: ImageRecord, text: str, level: str) -> None:
        self.problems[rec.id] = text
        self.message.emit(text, level)
        self.records_changed.emit()

    def _end_stroke(self) -> None:
        # A switch or close in the middle of a drag keeps what was painted, as one step.
        if self.document is not None and self.document.in_stroke:
            if self.document.end_stroke() is not None:
                self.note_edit()

    # --------------------------------------------------------------- navigation
    def next_unfinished(self) -> bool:
        """Open the next image not yet labeled (wrapping around); False when all are done."""
        after = self.current.id if self.current is not None else None
        unreadable = self.problems.keys() - self._invalid_label  # not offered again until clicked
        rec = self.project.next_unfinished(after, skip=unreadable)
        if rec is None:
            self.message.emit(all_done_text(self.project.root, self.counts(), len(unreadable)), "info")
            return False
        if self.current is not None and rec.id == self.current.id:
            self.message.emit("This is the last unfinished image.", "info")
            return True
        return self.open_image(rec.id)

    def step(self, offset: int, ids: list[int] | None = None) -> bool:
        """Open the image `offset` rows away in `ids` (default: all images, by path)."""
        ids = ids if ids is not None else [r.id for r in self.records() if not r.missing]
        if not ids:
            return False
        if self.current is None or self.current.id not in ids:
            return self.open_image(ids[0])
        i = ids.index(self.current.id)
        return self.open_image(ids[max(0, min(len(ids) - 1, i + offset))])

    # ------------------------------------------------------------------ editing
    def note_edit(self, now: float | None = None) -> None:
        """An undo step was made: one action, active time, and the image's status kept current.

        Args:
            now: ``time.monotonic()`` of the edit (default: now).
        """
        if self.current is not None:
            self._touched.add(self.current.id)
        self._pending_actions += 1
        self.note_activity(now)

    def note_activity(self, now: float | None = None) -> None:
        """The annotator did something on the open image (a click, a key, a drag, an edit).

        Active time is the sum of the gaps between such inputs; a gap longer than IDLE_SECONDS
        is a pause (coffee, a colleague, another window) and counts nothing, not even its first
        30 seconds.

        Args:
            now: ``time.monotonic()`` of the input (default: now).
        """
        now = time.monotonic() if now is None else float(now)
        if self.document is None:
            return
        if self._last_activity is not None:
            gap = now - self._last_activity
            if 0.0 < gap <= IDLE_SECONDS:
                self._pending_seconds += gap
        self._last_activity = now

    def undo(self) -> bool:
        if self.document is None:
            return False
        # Counted before the step: undoing a face change may put the photo's status back, which
        # saves at once (an action counted after it would never be saved).
        if self.document.history.can_undo:
            self.note_edit()
        changed = self.document.undo() is not None
        if not changed and (rec := self.current) is not None and not self.document.history.can_undo:
            start = ", the model's pre-label your work starts from" if rec.model_version else ""
            self.message.emit(f"Nothing more to undo: {rec.relpath} is as it opened{start}.", "info")
        return changed

    def redo(self) -> bool:
        if self.document is None:
            return False
        if self.document.history.can_redo:  # before the step, as undo
            self.note_edit()
        return self.document.redo() is not None

    def set_protected(self, classes: frozenset[int] | set[int]) -> None:
        self.protected = frozenset(classes)
        if self.document is not None:
            self.document.protected = set(self.protected)

    def set_status(self, status: str) -> bool:
        """Save the current label (unedited, as written: an accepted pre-label stays the model's)
        and set the current image's status."""
        if self.current is None or self.document is None:
            return False
        if self.project.read_only:
            self.message.emit(f"{self.project.root.name} is read-only: statuses cannot change.", "warning")
            return False
        old, rec = self.current.status, self.current
        untouched = rec.id not in self._invalid_label and self.project.label_path(rec).exists()
        if not self.save(force=not untouched):
            return False
        try:
            seconds, self._pending_seconds = self._pending_seconds, 0.0  # looking it over is work too
            self.current = self.project.set_status(self.current, status, add_seconds=seconds)
        except ProjectError as exc:
            self.message.emit(str(exc), "error")
            return False
        self.records_changed.emit()
        if old != status:
            self.status_changed.emit(self.current.id, old, status)
        return True

    def accept(self) -> bool:
        """Mark the current image labeled as it is (e.g. a pre-label that needs no edit)."""
        if self.current is not None and self.current.status in FINISHED:
            self.message.emit(f"{self.current.relpath} is already {self.current.status}.", "info")
            return True
        return self.set_status("labeled")

    # ------------------------------------------------------------------- saving
    def autosave(self) -> None:
        """Save the current image if edited, and retry earlier failed saves (call it every few
        seconds: the session's timer does); notice store files another program changed."""
        self.watch.check(self)
        for image_id, doc in list(self._unsaved.items()):
            if doc is not self.document:
                self._save_document(self.project.get(image_id), doc)
        if self.document is not None and self.document.dirty:
            if self.writer is None or not autosave_in_background(self, self.writer):
                self.save()
        self.project.backup()  # a rolling copy of the store, at most every ten minutes

    def save(self, force: bool = False) -> bool:
        """Save the current label if it has unsaved edits (or always, with `force`).

        Returns:
            True when nothing needed saving or the save succeeded.
        """
        if self.writer is not None:
            self.writer.settle()  # a background autosave lands first, never after this one
        if self.current is None or self.document is None:
            return True
        if not (self.document.dirty or force):
            return True
        return self._save_document(self.current, self.document)

    def _save_document(self, rec: ImageRecord, doc: LabelDocument) -> bool:
        if doc.in_stroke:  # never save half a stroke; the timer comes back
            return False
        seconds, actions = 0.0, 0
        if self.current is not None and rec.id == self.current.id:
            seconds, self._pending_seconds = self._pending_seconds, 0.0
            actions, self._pending_actions = self._pending_actions, 0
        try:
            if rec.id in self._invalid_label:
                keep_invalid_aside(self, rec)
            # The project moves "new" and "pre-labeled" to "in_progress" and keeps the rest.
            undone_to = self.starts.undone_to(rec.id, doc)
            new = self.project.save_label(
                rec, doc.label, add_seconds=seconds, add_actions=actions, undone_to=undone_to
            )
        except (ProjectError, LabelMapError, OSError) as exc:
            if self.current is not None and rec.id == self.current.id:
                self._pending_seconds += seconds
                self._pending_actions += actions
            note_not_saved(self, rec.id, doc, exc)
            return False
        doc.mark_saved()
        note_saved(self, rec, doc)
        if self.current is not None and rec.id == self.current.id:
            self.current = new
        status_changed = new.status != rec.status
        self.saved.emit(rec.id)
        if status_changed:
            self.records_changed.emit()
        return True

    # -------------------------------------------------------------------- close
    def save_all(self) -> bool:
        """Save the current image and retry every earlier failed save; True if all are on disk."""
        self._end_stroke()
        self.watch.check(self)
        ok = self.save()
        for image_id, doc in list(self._unsaved.items()):
            if doc is not self.document:
                ok = self._save_document(self.project.get(image_id), doc) and ok
        return ok and not self._unsaved

    def unsaved(self) -> tuple[list[str], str]:
        """(the photos whose edits could not be saved, the last save error's text)."""
        return [self.project.get(i).relpath for i in self._unsaved], self._save_error

    def close(self) -> bool:
        """Save everything and close the project; False when some edits could not be saved."""
        ok = self.save_all()
        if self.writer is not None:
            self.writer.close()
        self.image, self.document = None, None
        self.current = None
        self.project.close()
        return ok
