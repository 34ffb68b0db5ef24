"""What keeps a project store safe: one writer per folder, rolling backups, and a mark on every
pre-label file so a rebuilt store can tell the model's labels from the annotator's.

- :class:`ProjectLock`: an OS file lock on ``.faceparse/lock`` (``filelock``: flock on POSIX,
  msvcrt on Windows). The kernel drops it when the holder dies, so a crash or kill -9 never
  leaves a stale lock; ``lock.json`` beside it says who holds it, for the refusal message.
- Backups: ``.faceparse/backups/project-<time>.sqlite``, made with SQLite's online backup API
  (consistent even while the store is in use), the newest :data:`KEEP_BACKUPS` kept.
- Pre-label files carry a PNG text chunk naming the model version that wrote them. Files saved
  by hand carry none. Nothing else reads it: it only matters when the store is lost.
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout
from PIL import Image, PngImagePlugin

from trainer.errors import FaceParseError

LOCK_NAME = "lock"
LOCK_INFO_NAME = "lock.json"
BACKUPS_DIR = "backups"
KEEP_BACKUPS = 5
BACKUP_EVERY_S = 600.0  # while a project is open, at most one backup per this many seconds
PRELABEL_CHUNK = "faceparse-prelabel"

READ_ONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}

# Folders this process holds: a second open from the same process is refused with its own text.
_HELD: set[str] = set()


class ProjectError(FaceParseError):
    """The project folder or its store cannot be opened, read or written."""


class ProjectLockedError(ProjectError):
    """Another FaceParse Studio (or this one) already has the project folder open for writing."""


class ReadOnlyFolderError(ProjectError):
    """The project folder cannot be written (a read-only share or disk): it may still be read
    with ``Project.open(folder, read_only=True)`` when its store exists."""


class DamagedStoreError(ProjectError):
    """``project.sqlite`` is damaged; ``Project.open(folder, recover=True)`` rebuilds it."""


def write_error(exc: OSError, path: Path, what: str) -> ProjectError:
    """The ProjectError for a failed write: disk full, read-only, or the OS's own words, and
    what is at ``path`` now (the earlier file, unchanged, or none: deleted by another program,
    or never written)."""
    left = _what_is_left(path)
    if exc.errno in FULL_ERRNOS:
        return ProjectError(
            f"disk full: could not save {what} to {path}{left}. "
            "Free some disk space and save again."
        )
    if exc.errno in READ_ONLY_ERRNOS:
        return ProjectError(f"{path} is read-only: could not save {what}{left}.")
    return ProjectError(f"could not save {what} to {path} ({exc}){left}.")


def _what_is_left(path: Path) -> str:
    """The clause of a write error that says what a failed write left at ``path``: atomic
    writes leave an earlier file as it was, but there may be none (a label file deleted under
    the running app, a first save), and saying it is "unchanged" then is a false comfort."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "; nothing was written, and no file is there now (deleted, or never saved)"
    except OSError:  # there or not, it cannot be looked at: say nothing rather than guess
        return ""
    return "; the previous file is unchanged"


def _now() -> float:
    return time.time()


