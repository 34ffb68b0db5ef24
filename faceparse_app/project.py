"""The project store: a folder of face images, their label maps and their progress.

Layout inside the project folder::

    .faceparse/project.sqlite     one row per image + a meta table (schema_version)
    .faceparse/labels/<relpath>.png   'L' PNG label map of image <relpath> (e.g. a/b.jpg.png;
                                  the image's own extension is kept so a.jpg and a.png never
                                  share a label file)
    .faceparse/backups/           rolling copies of project.sqlite (store_guard)
    .faceparse/lock, lock.json    the one-writer lock and who holds it (store_guard)

Every label write is atomic (temp file + os.replace) and happens before the database row is
updated, so a crash leaves either the old label or the new one, never a half-written file. The
row records the sha256, size and mtime of the file written and whether a model or a person made
it; a label file the store did not write (a kill between the two writes, a lost store) is the
annotator's, and no pre-label ever replaces it (``project_scan.reconcile_labels``). A lost or
emptied store is rebuilt from the newest backup and the label files; a damaged one raises
DamagedStoreError until opened with ``recover=True``. One process writes a project at a time.
A folder that cannot be written to is refused at open with a ProjectError that says so: the
app never lets an annotator work on labels it cannot save.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

from faceparse_app import store_guard, store_open
from faceparse_app.project_scan import (
    FINISHED,
    UNTOUCHED,
    ScanReport,
    read_error,
    reconcile_labels,
    scan_images,
)
from faceparse_app.scan_texts import gone_text
from faceparse_app.store_guard import (
    FULL_ERRNOS,
    READ_ONLY_ERRNOS,
    DamagedStoreError,
    LookLock,
    ProjectLock,
    ProjectLockedError,
    ReadOnlyFolderError,
    encode_prelabel_png,
    write_error,
)
from faceparse_app.store_open import DB_NAME, LABELS_DIR, LANDMARKS_DIR, SCHEMA_VERSION, STATUSES
from faceparse_app.store_rows import ImageRecord, ProjectError, StoreRows
from trainer.data.imageio import (
    atomic_write_bytes,
    check_label,
    encode_label_png,
    read_image,
    read_label,
)
from trainer.data.imageio import image_size as header_size
from trainer.errors import ImageReadError, LabelMapError
from trainer.labels import LAPA

__all__ = [
    "DB_NAME",
    "FINISHED",
    "SCHEMA_VERSION",
    "STATUSES",
    "DamagedStoreError",
    "ImageRecord",
    "Project",
    "ProjectError",
    "ProjectLockedError",
    "ReadOnlyFolderError",
    "ScanReport",
]

log = logging.getLogger(__name__)

NUM_CLASSES = LAPA.num_classes
STORE_DIR = ".faceparse"

def file_hash(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hash_or_none(path: Path) -> str | None:
    """file_hash, or None (logged) when the file cannot be read."""
    try:
        return file_hash(path)
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) after EXIF orientation, from the header only; None when unreadable.

    The trainer's header reader: a PNG is not decoded to look for EXIF after its pixels (which
    cost the folder scan 1.2 s and the pixels' memory per 50-megapixel PNG), the orientation
    rule is read_image's own, and a file over the pixel limit is unreadable here (read_image
    says so in the app's words when the image is opened or pre-labeled)."""
    try:
        h, w = header_size(path)
    except ImageReadError:
        return None
    return w, h


