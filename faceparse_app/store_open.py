"""Opening ``project.sqlite``: the schema and its migrations, and what to do when the store is
lost or damaged.

- Missing or empty: the newest sound backup is put in place; with none, a fresh store is
  made. Either way the rows are then reconciled with the label files as a recovery.
- Damaged (``PRAGMA quick_check`` fails, or SQLite says so): DamagedStoreError saying what a
  recovery does; with ``recover=True`` the damaged file is kept aside as
  ``project.sqlite.damaged-<time>`` and the store rebuilt as for a lost one.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from faceparse_app import store_guard
from faceparse_app.scan_texts import name_list
from faceparse_app.store_guard import DamagedStoreError, ProjectError

DB_NAME = "project.sqlite"
LABELS_DIR = "labels"
LANDMARKS_DIR = "landmarks"  # the project's own landmarks (an import's), <relpath>.txt
MODELS_DIR = "models"  # the project's model versions (model_store)
SCHEMA_VERSION = 4
STATUSES: tuple[str, ...] = ("new", "pre-labeled", "in_progress", "labeled", "reviewed")

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
    actions INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    model_version TEXT,
    missing INTEGER NOT NULL DEFAULT 0,
    label_hash TEXT,
    label_source TEXT,
    label_size INTEGER,
    label_mtime_ns INTEGER,
    needs_review INTEGER NOT NULL DEFAULT 0,
    faces TEXT
);
CREATE INDEX images_hash ON images (content_hash);
"""


def _add_label_provenance(c: sqlite3.Connection) -> None:
    """Schema 1 -> 2: what wrote each label file. Schema 1 kept no hashes; its "pre-labeled"
    rows are taken as the model's (reconcile_labels records their hash on this open)."""
    for column in (
        "label_hash TEXT",
        "label_source TEXT",
        "label_size INTEGER",
        "label_mtime_ns INTEGER",
        "needs_review INTEGER NOT NULL DEFAULT 0",
    ):
        c.execute(f"ALTER TABLE images ADD COLUMN {column}")
    c.execute("UPDATE images SET label_source='model' WHERE status='pre-labeled'")


def _add_faces(c: sqlite3.Connection) -> None:
    """Schema 2 -> 3: the faces of each image (JSON; NULL: not looked for yet, so the next
    prediction finds them)."""
    c.execute("ALTER TABLE images ADD COLUMN faces TEXT")


def _add_actions(c: sqlite3.Connection) -> None:
    """Schema 3 -> 4: the edits made on each image (its active seconds are kept; no count of
    edits was kept before, so it starts at 0)."""
    c.execute("ALTER TABLE images ADD COLUMN actions INTEGER NOT NULL DEFAULT 0")


# MIGRATIONS[v] upgrades a store from schema v to v + 1, inside a transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _add_label_provenance,
    2: _add_faces,
    3: _add_actions,
}


@dataclass
class OpenedStore:
    """A connection to a sound, current store.

    Attributes:
        conn: the connection (autocommit; transactions are explicit).
        recovering: the rows come from a rebuilt store or an older backup, so the label files
            must be reconciled as a recovery.
        note: what was done to get here, for the annotator; None when nothing was.
    """

    conn: sqlite3.Connection
    recovering: bool = False
    note: str | None = None