class ProjectLock:
    """The one-writer lock of a project store folder.

    Args:
        store_dir: the ``.faceparse`` folder (must exist).
    """

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.path = store_dir / LOCK_NAME
        self._lock = FileLock(str(self.path), is_singleton=False)
        self._key = str(store_dir.resolve())
        self.left_by: dict | None = None  # lock.json of a holder that never released the lock

    def acquire(self) -> None:
        """Take the lock now or raise ProjectLockedError saying who holds it."""
        folder = self.store_dir.parent
        if self._key in _HELD:
            raise ProjectLockedError(
                f"{folder} is already open in this FaceParse Studio; switch to that window"
            )
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise ProjectLockedError(
                f"{folder} is open in another FaceParse Studio ({self._holder()}). Close it "
                "there first: two windows on one project would overwrite each other's labels."
            ) from None
        _HELD.add(self._key)
        # A description still there was left by a holder that never released the lock: it
        # was killed or crashed, so its last seconds of edits may not be on disk.
        self.left_by = self._holder_info()
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        try:
            (self.store_dir / LOCK_INFO_NAME).write_text(json.dumps(info), encoding="utf-8")
        except OSError:
            pass  # the lock holds without its description

    def _holder_info(self) -> dict | None:
        try:
            info = json.loads((self.store_dir / LOCK_INFO_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _holder(self) -> str:
        info = self._holder_info() or {}
        try:
            return f"process {info['pid']} on {info['host']}, since {info['since']}"
        except KeyError:  # a look (LookLock) cannot write its description
            return "holder unknown: perhaps a window looking at it on a read-only share"

    def unclean_exit_text(self, last_edited: str | None) -> str | None:
        """What the annotator should know when the last window on this project was killed or
        crashed (None when it closed normally)."""
        if self.left_by is None:
            return None
        who = f"process {self.left_by.get('pid', '?')}, opened {self.left_by.get('since', '?')}"
        where = f"; the image edited last was {last_edited}" if last_edited else ""
        return (
            f"FaceParse Studio did not close normally last time ({who}: it crashed or was "
            "killed). Labels are as the last autosave left them, so edits of its last few "
            f"seconds may be missing{where}."
        )

    def release(self) -> None:
        if self._key not in _HELD:
            return
        _HELD.discard(self._key)
        try:
            (self.store_dir / LOCK_INFO_NAME).unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release(force=True)


class LookLock:
    """A shared hold on ``.faceparse/lock`` by a window that only looks at a folder it cannot
    write: its store is read as immutable (no SQLite locks at all), so no writer may hold the
    folder while the look opens, nor open it until the look closes (a writer elsewhere would
    change the file under the look: stale statuses, or pages of two versions mixed).

    POSIX only (flock on a read-only descriptor; ``filelock``'s writers take flock too);
    elsewhere, or without a lock file (a store no writer has opened since), nothing is held.

    Args:
        store_dir: the ``.faceparse`` folder.
    """

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Hold the folder shared, or raise ProjectLockedError when a writer holds it."""
        try:
            import fcntl
        except ImportError:  # Windows: msvcrt locks have no shared mode
            return
        try:
            fd = os.open(self.store_dir / LOCK_NAME, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            holder = ProjectLock(self.store_dir)._holder()
            raise ProjectLockedError(
                f"{self.store_dir.parent} is open in another FaceParse Studio ({holder}), which "
                "may be changing it: look at it once it is closed there."
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None


# ------------------------------------------------------------------------------- backups


def backups(store_dir: Path) -> list[Path]:
    """The store's backups, newest first."""
    folder = store_dir / BACKUPS_DIR
    if not folder.is_dir():
        return []
    return sorted(folder.glob("project-*.sqlite"), reverse=True)


def _stamp(t: float) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(t)) + f"-{int(t % 1 * 1e6):06d}"


def backup_time(path: Path) -> float | None:
    """When a backup was made, from its name (``project-YYYYmmdd-HHMMSS-micro.sqlite``)."""
    try:
        day, clock, micro = path.stem.split("-")[1:4]
        return time.mktime(time.strptime(f"{day}-{clock}", "%Y%m%d-%H%M%S")) + int(micro) / 1e6
    except (ValueError, IndexError):
        return None


def last_backup_time(store_dir: Path) -> float | None:
    """When the newest backup was made, or None when there is none."""
    found = backups(store_dir)
    return backup_time(found[0]) if found else None


def make_backup(conn: sqlite3.Connection, store_dir: Path) -> Path:
    """Copy the live store into ``backups/`` (atomically) and drop all but the newest few.

    Raises:
        OSError, sqlite3.Error: the copy failed (the caller logs it; a backup is best effort).
    """
    folder = store_dir / BACKUPS_DIR
    folder.mkdir(exist_ok=True)
    t = _now()
    path = folder / f"project-{_stamp(t)}.sqlite"
    while path.exists():
        t += 1e-6
        path = folder / f"project-{_stamp(t)}.sqlite"
    tmp = path.with_name(path.name + ".tmp")
    create_with_umask(tmp)
    target = sqlite3.connect(tmp)
    try:
        conn.backup(target)
    finally:
        target.close()
    os.replace(tmp, path)
    for old in backups(store_dir)[KEEP_BACKUPS:]:
        old.unlink(missing_ok=True)
    return path


def create_with_umask(path: Path) -> None:
    """Create ``path`` empty (an empty file is an empty SQLite database) unless it exists.

    SQLite creates its files 0644 whatever the umask, and gives its -wal and -shm files the
    mode of the database; made here first, they all follow the umask like any other file, so a
    team sharing a folder (umask 002) can all save into it.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        pass


def sqlite_uri(path: Path, **params: str) -> str:
    """A SQLite ``file:`` URI of a path, e.g. ``mode="ro"``.

    The path is percent-encoded: left raw, a '#' or '?' in a folder name ("team #2") cuts it
    short, and SQLite opens (or creates) another file.
    """
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return Path(path).absolute().as_uri() + (f"?{query}" if query else "")


def is_sound(path: Path) -> bool:
    """True when a SQLite file opens and passes ``PRAGMA quick_check``."""
    try:
        conn = sqlite3.connect(sqlite_uri(path, mode="ro"), uri=True)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row) and row[0] == "ok"


def newest_sound_backup(store_dir: Path) -> Path | None:
    return next((b for b in backups(store_dir) if is_sound(b)), None)


def describe_backup(path: Path) -> str:
    """When a backup was made, for the annotator ("2026-12-04 10:32")."""
    t = backup_time(path)
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t is not None else path.name


def move_store_aside(db_path: Path, why: str) -> Path:
    """Rename ``project.sqlite`` (and its -wal/-shm) to ``project.sqlite.<why>-<time>``."""
    aside = db_path.with_name(f"{db_path.name}.{why}-{_stamp(_now())}")
    for side in ("", "-wal", "-shm"):
        src = Path(f"{db_path}{side}")
        if src.exists():
            os.replace(src, Path(f"{aside}{side}"))
    return aside


# --------------------------------------------------------------------- pre-label marks


def encode_prelabel_png(label: np.ndarray, version: str) -> bytes:
    """A (H, W) uint8 label map as an 8-bit 'L' PNG marked as model ``version``'s pre-label."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PRELABEL_CHUNK, str(version))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), "L").save(
        buf, format="PNG", pnginfo=info
    )
    return buf.getvalue()