class Project(StoreRows):
    """A folder of face images opened as a labeling project. Create with ``Project.open``.

    Safe to call from several threads (one lock around the database connection).

    Attributes:
        recovery: what opening had to recover (a restored backup, labels found on disk) or
            found gone (worked-on images no longer in the folder), in a sentence for the
            annotator; None when there is nothing to say.
        read_only: opened for reading only; every write raises ProjectError.
    """

    def __init__(
        self, root: Path, conn: object, lock: ProjectLock | LookLock | None = None, read_only: bool = False
    ) -> None:
        super().__init__(root, root / STORE_DIR, conn, read_only)  # type: ignore[arg-type]
        self.labels_dir = self.store_dir / LABELS_DIR
        self.recovery: str | None = None
        self.dataset_labels: dict[str, int] = {}  # the last scan's (ScanReport.dataset_labels)
        self.moved: dict[str, str] = {}  # the last scan's renames, old relpath -> new
        self.last_scan = ScanReport()
        self.scans = 0  # folder scans done (each may rename, add or flag any row)
        self._file_lock = lock
        self._last_backup = 0.0

    # ---- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        scan: bool = True,
        recover: bool = False,
        read_only: bool = False,
    ) -> Project:
        """Open (or create) the project of a folder, and scan it for new, moved, missing images.

        Args:
            folder: the image folder.
            scan: bring the store in line with the folder (images and label files).
            recover: if the store is damaged, keep it aside as ``project.sqlite.damaged-<time>``
                and rebuild it from the newest sound backup and the label files.
            read_only: read without taking the folder's lock (an export, a look while another
                instance edits); no scan, and every write raises ProjectError.

        Raises:
            ProjectLockedError: another process (or this one) has the project open for writing.
            DamagedStoreError: the store is damaged; open again with ``recover=True``.
            ReadOnlyFolderError: the folder cannot be written (open it ``read_only`` to look).
            ProjectError: the folder is missing, or its store was written by a newer version
                of the app.
        """
        root = Path(folder).expanduser().absolute()
        if not root.exists():
            raise ProjectError(f"{root}: folder not found")
        if not root.is_dir():
            raise ProjectError(f"{root}: not a folder")
        store = root / STORE_DIR
        if read_only:
            return cls(root, store_open.connect_read_only(store / DB_NAME), read_only=True)
        if not (store / DB_NAME).exists():  # a new project: its photos in no other one
            store_guard.refuse_overlapping_project(root, STORE_DIR, DB_NAME)
        try:
            (store / LABELS_DIR).mkdir(parents=True, exist_ok=True)
            _probe_write(store)
        except OSError as exc:
            if exc.errno in READ_ONLY_ERRNOS:
                raise ReadOnlyFolderError(
                    f"{root} is read-only; labels cannot be saved there. Copy the folder to a "
                    "place you can write to (or fix its permissions) and open it again."
                ) from None
            if exc.errno in FULL_ERRNOS:
                raise ProjectError(f"disk full: cannot create the project store in {store}") from None
            raise ProjectError(f"{store}: cannot create the project store ({exc})") from None
        lock = ProjectLock(store)
        lock.acquire()  # before the store is touched: two creators would collide in it
        try:
            opened = store_open.connect(store / DB_NAME, recover)
        except BaseException:
            lock.release()
            raise
        project = cls(root, opened.conn, lock)
        try:
            _remove_stale_temp_files(project.labels_dir)
            gone = gone_text(project.scan()) if scan else ""
            if scan or opened.recovering:
                report = reconcile_labels(project, recovering=opened.recovering)
                project.recovery = store_open.recovery_text(
                    opened.note, report.hand, report.prelabels, report.gone
                )
            project.recovery = " ".join(filter(None, [project.recovery, gone])) or None
            project.backup(force=opened.recovering)
            if lock.left_by is not None:  # the last window was killed: only then look it up
                unclean = lock.unclean_exit_text(project.last_hand_edited())
                project.recovery = " ".join(filter(None, [project.recovery, unclean]))
        except BaseException:
            project.close()
            raise
        return project

    def last_hand_edited(self) -> str | None:
        """The relpath of the image whose hand-made label changed last (None if there is none)."""
        rows = self.query(
            "SELECT relpath FROM images WHERE label_source='hand' ORDER BY updated_at DESC LIMIT 1"
        )
        return rows[0][0] if rows else None

    @property
    def schema_version(self) -> int:
        return int(self.query("SELECT value FROM meta WHERE key='schema_version'")[0][0])

    def backup(self, force: bool = False) -> Path | None:
        """Copy the store into ``backups/`` when it changed since the last copy and at least
        ``store_guard.BACKUP_EVERY_S`` have passed (or ``force``); best effort, never raises.

        Returns:
            The backup written, or None.
        """
        if self.read_only:
            return None
        now = store_guard._now()
        if not force:
            if self._last_backup == 0.0:  # the first call (at open): only the age counts
                self._last_backup = store_guard.last_backup_time(self.store_dir) or 0.0
            elif self._writes_since_backup == 0:
                return None
            if now - self._last_backup < store_guard.BACKUP_EVERY_S:
                return None
        try:
            with self._lock:
                path = store_guard.make_backup(self._conn, self.store_dir)
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not back up the project store: %s", exc)
            return None
        self._last_backup, self._writes_since_backup = now, 0
        return path

    def close(self) -> None:
        """Back the store up if it changed, close it and release the folder (idempotent)."""
        with self._lock:
            if self._file_lock is not None and self._writes_since_backup:
                self.backup(force=True)
            self._conn.close()
            if self._file_lock is not None:
                self._file_lock.release()
                self._file_lock = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- scanning -----------------------------------------------------------------------

    def scan(self) -> ScanReport:
        """Bring the store in line with the folder.

        New images are added as "new"; a known image whose file is gone is flagged missing; a
        new file with the content hash of a missing one is the same image moved, so its row
        (status, time, label) follows it, also onto the name of another image that moved on
        (files renumbered or swapped). Changed files are re-hashed (size or mtime differ).
        The label maps of a dataset's layout (``labels/`` or ``masks/`` beside ``images/``) are
        not taken as photos.
        """
        report = scan_images(self)
        self.dataset_labels, self.moved = report.dataset_labels, dict(report.relinked)
        self.last_scan = report
        self.scans += 1
        return report

    # ---- reading ------------------------------------------------------------------------

    def image_path(self, rec: ImageRecord) -> Path:
        return self.root / rec.relpath

    def label_path(self, rec: ImageRecord) -> Path:
        return self.label_file(rec.relpath)

    def label_file(self, relpath: str) -> Path:
        """Where the label map of an image relpath lives."""
        return self.labels_dir / (relpath + ".png")

    def landmarks_file(self, relpath: str) -> Path:
        """Where the project's own landmarks of an image relpath live (LaPa's 106 points)."""
        return self.store_dir / LANDMARKS_DIR / (relpath + ".txt")

    def load_image(self, rec: ImageRecord) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB, EXIF orientation applied.

        Raises:
            ImageReadError: the file is missing, corrupt, truncated, over the pixel limit or of
                an unsupported format.
        """
        try:
            image = read_image(self.image_path(rec))
        except ImageReadError as exc:  # an empty file is told as empty, not as "not an image"
            raise read_error(exc, self.image_path(rec)) from None
        h, w = image.shape[:2]
        if (w, h) != (rec.width, rec.height) and not self.read_only:
            # The header said otherwise at scan time (or was unreadable): trust the pixels.
            self._update(rec.id, "width=?, height=?", (w, h))
        return image

    def load_label(self, rec: ImageRecord) -> np.ndarray | None:
        """The saved label map (H, W) uint8, or None when the image has none yet.

        Raises:
            LabelMapError: the label file is unreadable, of the wrong size, or has values > 10.
        """
        path = self.label_path(rec)
        try:
            path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:  # not absent: unreadable (a folder's permissions, a share gone)
            raise LabelMapError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        rec = self.get(rec.id)
        expected = (rec.height, rec.width) if rec.width > 0 and rec.height > 0 else None
        return read_label(path, num_classes=NUM_CLASSES, expected_size=expected)

    def may_prelabel(self, rec: ImageRecord) -> bool:
        """Whether a model's pre-label may be written for an image.

        Only for an image with status "new" or "pre-labeled" whose label file is absent or is,
        byte for byte, the pre-label the store last wrote. Any other label file is a person's
        work (saved by hand, edited in another program, or found on disk after a lost store).
        """
        if self.read_only or rec.missing or rec.status not in UNTOUCHED:
            return False
        path = self.label_path(rec)
        if not path.exists():
            return True
        rows = self.query("SELECT label_hash, label_source FROM images WHERE id=?", (rec.id,))
        if not rows or rows[0][1] != "model" or rows[0][0] is None:
            return False
        return file_hash_or_none(path) == rows[0][0]

    def label_by_hand(self, rec: ImageRecord) -> bool:
        """Whether the image's label file was last saved by a person (not a model's pre-label)."""
        rows = self.query("SELECT label_source FROM images WHERE id=?", (rec.id,))
        return bool(rows) and rows[0][0] == "hand"

    # ---- writing ------------------------------------------------------------------------

    def set_label_stamp(self, rec: ImageRecord, data: bytes, stat: os.stat_result) -> ImageRecord:
        """Record that the label file of ``rec`` was written again with ``data`` (the same label,
        by the same hand or model: see ``store_watch.write_again``)."""
        sets = "label_hash=?, label_size=?, label_mtime_ns=?"
        return self._update(rec.id, sets, (hashlib.sha256(data).hexdigest(), stat.st_size, stat.st_mtime_ns))

    def save_label(
        self,
        rec: ImageRecord,
        label: np.ndarray,
        status: str | None = None,
        add_seconds: float = 0.0,
        model_version: str | None = None,
        add_actions: int = 0,
        undone_to: str | None = None,
        imported: bool = False,
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
            add_actions: edits to add to the image's count.
            model_version: the model that produced this label: a pre-label, written only where
                :meth:`may_prelabel` allows.
            undone_to: the model whose pre-label the photo started from and ``label`` is again,
                every edit undone (``prelabel_start``): saved as that model's, whoever wrote the
                file last; "in_progress" goes back to "pre-labeled", and "pre-labeled" (edits
                undone before any save) stays so.
            imported: a label made elsewhere (an import): flagged for a look (Show: needs
                review), and no model version is kept (it does not start from a pre-label).

        Returns:
            The updated record.

        Raises:
            LabelMapError: wrong size or class values; nothing is written.
            ProjectError: the write failed (disk full, read-only, ...) or a pre-label would
                replace a person's label file; the previous label file is left as it was.
        """
        self._check_writable()
        if status is not None:
            self._check_status(status)
        # Checked and PNG-encoded before taking the lock (64 ms at 4000²): a pre-label written
        # from the model's thread and a save from the window do not wait on each other's encode.
        label = np.asarray(label)
        path = self.label_path(rec)
        if label.dtype != np.uint8:
            if label.size and (label.min() < 0 or label.max() > 255):
                check_label(label, path, num_classes=NUM_CLASSES)
            label = label.astype(np.uint8)
        expected = (rec.height, rec.width) if rec.width > 0 and rec.height > 0 else None
        check_label(label, path, num_classes=NUM_CLASSES, expected_size=expected)
        version = model_version or undone_to
        data = encode_label_png(label) if version is None else encode_prelabel_png(label, version)
        with self._lock:
            rec = self.get(rec.id)
            path = self.label_path(rec)
            expected = (rec.height, rec.width) if rec.width > 0 and rec.height > 0 else None
            if expected is not None and label.shape != expected:  # the row changed meanwhile
                check_label(label, path, num_classes=NUM_CLASSES, expected_size=expected)
            if rec.missing:
                raise ProjectError(
                    f"{self.root / rec.shown_name} is missing from the folder; its label was not saved."
                )
            if model_version is not None and not self.may_prelabel(rec):
                raise ProjectError(
                    f"{path}: the label file is not written by a pre-label of ours (a person's "
                    "work); it is kept and the model's pre-label was not saved"
                )
            try:
                atomic_write_bytes(path, data)
                stat = path.stat()
            except OSError as exc:
                raise write_error(exc, path, f"the label of {rec.relpath}") from None
            self._writes_since_backup += 1
            if status is None:
                if undone_to is not None and rec.status in ("pre-labeled", "in_progress"):
                    status = "pre-labeled"
                elif rec.status == "new":
                    status = "pre-labeled" if model_version is not None else "in_progress"
                elif rec.status == "pre-labeled" and model_version is None:
                    status = "in_progress"
                else:
                    status = rec.status
            sets = ["status=?", "label_hash=?", "label_source=?", "label_size=?", "label_mtime_ns=?"]
            args: list[object] = [
                status,
                hashlib.sha256(data).hexdigest(),
                "hand" if version is None else "model",
                stat.st_size,
                stat.st_mtime_ns,
            ]
            if imported or (status in FINISHED and status != rec.status):
                sets.append(f"needs_review={int(imported)}")
            if imported and version is None:
                sets.append("model_version=NULL")
            if add_seconds and np.isfinite(add_seconds) and add_seconds > 0:
                sets.append("active_seconds=active_seconds+?")
                args.append(float(add_seconds))
            if add_actions > 0:
                sets.append("actions=actions+?")
                args.append(int(add_actions))
            if version is not None:
                sets.append("model_version=?")
                args.append(str(version))
            if expected is None:
                sets.append("width=?, height=?")
                args.extend([int(label.shape[1]), int(label.shape[0])])
            return self._update(rec.id, ", ".join(sets), tuple(args))

def _remove_stale_temp_files(labels_dir: Path) -> None:
    """Delete the temp files of label writes a kill interrupted (``.<name>.png.<rand>.tmp``).

    Only called with the folder's lock held, so no save of another process is under way.
    """
    for tmp in labels_dir.rglob(".*.png.*.tmp"):
        try:
            tmp.unlink()
        except OSError as exc:
            log.warning("cannot remove %s: %s", tmp, exc)


def _probe_write(store: Path) -> None:
    """Create and delete a temp file in the store: the one reliable test of writability."""
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".probe.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
