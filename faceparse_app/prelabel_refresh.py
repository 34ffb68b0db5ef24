"""Refreshing stale pre-labels in the background after the active model changes (issue 4).

When a new parser is published, activated or rolled back to, every pre-label nobody edited
should follow it, not only the ones whose image gets opened. :class:`PrelabelRefresher` lists
those images, has the :class:`PrelabelQueue` predict them on its worker thread behind anything
the annotator asks for, and saves each result through
``AnnotationSession.refresh_prelabel``, which checks again at save time that nobody edited the
image meanwhile. A newer swap cancels the refresh in progress (the newer version wins); an
image that cannot be predicted is skipped and named in the closing message.
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QObject, Signal

from faceparse_app.prelabel_queue import PrelabelQueue
from faceparse_app.project import ImageRecord, ProjectError
from faceparse_app.session import AnnotationSession
from trainer.errors import FaceParseError

log = logging.getLogger(__name__)

SKIPPED_NAMED = 3  # skipped images named in the closing message; the rest are counted


class PrelabelRefresher(QObject):
    """Re-does the pre-labels nobody edited with the active model, off the GUI thread.

    Args:
        session: the open session (its project is written; its edits are respected).
        queue: the pre-label queue, already set to the new model.

    Signals:
        progress(done, total, version): refreshes handled so far (saved, left alone or skipped)
            out of those queued, for the model version.
        message(text, level): the closing summary ("Refreshed 12 pre-labels with v0003.").
    """

    progress = Signal(int, int, str)
    message = Signal(str, str)

    def __init__(
        self, session: AnnotationSession, queue: PrelabelQueue, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.queue = queue
        self.version: str | None = None
        self.total = 0
        self.saved = 0
        self.skipped: list[str] = []
        self._pending: dict[int, str] = {}  # image id -> relpath, still to be predicted
        queue.refreshed.connect(self._on_refreshed)
        queue.refresh_failed.connect(self._on_refresh_failed)
        queue.failed.connect(self._on_failed)

    @property
    def pending(self) -> int:
        """Images still waiting for their refreshed pre-label."""
        return len(self._pending)

    def stale(self, version: str) -> list[ImageRecord]:
        """The images whose pre-label `version` should re-do: pre-labeled by another version,
        present, not edited in this session, and not the one on screen (refreshed as shown)."""
        session = self.session
        current = session.current.id if session.current is not None else None
        return [
            rec
            for rec in session.project.images(status="pre-labeled", include_missing=False)
            if rec.model_version != version and rec.id != current and not session.edited_here(rec.id)
        ]

    def start(self, version: str | None) -> int:
        """Cancel any refresh in progress, then queue one for `version`; returns how many.

        Call after ``PrelabelQueue.set_model`` (None: no model, so nothing to refresh).
        """
        self.cancel()
        if version is None or not self.queue.has_model:
            return 0
        records = self.stale(version)
        if not records:
            return 0
        project = self.session.project
        self.version, self.total = version, len(records)
        self._pending = {rec.id: rec.relpath for rec in records}
        self.queue.refresh([(rec.id, project.image_path(rec)) for rec in records])
        return len(records)

    def cancel(self) -> None:
        """Drop the refreshes not yet done (results still on their way are ignored)."""
        if self._pending:
            self.queue.cancel_refresh()
        self._pending = {}
        self.version, self.total, self.saved, self.skipped = None, 0, 0, []

    # ------------------------------------------------------------------ results (GUI thread)
    def _on_refreshed(self, image_id: int, label: np.ndarray, version: str) -> None:
        if version != self.version or image_id not in self._pending:
            return  # from an earlier swap, or not ours
        relpath = self._pending.pop(image_id)
        try:
            # False: opened and edited (or accepted) meanwhile; the annotator's work stays.
            if self.session.refresh_prelabel(image_id, label, version):
                self.saved += 1
        except (FaceParseError, ProjectError, OSError) as exc:
            self._skip(relpath, str(exc))
        self._advance()

    def _on_refresh_failed(self, image_id: int, text: str) -> None:
        if image_id in self._pending:
            self._skip(self._pending.pop(image_id), text)
            self._advance()

    def _on_failed(self, image_id: int, _text: str) -> None:
        if image_id < 0 and self._pending:
            # The model itself did not load (the loop says so): nothing more will come.
            self.cancel()

    def _skip(self, relpath: str, text: str) -> None:
        log.warning("pre-label of %s not refreshed: %s", relpath, text)
        self.skipped.append(f"{relpath} ({text})")

    def _advance(self) -> None:
        version = self.version or ""
        self.progress.emit(self.total - len(self._pending), self.total, version)
        if self._pending:
            return
        text = f"Refreshed {self.saved} pre-label{'s' if self.saved != 1 else ''} with {version}."
        if self.skipped:
            named = "; ".join(self.skipped[:SKIPPED_NAMED])
            more = len(self.skipped) - SKIPPED_NAMED
            text += f" Skipped {len(self.skipped)} that could not be predicted: {named}"
            text += f" and {more} more." if more > 0 else "."
        if self.saved or self.skipped:
            self.message.emit(text, "warning" if self.skipped else "info")
        self.cancel()  # done: reset the counts
