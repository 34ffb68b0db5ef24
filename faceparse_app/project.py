"""The project store: a folder of face images, their label maps and their progress.

Layout inside the project folder::

    .faceparse/project.sqlite     one row per image + a meta table (schema_version)
    .faceparse/labels/<relpath>.png   'L' PNG label map of image <relpath> (e.g. a/b.jpg.png;
                                  the image's own extension is kept so a.jpg and a.png never
                                  share a label file)

Every label write is atomic (temp file + os.replace) and happens before the database row is
updated, so a crash leaves either the old label or the new one, never a half-written file.
A folder that cannot be written to is refused at open with a ProjectError that says so: the
app never lets an annotator work on labels it cannot save.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.data.folders import list_images
from trainer.data.imageio import check_label, read_image, read_label, write_label
from trainer.errors import FaceParseError
from trainer.labels import LAPA

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("new", "pre-labeled", "in_progress", "labeled", "reviewed")
FINISHED: frozenset[str] = frozenset({"labeled", "reviewed"})
NUM_CLASSES = LAPA.num_classes

STORE_DIR = ".faceparse"
DB_NAME = "project.sqlite"
LABELS_DIR = "labels"
SCHEMA_VERSION = 1

_READ_ONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class ProjectError(FaceParseError):
    """The project folder or its store cannot be opened, read or written."""


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
        active_seconds: seconds of active annotation so far.
        created_at: when the image was added (Unix seconds).
        updated_at: last change of the row (Unix seconds).
        model_version: the model that pre-labeled it, if any.
        missing: the file is gone from the folder (moved away or deleted).
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


@dataclass
class ScanReport:
    """What a scan of the folder found.

    Attributes:
        added: relpaths of images new to the project.
        missing: relpaths of known images whose file is gone (reported, never fatal).
        moved: (old, new) relpaths of images found again under a new path (same content hash);
            their label moved with them.
        unreadable: relpaths whose header could not be read (they still get a row; opening
            them gives an ImageReadError).
    """

    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


_COLUMNS = (
    "id, relpath, content_hash, width, height, status, active_seconds, created_at, updated_at, "
    "model_version, missing"
)

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    relpath TEXT NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    active_seconds REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    model_version TEXT,
    missing INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX images_hash ON images (content_hash);
"""

# Migration hook: MIGRATIONS[v] upgrades a store from schema v to v + 1, inside a transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


def file_hash(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _try_hash(path: Path) -> str | None:
    try:
        return file_hash(path)
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) after EXIF orientation, from the header only; None when unreadable."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # a broken EXIF block must not hide a readable image
                orientation = 1
    except Exception:  # any failure to parse a header (incl. decompression bombs) = unreadable
        return None
    # Orientations 5..8 rotate by 90 degrees: read_image returns the image transposed.
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _write_error(exc: OSError, path: Path, what: str) -> ProjectError:
    if exc.errno in _FULL_ERRNOS:
        return ProjectError(
            f"disk full: could not save {what} to {path}; the previous file is unchanged. "
            "Free some disk space and save again."
        )
    if exc.errno in _READ_ONLY_ERRNOS:
        return ProjectError(
            f"{path} is read-only: could not save {what}; the previous file is unchanged."
        )
    return ProjectError(f"could not save {what} to {path} ({exc}); the previous file is unchanged.")


