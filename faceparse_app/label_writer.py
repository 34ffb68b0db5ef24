"""Autosaves written on a background thread (Qt-free).

Encoding and writing a 4000×4000 label takes 60-170 ms; the autosave timer fires every few
seconds while the annotator edits, so on the GUI thread it was a hitch every few seconds. The
autosave hands a copy of the label to this writer and returns; the result comes back through
``wake`` (the session posts it to the GUI thread) and is applied there by :meth:`drain`.

Every other save (switching images, a status change, closing) stays synchronous and first calls
:meth:`settle`: it waits for the write in flight and applies its result, so writes to one file
never overtake each other and the caller sees the state on disk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from faceparse_app.project_moves import invalid_aside

if TYPE_CHECKING:
    from faceparse_app.annotation import Annotation
    from faceparse_app.document import LabelDocument
    from faceparse_app.store_rows import ImageRecord


class LabelWriter:
    """One writer thread; results applied in order on the owner's thread.

    Args:
        wake: called (from the writer thread) when a result is ready; it must arrange for
            :meth:`drain` to run on the owner's thread (the session posts it to the GUI thread).
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-writer")
        self._lock = threading.RLock()  # a write done at once runs its callback under submit's lock
        self._in_flight: tuple[Future, Callable[[Future], None]] | None = None
        self._done: list[tuple[Future, Callable[[Future], None]]] = []

    @property
    def busy(self) -> bool:
        """A write is in flight or its result has not been applied yet."""
        with self._lock:
            return self._in_flight is not None or bool(self._done)

    def submit(self, write: Callable[[], Any], apply: Callable[[Future], None]) -> None:
        """Run ``write()`` on the writer thread; ``apply(future)`` later on the owner's thread.
        One write at a time: call it only when not :attr:`busy`."""
        with self._lock:
            if self._in_flight is not None:
                raise RuntimeError("a label write is already in flight")
            future = self._pool.submit(write)
            self._in_flight = (future, apply)
            future.add_done_callback(self._finished)

    def _finished(self, future: Future) -> None:
        with self._lock:
            entry = self._in_flight
            if entry is None or entry[0] is not future:
                return  # settle() took it over already
            self._done.append(entry)
            self._in_flight = None
        self._wake()

    def drain(self) -> None:
        """Apply the results that are ready, in the order the writes were made."""
        while True:
            with self._lock:
                if not self._done:
                    return
                future, apply = self._done.pop(0)
            apply(future)

    def settle(self) -> None:
        """Wait for the write in flight, then apply every result (before a synchronous save)."""
        with self._lock:
            entry = self._in_flight
        if entry is not None:
            entry[0].exception()  # waits; an error is the apply's to report
            with self._lock:
                if self._in_flight is entry:
                    self._done.append(entry)
                    self._in_flight = None
        self.drain()

    def close(self) -> None:
        """Finish and apply every write, then stop the thread."""
        self.settle()
        self._pool.shutdown(wait=True)
        self.drain()


def autosave_in_background(annotation: Any, writer: LabelWriter) -> bool:
    """Autosave the annotation's current label on ``writer``'s thread.

    The label is copied and the document marked saved at once (an edit during the write makes
    it dirty again, for the next autosave); a failed write marks it dirty again, keeps it with
    the unsaved documents and says so, as a synchronous save does.

    Returns:
        False when this save must be synchronous (an unreadable label file to keep aside first).
    """
    from faceparse_app.project import ProjectError
    from trainer.errors import LabelMapError

    rec, doc = annotation.current, annotation.document
    if rec is None or doc is None or doc.in_stroke or writer.busy:
        writer.drain()
        return True  # the timer comes back
    if rec.id in annotation._invalid_label:
        return False
    seconds, annotation._pending_seconds = annotation._pending_seconds, 0.0
    actions, annotation._pending_actions = annotation._pending_actions, 0
    label, project = doc.label.copy(), annotation.project
    undone_to = annotation.starts.undone_to(rec.id, doc)  # every edit undone: the model's again
    doc.mark_saved()

    def write() -> Any:
        return project.save_label(
            rec, label, add_seconds=seconds, add_actions=actions, undone_to=undone_to
        )

    def apply(future: Future) -> None:
        current = annotation.current
        try:
            new = future.result()
        except (ProjectError, LabelMapError, OSError) as exc:
            if current is not None and current.id == rec.id:
                annotation._pending_seconds += seconds
                annotation._pending_actions += actions
            doc.dirty = True
            note_not_saved(annotation, rec.id, doc, exc)
            return
        if not doc.dirty:
            note_saved(annotation, rec, doc)
        if current is not None and current.id == rec.id:
            annotation.current = new
        annotation.saved.emit(rec.id)
        if new.status != rec.status:
            annotation.records_changed.emit()

    writer.submit(write, apply)
    return True


def note_not_saved(annotation: Annotation, image_id: int, doc: LabelDocument, exc: Exception) -> None:
    """A save failed: the edits stay in memory (retried by the autosave), and the user is told."""
    annotation._unsaved[image_id] = doc
    annotation._save_error = str(exc)
    annotation.message.emit(f"Not saved: {exc} Your edits are kept in memory and saving is retried.", "error")


def note_saved(annotation: Annotation, rec: ImageRecord, doc: LabelDocument) -> None:
    """``doc`` is on disk: if its save had failed before, the "Not saved" said then is over."""
    if annotation._unsaved.get(rec.id) is doc:
        del annotation._unsaved[rec.id]
        annotation.message.emit(f"Saved {rec.relpath}: the edits kept in memory are on disk now.", "info")


def keep_invalid_aside(annotation: Annotation, rec: ImageRecord) -> None:
    """Before the first save over an unusable label file: keep it as ``<name>.invalid``.

    Raises:
        OSError: it could not be moved (the save fails, keeps the edits in memory and is tried
            again: the file is never written over)."""
    path = annotation.project.label_path(rec)
    aside = invalid_aside(path)
    try:  # not path.exists(): a file that cannot be looked at is there all the same
        os.replace(path, aside)
    except FileNotFoundError:
        pass
    else:
        annotation.message.emit(f"The unusable label file was kept as {aside}.", "info")
    annotation._invalid_label.discard(rec.id)
    annotation.problems.pop(rec.id, None)