def prelabel_mark(path: Path) -> str | None:
    """The model version a label file was pre-labeled by, or None (hand-made or unreadable)."""
    try:
        with Image.open(path) as im:
            value = im.info.get(PRELABEL_CHUNK)
    except Exception:  # any unreadable file is simply not one of our pre-labels
        return None
    return str(value) if value else None


def refuse_overlapping_project(root: Path, store_dir: str, db_name: str) -> None:
    """Refuse to make a new project of a folder that lies inside another project or holds one.

    Its photos would be in two projects at once: the new one would show them without the
    labels made in the other (fresh pre-labels over finished work), and labels made in it would
    never reach the other's exports.

    Args:
        root: the folder about to get a store (absolute).
        store_dir, db_name: the store folder's name and its database's, inside a project folder.

    Raises:
        ProjectError: naming the other project and what to open instead.
    """
    real = root.resolve()  # a link to a folder inside a project is that folder
    for path, outer in [(p, o) for p in dict.fromkeys((root, real)) for o in p.parents]:
        parts = path.relative_to(outer).parts
        if parts[0] != store_dir and any(part.startswith(".") for part in parts):
            continue  # under a hidden folder of it (an export kept there): none of its photos
        if (outer / store_dir / db_name).is_file():
            raise ProjectError(
                f"{root}: it is inside the project {outer}, whose photos (these too) are labeled "
                f"there. Open {outer} instead: a project of its own here would show those photos "
                f"without their labels, and labels made here would not be in {outer.name}'s exports."
            )
    for dirpath, dirnames, _ in os.walk(root):
        if dirpath != os.fspath(root) and os.path.isfile(os.path.join(dirpath, store_dir, db_name)):
            raise ProjectError(
                f"{root}: it holds the project {dirpath}, whose photos are labeled there: a "
                f"project here would show them without their labels. Open {dirpath}, or move it "
                f"out of {root.name} first."
            )
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