class Project:
    """A folder of face images opened as a labeling project. Create with ``Project.open``.

    Safe to call from several threads (one lock around the database connection).
    """

    def __init__(self, root: Path, conn: sqlite3.Connection) -> None:
        self.root = root
        self.store_dir = root / STORE_DIR
        self.labels_dir = self.store_dir / LABELS_DIR
        self._conn = conn
        self._lock = threading.RLock()

    # ---- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: str | os.PathLike[str], scan: bool = True) -> Project:
        """Open (or create) the project of a folder, and scan it for new, moved, missing images.

        Raises:
            ProjectError: the folder is missing or read-only, or its store is damaged or was
                written by a newer version of the app.
        """
        root = Path(folder).expanduser().absolute()
        if not root.exists():
            raise ProjectError(f"{root}: folder not found")
        if not root.is_dir():
            raise ProjectError(f"{root}: not a folder")
        store = root / STORE_DIR
        try:
            (store / LABELS_DIR).mkdir(parents=True, exist_ok=True)
            _probe_write(store)
        except OSError as exc:
            if exc.errno in _READ_ONLY_ERRNOS:
                raise ProjectError(
                    f"{root} is read-only; labels cannot be saved there. Copy the folder to a "
                    "place you can write to (or fix its permissions) and open it again."
                ) from None
            if exc.errno in _FULL_ERRNOS:
                raise ProjectError(
                    f"disk full: cannot create the project store in {store}"
                ) from None
            raise ProjectError(f"{store}: cannot create the project store ({exc})") from None
        db_path = store / DB_NAME
        try:
            conn = sqlite3.connect(
                db_path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ProjectError(f"{db_path}: cannot open the project store ({exc})") from None
        project = cls(root, conn)
        try:
            project._init_store(db_path)
            if scan:
                project.scan()
        except BaseException:
            conn.close()
            raise
        return project

    def _init_store(self, db_path: Path) -> None:
        conn = self._conn
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives an app crash or kill (what autosave must survive) cheaply.
            conn.execute("PRAGMA synchronous=NORMAL")
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise ProjectError(
                f"{db_path}: not a FaceParse project store, or damaged ({exc}). Move it aside "
                "to start a fresh store."
            ) from None
        if not has_meta:
            with self._tx() as c:
                for statement in _SCHEMA.strip().split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                c.execute("INSERT INTO meta VALUES ('created_at', ?)", (repr(time.time()),))
            return
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            version = int(row[0]) if row else 0
        except ValueError:
            version = -1
        if version > SCHEMA_VERSION:
            raise ProjectError(
                f"{db_path} was written by a newer FaceParse Studio (schema version {version}; "
                f"this version reads up to {SCHEMA_VERSION}). Update FaceParse Studio to open it."
            )
        if version < 1:
            raise ProjectError(f"{db_path}: unknown project store schema version {row!r}")
        while version < SCHEMA_VERSION:
            migrate = MIGRATIONS.get(version)
            if migrate is None:
                raise ProjectError(f"{db_path}: no migration from schema version {version}")
            with self._tx() as c:
                migrate(c)
                c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version + 1),))
            version += 1

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- scanning -----------------------------------------------------------------------

    def scan(self) -> ScanReport:
        """Bring the store in line with the folder.

        New images are added as "new"; a known image whose file is gone is flagged missing; a
        new file with the content hash of a missing one is the same image moved, so its row
        (status, time, label) follows it. Changed files are re-hashed (size or mtime differ).
        """
        report = ScanReport()
        on_disk: dict[str, Path] = {}
        for path in list_images(self.root):
            on_disk[path.relative_to(self.root).as_posix()] = path
        with self._lock:
            rows = {
                r[0]: r
                for r in self._conn.execute(
                    "SELECT relpath, id, content_hash, size_bytes, mtime_ns, missing, status FROM images"
                )
            }
        now = time.time()
        updates: list[tuple[str, tuple]] = []
        # Hashing happens outside any transaction: transactions stay short.
        gone_by_hash: dict[str, list[tuple]] = {}
        stats: dict[str, os.stat_result] = {}
        for relpath in list(on_disk):
            try:
                stats[relpath] = on_disk[relpath].stat()
            except OSError as exc:  # vanished or unreadable since the listing: not fatal
                log.warning("skipping %s: %s", relpath, exc)
                del on_disk[relpath]
        for relpath, row in rows.items():
            if relpath not in on_disk:
                gone_by_hash.setdefault(row[2], []).append(row)
                continue
            stat = stats[relpath]
            if row[5]:
                updates.append(
                    ("UPDATE images SET missing=0, updated_at=? WHERE id=?", (now, row[1]))
                )
            if (stat.st_size, stat.st_mtime_ns) != (row[3], row[4]):
                digest = _try_hash(on_disk[relpath])
                if digest is None:
                    report.unreadable.append(relpath)
                    continue
                size = image_size(on_disk[relpath]) or (0, 0)
                status = row[6]
                if digest != row[2] and status in FINISHED:
                    # The picture changed under its label: have it checked again.
                    log.warning("%s changed since it was labeled; marking it in progress", relpath)
                    status = "in_progress"
                updates.append(
                    (
                        "UPDATE images SET content_hash=?, size_bytes=?, mtime_ns=?, width=?, "
                        "height=?, status=?, updated_at=? WHERE id=?",
                        (
                            digest,
                            stat.st_size,
                            stat.st_mtime_ns,
                            size[0],
                            size[1],
                            status,
                            now,
                            row[1],
                        ),
                    )
                )
                if size == (0, 0):
                    report.unreadable.append(relpath)
        relinked: list[tuple[Path, Path]] = []
        for relpath in sorted(set(on_disk) - set(rows)):
            path = on_disk[relpath]
            stat = stats[relpath]
            digest = _try_hash(path)
            if digest is None:
                report.unreadable.append(relpath)
                continue
            size = image_size(path)
            if size is None:
                report.unreadable.append(relpath)
                size = (0, 0)
            candidates = gone_by_hash.get(digest)
            if candidates:
                old = candidates.pop(0)
                src, dst = self._label_file(old[0]), self._label_file(relpath)
                if src.exists():
                    try:
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(src, dst)
                        relinked.append((src, dst))
                    except OSError as exc:
                        log.warning(
                            "could not move the label of %s to %s: %s", old[0], relpath, exc
                        )
                updates.append(
                    (
                        "UPDATE images SET relpath=?, size_bytes=?, mtime_ns=?, width=?, height=?, "
                        "missing=0, updated_at=? WHERE id=?",
                        (relpath, stat.st_size, stat.st_mtime_ns, size[0], size[1], now, old[1]),
                    )
                )
                report.moved.append((old[0], relpath))
                continue
            updates.append(
                (
                    "INSERT INTO images (relpath, content_hash, size_bytes, mtime_ns, width, height, "
                    "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'new', ?, ?)",
                    (relpath, digest, stat.st_size, stat.st_mtime_ns, size[0], size[1], now, now),
                )
            )
            report.added.append(relpath)
        for candidates in gone_by_hash.values():
            for row in candidates:
                if not row[5]:
                    updates.append(
                        ("UPDATE images SET missing=1, updated_at=? WHERE id=?", (now, row[1]))
                    )
                report.missing.append(row[0])
        report.missing.sort()
        if updates:
            try:
                with self._tx() as c:
                    # Moves first free their old relpath before another row may take it.
                    for sql, args in sorted(updates, key=lambda u: not u[0].startswith("UPDATE")):
                        c.execute(sql, args)
            except BaseException:
                for src, dst in relinked:  # put the labels back where the rows still point
                    try:
                        os.replace(dst, src)
                    except OSError:
                        pass
                raise
        for relpath in report.missing:
            log.warning("%s is missing from the project folder", relpath)
        return report

    # ---- reading ------------------------------------------------------------------------

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
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY relpath", args).fetchall()
        return [_record(r) for r in rows]

    def get(self, image_id: int) -> ImageRecord:
        """The current record of an image id (KeyError when unknown)."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM images WHERE id=?", (int(image_id),)
            ).fetchone()
        if row is None:
            raise KeyError(f"no image with id {image_id} in {self.root}")
        return _record(row)

    def find(self, relpath: str) -> ImageRecord | None:
        """The record of a relpath ('/'-separated), or None."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM images WHERE relpath=?", (relpath,)
            ).fetchone()
        return _record(row) if row else None

    def image_path(self, rec: ImageRecord) -> Path:
        return self.root / rec.relpath

    def label_path(self, rec: ImageRecord) -> Path:
        return self._label_file(rec.relpath)

    def _label_file(self, relpath: str) -> Path:
        return self.labels_dir / (relpath + ".png")

    def load_image(self, rec: ImageRecord) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB, EXIF orientation applied.

        Raises:
            ImageReadError: the file is missing, corrupt, truncated or of an unsupported format.
        """
        image = read_image(self.image_path(rec))
        h, w = image.shape[:2]
        if (w, h) != (rec.width, rec.height):
            # The header said otherwise at scan time (or was unreadable): trust the pixels.
            self._update(rec.id, "width=?, height=?", (w, h))
        return image

    def load_label(self, rec: ImageRecord) -> np.ndarray | None:
        """The saved label map (H, W) uint8, or None when the image has none yet.

        Raises:
            LabelMapError: the label file is unreadable, of the wrong size, or has values > 10.
        """
        path = self.label_path(rec)
        if not path.exists():
            return None
        rec = self.get(rec.id)
        expected = (rec.height, rec.width) if rec.width > 0 and rec.height > 0 else None
        return read_label(path, num_classes=NUM_CLASSES, expected_size=expected)

    # ---- writing ------------------------------------------------------------------------

    def save_label(
        self,
        rec: ImageRecord,
        label: np.ndarray,
        status: str | None = None,
        add_seconds: float = 0.0,
        model_version: str | None = None,
    ) -> ImageRecord:
        """Write an image's label map atomically, then update its row.

        Without ``status``, a "new" image becomes "pre-labeled" when ``model_version`` is given
        and "in_progress" otherwise; a "pre-labeled" one becomes "in_progress" when saved by
        hand; other statuses are kept.

        Args:
            rec: the image.
            label: (H, W) uint8 class indices 0..10, H and W those of the image.
            status: new status, one of STATUSES.
            add_seconds: active annotation seconds to add.
            model_version: the model that produced this label (for pre-labels).

        Returns:
            The updated record.

        Raises:
            LabelMapError: wrong size or class values; nothing is written.
            ProjectError: the write failed (disk full, read-only, ...); the previous label file
                is left as it was.
        """
        if status is not None:
            self._check_status(status)
        rec = self.get(rec.id)
        path = self.label_path(rec)
        label = np.asarray(label)
        if label.dtype != np.uint8:
            if label.size and (label.min() < 0 or label.max() > 255):
                check_label(label, path, num_classes=NUM_CLASSES)
            label = label.astype(np.uint8)
        expected = (rec.height, rec.width) if rec.width > 0 and rec.height > 0 else None
        check_label(label, path, num_classes=NUM_CLASSES, expected_size=expected)
        if rec.missing:
            raise ProjectError(
                f"{self.image_path(rec)} is missing from the folder; its label was not saved"
            )
        try:
            write_label(path, label)
        except OSError as exc:
            raise _write_error(exc, path, f"the label of {rec.relpath}") from None
        if status is None:
            if rec.status == "new":
                status = "pre-labeled" if model_version is not None else "in_progress"
            elif rec.status == "pre-labeled" and model_version is None:
                status = "in_progress"
            else:
                status = rec.status
        sets, args = ["status=?"], [status]
        if add_seconds and np.isfinite(add_seconds) and add_seconds > 0:
            sets.append("active_seconds=active_seconds+?")
            args.append(float(add_seconds))
        if model_version is not None:
            sets.append("model_version=?")
            args.append(str(model_version))
        if expected is None:
            sets.append("width=?, height=?")
            args.extend([int(label.shape[1]), int(label.shape[0])])
        return self._update(rec.id, ", ".join(sets), tuple(args))

    def set_status(self, rec: ImageRecord, status: str) -> ImageRecord:
        """Set an image's status (one of STATUSES)."""
        self._check_status(status)
        return self._update(rec.id, "status=?", (status,))

    def add_active_seconds(self, rec: ImageRecord, seconds: float) -> ImageRecord:
        """Add seconds of active annotation time (ignored when not a positive number)."""
        seconds = float(seconds)
        if not (np.isfinite(seconds) and seconds > 0):
            return self.get(rec.id)
        return self._update(rec.id, "active_seconds=active_seconds+?", (seconds,))

    # ---- progress -----------------------------------------------------------------------

    def next_unfinished(self, after_id: int | None = None) -> ImageRecord | None:
        """The next image (by relpath, wrapping around) not yet labeled or reviewed.

        Missing images are skipped. When ``after_id`` is the only unfinished image, it is
        returned; None when every image is finished.
        """
        recs = self.images(include_missing=False)
        if not recs:
            return None
        start = next((i for i, r in enumerate(recs) if r.id == after_id), -1)
        n = len(recs)
        for k in range(1, n + 1):
            r = recs[(start + k) % n]
            if r.status not in FINISHED:
                return r
        return None

    def counts(self) -> dict[str, int]:
        """Images per status (present ones), plus "total" (present) and "missing"."""
        out = {s: 0 for s in STATUSES}
        with self._lock:
            rows = self._conn.execute(
                "SELECT status, missing, COUNT(*) FROM images GROUP BY status, missing"
            ).fetchall()
        missing = 0
        for status, is_missing, n in rows:
            if is_missing:
                missing += n
            else:
                out[status] = out.get(status, 0) + n
        out["total"] = sum(out[s] for s in STATUSES)
        out["missing"] = missing
        return out

    # ---- internals ----------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; sqlite errors become ProjectError."""
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
        return ProjectError(f"{db}: database error ({exc})")

    def _update(self, image_id: int, sets: str, args: tuple) -> ImageRecord:
        with self._tx() as c:
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
    )


def _probe_write(store: Path) -> None:
    """Create and delete a temp file in the store: the one reliable test of writability."""
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".probe.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
