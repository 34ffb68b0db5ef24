"""The rows of a project store: one per image (status, progress, what wrote its label, its
faces), read and written in short transactions. ``Project`` adds the folder, its files and its safety.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceparse_app.faces import boxes_from_text, faces_from_text, faces_to_text
from faceparse_app.project_moves import shown_name
from faceparse_app.project_scan import FINISHED
from faceparse_app.store_guard import DamagedStoreError, ProjectError
from faceparse_app.store_open import DB_NAME, STATUSES

if TYPE_CHECKING:
    from trainer.faces import Face

SCORES_KEY = "uncertainty_scores"  # the meta row keeping the last model's scores across opens


@dataclass(frozen=True)
class ImageRecord:
    """One image of the project as the store knows it.

    Attributes:
        id: stable row id (survives a move of the file).
        relpath: path relative to the project folder, '/'-separated.
        content_hash: sha256 hex digest of the file bytes.
        width: image width in pixels after EXIF orientation (0 when the header is unreadable).
        height: image height in pixels after EXIF orientation (0 when unreadable).
        status: one of STATUSES.
        active_seconds: seconds of active annotation so far (pauses over 30 s not counted).
        actions: edits made on the image so far (each stroke, fill, polygon, assisted edit,
            undo and redo is one).
        created_at: when the image was added (Unix seconds).
        updated_at: last change of the row (Unix seconds).
        model_version: the model that pre-labeled it, if any.
        missing: the file is gone from the folder (moved away or deleted).
        label_source: who wrote the label file last: "model", "hand", or None (no label).
        needs_review: the label was recovered from disk (lost store, outside edit): check it.
    """

    id: int
    relpath: str
    content_hash: str
    width: int
    height: int
    status: str
    active_seconds: float
    created_at: float
    updated_at: float
    model_version: str | None
    missing: bool
    label_source: str | None = None
    needs_review: bool = False
    actions: int = 0

    @property
    def shown_name(self) -> str:
        """Its name as shown and said: its own, also when a missing image gave that name up to
        another picture (``project_moves.aside_relpath``)."""
        return shown_name(self.relpath)


_COLUMNS = (
    "id, relpath, content_hash, width, height, status, active_seconds, created_at, updated_at, "
    "model_version, missing, label_source, needs_review, actions"
)


class StoreRows:
    """Access to the image rows of an open store; safe from several threads (one lock).

    Args:
        root: the project folder.
        store_dir: its ``.faceparse`` folder.
        conn: the open connection.
        read_only: every write raises ProjectError.
    """

    def __init__(
        self, root: Path, store_dir: Path, conn: sqlite3.Connection, read_only: bool = False
    ) -> None:
        self.root = root
        self.store_dir = store_dir
        self.read_only = read_only
        self._conn = conn
        self._lock = threading.RLock()
        self._writes_since_backup = 0

    def query(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        """Run a read query; a damaged store raises DamagedStoreError, never sqlite's own."""
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._db_error(exc) from None

    def images(self, status: str | None = None, include_missing: bool = True) -> list[ImageRecord]:
        """The images, sorted by relpath; only those of one status when ``status`` is given."""
        sql = f"SELECT {_COLUMNS} FROM images"
        clauses, args = [], []
        if status is not None:
            self._check_status(status)
            clauses.append("status=?")
            args.append(status)
        if not include_missing:
            clauses.append("missing=0")
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [_record(r) for r in self.query(sql + " ORDER BY relpath", args)]

    def get(self, image_id: int) -> ImageRecord:
        """The current record of an image id (KeyError when unknown)."""
        rows = self.query(f"SELECT {_COLUMNS} FROM images WHERE id=?", (int(image_id),))
        if not rows:
            raise KeyError(f"no image with id {image_id} in {self.root}")
        return _record(rows[0])

    def records_of(self, image_ids: Iterable[int]) -> list[ImageRecord]:
        """The current records of these image ids; ids no longer in the store are left out."""
        ids = [int(i) for i in image_ids]
        marks = ",".join("?" * len(ids))
        return [_record(r) for r in self.query(f"SELECT {_COLUMNS} FROM images WHERE id IN ({marks})", ids)]

    def find(self, relpath: str) -> ImageRecord | None:
        """The record of a relpath ('/'-separated), or None."""
        rows = self.query(f"SELECT {_COLUMNS} FROM images WHERE relpath=?", (relpath,))
        return _record(rows[0]) if rows else None

    def set_status(self, rec: ImageRecord, status: str, add_seconds: float = 0.0) -> ImageRecord:
        """Set an image's status (one of STATUSES), adding ``add_seconds`` of active time in the
        same write (see :meth:`add_active_seconds`); a finished one is no longer "needs review"."""
        self._check_status(status)
        finished = ", needs_review=0" if status in FINISHED else ""
        sets = "status=?, active_seconds=active_seconds+?" + finished
        return self._update(rec.id, sets, (status, _active(add_seconds)))

    def add_active_seconds(self, rec: ImageRecord, seconds: float) -> ImageRecord:
        """Add seconds of active annotation time (ignored when not a positive number)."""
        seconds = _active(seconds)
        if not seconds:
            return self.get(rec.id)
        return self._update(rec.id, "active_seconds=active_seconds+?", (seconds,))

    # ---- faces --------------------------------------------------------------------------

    def faces(self, rec: ImageRecord) -> list[Face] | None:
        """The faces kept for an image (found by the model's first prediction of it, then as the
        annotator added and removed them); None when they have not been looked for yet."""
        rows = self.query("SELECT faces FROM images WHERE id=?", (int(rec.id),))
        if not rows:
            raise KeyError(f"no image with id {rec.id} in {self.root}")
        return faces_from_text(rows[0][0])

    def face_boxes(self, rec: ImageRecord) -> list[tuple[float, float, float, float]] | None:
        """The boxes of :meth:`faces`, without loading torch (for the export)."""
        rows = self.query("SELECT faces FROM images WHERE id=?", (int(rec.id),))
        if not rows:
            raise KeyError(f"no image with id {rec.id} in {self.root}")
        return boxes_from_text(rows[0][0])

    def set_faces(self, rec: ImageRecord, faces: Sequence[Face] | None) -> ImageRecord:
        """Keep an image's faces ([] : looked for, none there; None: look again next time).

        Raises:
            ProjectError: the project is read-only, or the store could not be written.
        """
        text = None if faces is None else faces_to_text(faces)
        return self._update(rec.id, "faces=?", (text,))

    # ---- progress -----------------------------------------------------------------------

    def next_unfinished(
        self, after_id: int | None = None, skip: Collection[int] = ()
    ) -> ImageRecord | None:
        """The next image (by relpath, wrapping around) not yet labeled or reviewed.

        Missing images are skipped, and those in ``skip`` (the session's unreadable ones). When
        ``after_id`` is the only unfinished image, it is returned; None when every image is
        finished.
        """
        recs = self.images(include_missing=False)
        if not recs:
            return None
        start = next((i for i, r in enumerate(recs) if r.id == after_id), -1)
        n = len(recs)
        for k in range(1, n + 1):
            r = recs[(start + k) % n]
            if r.status not in FINISHED and r.id not in skip:
                return r
        return None

    def counts(self) -> dict[str, int]:
        """Images per status (present ones), plus "total" (present), "missing" and
        "needs_review" (present images whose recovered label awaits a look)."""
        out = {s: 0 for s in STATUSES}
        rows = self.query(
            "SELECT status, missing, COUNT(*), SUM(needs_review) FROM images "
            "GROUP BY status, missing"
        )
        missing = review = 0
        for status, is_missing, n, flagged in rows:
            if is_missing:
                missing += n
            else:
                out[status] = out.get(status, 0) + n
                review += int(flagged or 0)
        out["total"] = sum(out[s] for s in STATUSES)
        out["missing"] = missing
        out["needs_review"] = review
        return out

    # ---- uncertainty scores ---------------------------------------------------------------

    def kept_scores(self, version: str) -> dict[int, float]:
        """The uncertainty scores :meth:`keep_scores` kept for model ``version`` (image id ->
        score; NaN: no face), of images whose file is still the one scored."""
        rows = self.query("SELECT value FROM meta WHERE key=?", (SCORES_KEY,))
        try:
            kept = json.loads(rows[0][0]) if rows else {}
            if kept.get("version") != version:
                return {}
            scored = {int(i): (float(s), h) for i, (s, h) in kept["scores"].items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            return {}  # unreadable: they are computed again
        files = dict(self.query("SELECT id, content_hash FROM images WHERE missing=0"))
        return {i: s for i, (s, h) in scored.items() if files.get(i) == h}

    def keep_scores(self, version: str, scores: dict[int, float]) -> None:
        """Keep the model ``version``'s uncertainty scores for the next open (replacing any kept
        before), each with the hash of the file it scored."""
        files = dict(self.query("SELECT id, content_hash FROM images"))
        kept = {str(i): (s, files[i]) for i, s in scores.items() if i in files}
        text = json.dumps({"version": version, "scores": kept})
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (SCORES_KEY, text))

    # ---- internals ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; sqlite errors become ProjectError."""
        self._check_writable()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._db_error(exc) from None
            try:
                yield self._conn
            except sqlite3.Error as exc:
                self._rollback()
                raise self._db_error(exc) from None
            except BaseException:
                self._rollback()
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._db_error(exc) from None
            self._writes_since_backup += 1

    def _check_writable(self) -> None:
        if self.read_only:
            raise ProjectError(
                f"{self.root} is opened read-only (for reading while another FaceParse Studio "
                "may edit it); nothing was saved"
            )

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _db_error(self, exc: sqlite3.Error) -> ProjectError:
        db = self.store_dir / DB_NAME
        text = str(exc).lower()
        if "full" in text:
            return ProjectError(f"disk full: could not update {db}. Free some disk space.")
        if "readonly" in text or "read-only" in text:
            return ProjectError(f"{db} is read-only; progress cannot be saved")
        if isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text):
            return DamagedStoreError(
                f"{db} is damaged ({exc}). Your label files are safe: close the project and "
                "open it again to recover the store."
            )
        return ProjectError(f"{db}: database error ({exc})")

    def _update(self, image_id: int, sets: str, args: tuple) -> ImageRecord:
        with self.transaction() as c:
            cur = c.execute(
                f"UPDATE images SET {sets}, updated_at=? WHERE id=?", (*args, time.time(), image_id)
            )
            if cur.rowcount == 0:
                raise KeyError(f"no image with id {image_id} in {self.root}")
        return self.get(image_id)

    @staticmethod
    def _check_status(status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")


def _record(row: tuple) -> ImageRecord:
    return ImageRecord(
        id=int(row[0]),
        relpath=str(row[1]),
        content_hash=str(row[2]),
        width=int(row[3]),
        height=int(row[4]),
        status=str(row[5]),
        active_seconds=float(row[6]),
        created_at=float(row[7]),
        updated_at=float(row[8]),
        model_version=row[9],
        missing=bool(row[10]),
        label_source=row[11],
        needs_review=bool(row[12]),
        actions=int(row[13]),
    )


def _active(seconds: float) -> float:
    """Seconds of active time to add: 0.0 for anything but a positive finite number."""
    seconds = float(seconds)
    return seconds if np.isfinite(seconds) and seconds > 0 else 0.0