def connect(db_path: Path, recover: bool = False) -> OpenedStore:
    """Open the store for writing, restoring a lost one, or a damaged one when ``recover``.

    Raises:
        DamagedStoreError: damaged and not ``recover``; the message says what recovery does.
        ProjectError: written by a newer app, or it cannot be opened at all.
    """
    store = db_path.parent
    note: str | None = None
    recovering = False
    if not db_path.exists() or db_path.stat().st_size == 0:
        # Said plainly: a store that vanished was deleted or moved by something outside the app.
        gone = "was empty" if db_path.exists() else f"({DB_NAME}) was missing (deleted or moved)"
        if db_path.exists() or any(Path(f"{db_path}{s}").exists() for s in ("-wal", "-shm")):
            store_guard.move_store_aside(db_path, "empty")
        how = _restore_from_backup(db_path)
        recovering = how is not None or any(store.joinpath(LABELS_DIR).rglob("*.png"))
        if recovering:
            note = f"The project store {gone}; it was {how or 'rebuilt from the label files'}"
    try:
        conn = _connect_once(db_path)
    except DamagedStoreError as exc:
        if not recover:
            best = store_guard.newest_sound_backup(store)
            source = (
                f"the backup of {store_guard.describe_backup(best)} and the label files"
                if best
                else "the label files"
            )
            raise DamagedStoreError(
                f"{exc}. Your label files are safe. Recover the store to go on: the damaged file "
                f"is kept as {DB_NAME}.damaged-<time>, and the store is rebuilt from {source}."
            ) from None
        aside = store_guard.move_store_aside(db_path, "damaged")
        restored = _restore_from_backup(db_path)
        how = restored or "rebuilt from the label files"
        note = f"The project store was damaged (kept as {aside.name}) and {how}"
        recovering = True
        conn = _connect_once(db_path)
    return OpenedStore(conn, recovering, note)


def connect_read_only(db_path: Path, immutable: bool = False) -> sqlite3.Connection:
    """Open a current store for reading only (no lock, no writes, no migration).

    A store on a read-only disk is read too: SQLite cannot make the ``-shm`` file a WAL store
    needs there, so a store closed cleanly (no ``-wal`` left, everything in the main file) is
    read as immutable. ``immutable``: read it so at once (a folder known not to be written:
    not even the ``-shm`` file is made).

    Raises:
        DamagedStoreError: the file is damaged or not a project store.
        ProjectError: no store, a newer schema, or changes in ``-wal`` that cannot be read on a
            read-only disk.
    """
    if not db_path.is_file() or db_path.stat().st_size == 0:
        raise ProjectError(f"{db_path.parent.parent}: no project store to read ({db_path} not found)")
    try:
        if immutable:
            raise sqlite3.OperationalError("asked to read it as immutable")
        conn, row = _read_schema_row(db_path, mode="ro")
    except sqlite3.OperationalError as exc:
        if os.access(db_path.parent, os.W_OK) and not immutable:
            raise DamagedStoreError(f"{db_path}: cannot read the project store ({exc})") from None
        wal = Path(f"{db_path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise ProjectError(
                f"{db_path} is on a read-only disk, with changes still in {wal.name} that cannot "
                "be read there; open the project once where it can be written (that merges "
                "them), then read it here"
            ) from None
        try:
            conn, row = _read_schema_row(db_path, mode="ro", immutable="1")
        except sqlite3.DatabaseError as exc:
            raise DamagedStoreError(f"{db_path}: cannot read the project store ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise DamagedStoreError(f"{db_path}: cannot read the project store ({exc})") from None
    try:
        _check_schema(conn, db_path, row, migrate=False)
    except BaseException:
        conn.close()
        raise
    return conn


def _read_schema_row(db_path: Path, **params: str) -> tuple[sqlite3.Connection, tuple | None]:
    """Connect with URI parameters and read the schema version row (closed again on failure)."""
    conn = sqlite3.connect(
        store_guard.sqlite_uri(db_path, **params), uri=True, timeout=10.0, check_same_thread=False
    )
    try:
        return conn, conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except BaseException:
        conn.close()
        raise


def _connect_once(db_path: Path) -> sqlite3.Connection:
    try:
        store_guard.create_with_umask(db_path)
        conn = sqlite3.connect(db_path, timeout=10.0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise ProjectError(f"{db_path}: cannot open the project store ({exc})") from None
    try:
        _init(conn, db_path)
    except BaseException:
        conn.close()
        raise
    return conn


def _init(conn: sqlite3.Connection, db_path: Path) -> None:
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives an app crash or kill (what autosave must survive) cheaply.
        conn.execute("PRAGMA synchronous=NORMAL")
        check = conn.execute("PRAGMA quick_check").fetchone()
        if not check or check[0] != "ok":
            raise sqlite3.DatabaseError(str(check[0] if check else "no answer"))
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        row = (
            conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if has_meta
            else None
        )
    except sqlite3.DatabaseError as exc:
        raise DamagedStoreError(
            f"{db_path} is damaged or not a FaceParse project store ({exc})"
        ) from None
    if not has_meta:
        with _tx(conn, db_path) as c:
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            c.execute("INSERT INTO meta VALUES ('created_at', ?)", (repr(time.time()),))
        return
    _check_schema(conn, db_path, row, migrate=True)


def _check_schema(
    conn: sqlite3.Connection, db_path: Path, row: tuple | None, migrate: bool
) -> None:
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
    if not migrate and version < SCHEMA_VERSION:
        raise ProjectError(
            f"{db_path}: schema version {version}; open the project once for writing to upgrade it"
        )
    while version < SCHEMA_VERSION:
        migrate_fn = MIGRATIONS.get(version)
        if migrate_fn is None:
            raise ProjectError(f"{db_path}: no migration from schema version {version}")
        with _tx(conn, db_path) as c:
            migrate_fn(c)
            c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version + 1),))
        version += 1


@contextmanager
def _tx(conn: sqlite3.Connection, db_path: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise ProjectError(f"{db_path}: cannot set up the project store ({exc})") from None


def _restore_from_backup(db_path: Path) -> str | None:
    """Put the newest sound backup in place of a lost store.

    Returns:
        "restored from its backup of <time>" and what may be lost since, or None (no backup).
    """
    best = store_guard.newest_sound_backup(db_path.parent)
    if best is None:
        return None
    tmp = db_path.with_name(db_path.name + ".restore.tmp")
    shutil.copyfile(best, tmp)
    os.replace(tmp, db_path)
    when = store_guard.describe_backup(best)
    return f"restored from its backup of {when}; {_lost_since(best, db_path.parent)}"


def _lost_since(backup: Path, store: Path) -> str:
    """What a restore from ``backup`` may lose: label files are written apart from the store,
    so only what lives in the store alone and changed after the backup."""
    made = store_guard.backup_time(backup)
    labels = store / LABELS_DIR
    newer = [] if made is None else [p for p in labels.rglob("*.png") if p.stat().st_mtime > made]
    if not newer:
        return f"no label was saved after it{NOTHING_LOST}"
    return (
        f"{len(newer)} label file(s) saved after it are read back from disk, but anything else "
        "changed after it (statuses, review marks, time spent) may be lost"
    )


NOTHING_LOST = ", so no labelling work is lost"  # said only when no label file is gone either


def recovery_text(
    note: str | None, hand: list[str], prelabels: list[str], gone: Sequence[str] = ()
) -> str | None:
    """One sentence for the annotator about what opening recovered, or None.

    Args:
        note: what was done to the store (restored, rebuilt), or None.
        hand, prelabels: relpaths whose label file the store did not know of, by who made it.
        gone: relpaths whose label file the store recorded is gone (deleted outside the app).
    """
    if note is None and not hand and not gone:
        return None
    if gone and note:
        note = note.replace(NOTHING_LOST, "")
    parts = [note or ("Label files the project store did not know of were found" if hand else "")]
    if hand:
        parts.append(
            f"{len(hand)} hand-made label(s) were kept and marked for review"
            if note
            else f"{len(hand)} hand-made label(s) were kept, never to be replaced by a pre-label"
        )
    if prelabels:
        parts.append(f"{len(prelabels)} pre-label(s) were recognised")
    if gone:
        parts.append(
            f"{len(gone)} label file(s) the store recorded are gone from {LABELS_DIR}/ (deleted "
            f"outside the app?): {name_list(gone)}; those photos are unfinished again (restore the files "
            "from a backup of your own and reopen the project to get them back)"
        )
    text = "; ".join(filter(None, parts))
    return text[0].upper() + text[1:] + "."
