"""Noticing files changed under a running app: the project store, its labels folder and lock,
and the label file of the image on screen (Qt-free).

A cleanup script or a sync client may delete ``.faceparse/`` (or only ``project.sqlite``), or
put an older copy of ``project.sqlite`` in its place, while a window has the project open. SQLite
goes on writing to the file it opened, deleted or not, so without a look at the folder every
save would "succeed" into a file nobody will ever read again, and a kill would lose every row
written since (who wrote which label, statuses, time spent). :class:`StoreWatch` compares the
files with those opened (device and inode) at every autosave tick, image switch and close:

- the store gone or replaced: the open store (the newest state) is written back in its place,
  a replacing file kept aside as ``project.sqlite.replaced-<time>``; the lock is taken again;
- the labels folder gone or replaced: every label file the store recorded is checked; those
  gone are named (their rows say so: see ``project_scan.reconcile_labels``);
- the label file of the image on screen gone: it is written again from the label shown.

The annotator is told each time, with what was put back and what is lost.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from faceparse_app import store_guard, store_open
from faceparse_app.project_moves import FRESH_START, misfit_aside, put_aside
from faceparse_app.project_scan import (
    CHANGE_COLUMNS,
    changed_file,
    reconcile_labels,
)
from faceparse_app.scan_texts import kept_text, name_list, renames, replaced_text
from faceparse_app.store_guard import ProjectError, ProjectLockedError, write_error
from faceparse_app.store_open import DB_NAME, MODELS_DIR

if TYPE_CHECKING:
    from faceparse_app.annotation import Annotation
    from faceparse_app.project import Project
    from faceparse_app.store_rows import ImageRecord

log = logging.getLogger(__name__)

Ident = tuple[int, int] | None


def _ident(path: Path) -> Ident:
    """(device, inode) of a file or folder, None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class StoreWatch:
    """What a project's store files were when opened, to notice them changed by another program.

    Args:
        project: the open project (a read-only one is never watched).
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self._checking = False
        self._failing = False  # a repair failed and was said; retried at every check
        # The store put back whose opening failed (the project runs on a copy in memory until
        # a check opens it): its (device, inode), and what had happened to the store.
        self._written: Ident = None
        self._said: tuple[str, str] | None = None
        self._remember()
        # Photos found to be another picture as they opened: id -> the old picture's (W, H).
        self.replaced: dict[int, tuple[int, int, Path | None]] = {}  # old size, label kept aside
        self._told: set[int] = set()  # photos said changed while on screen
        self._unscanned: dict[int, str] = {}  # photos whose rescan failed: id -> why

    def _remember(self) -> None:
        store = self.project.store_dir
        self.store = _ident(store)
        self.db = _ident(store / DB_NAME)
        self.labels = _ident(self.project.labels_dir)
        self.lock = _ident(store / store_guard.LOCK_NAME)
        self.models = (store / MODELS_DIR).is_dir()

    def check(self, annotation: Annotation) -> None:
        """Compare the store's files with those opened; put back what can be put back and say
        what happened (``annotation.message``). Cheap: a few ``stat`` calls when nothing changed."""
        project = self.project
        if project.read_only or self._checking:
            return
        self._photo_on_screen(annotation)
        store = project.store_dir
        now = (_ident(store), _ident(store / DB_NAME), _ident(project.labels_dir))
        lock_now = _ident(store / store_guard.LOCK_NAME)
        if now + (lock_now,) == (self.store, self.db, self.labels, self.lock) and not self._written:
            if not current_label_gone(annotation):
                return
        self._checking = True
        try:
            self._repair(annotation, now[0] != self.store, now[1], now[2], lock_now)
        except (OSError, sqlite3.Error, ProjectError) as exc:  # a disk full or read-only meanwhile
            # Not remembered as seen: the next check tries again (the open store may be the
            # only copy of the statuses and time spent), and says so once.
            if not self._failing:
                log.exception("cannot put the project store back")
                annotation.message.emit(
                    f"The project store in {project.store_dir} was changed by another program and "
                    f"could not be put back yet ({exc}). Keep FaceParse Studio open: it tries again "
                    "every few seconds, and once there is room on the disk (or the folder is "
                    "writable again) nothing is lost; until then the statuses and time spent are "
                    "kept only in this window.",
                    "error",
                )
            self._failing = True
        else:
            self._failing = False
        finally:
            self._checking = False

    def _repair(
        self, annotation: Annotation, whole: bool, db_now: Ident, labels_now: Ident, lock_now: Ident
    ) -> None:
        project, parts = self.project, []
        store_name, labels_name = project.store_dir.name, project.labels_dir.name
        if whole:
            what, how = f"The project store folder ({store_name})", "deleted"
        elif db_now != self.db:
            what = f"The project store ({DB_NAME})"
            how = "deleted" if db_now is None else "replaced by another file"
        elif labels_now != self.labels:
            what = f"The labels folder ({store_name}/{labels_name})"
            how = "deleted" if labels_now is None else "replaced"
        elif lock_now != self.lock:
            what, how = f"The project's lock file ({store_name}/{store_guard.LOCK_NAME})", "deleted"
        else:
            what, how = "The label file of the photo on screen", "deleted"
        if self._written is not None:  # the store's own story, not that of the copy put back
            what, how = self._said or (what, how)
        if db_now != self.db or self._written is not None:
            self._said = (what, how)
            try:
                aside = self._put_store_back()
            except BaseException:
                # The label on screen, if its file went too, lives only in this window: written
                # back now, not after the store (the annotator may move on before it can be
                # opened; a write that fails keeps it among the unsaved edits).
                if current_label_gone(annotation):
                    write_again(annotation)
                raise
            self.db = _ident(project.store_dir / DB_NAME)  # a retry of what follows keeps it
            kept = (
                f"; the file put in its place was kept as {aside.name} (to use it instead, close "
                f"FaceParse Studio and rename it to {DB_NAME})"
                if aside
                else ""
            )
            parts.append(f"the store was written back from the open project, nothing in it is lost{kept}")
        if lock_now != self.lock:
            parts.append(self._take_lock_again())
        if self.models and not (project.store_dir / MODELS_DIR).is_dir():
            parts.append(
                f"its model versions ({MODELS_DIR}/) are gone: the model in use pre-labels until "
                "you close; then restore that folder from a backup of yours, or train again"
            )
        if current_label_gone(annotation):
            name = annotation.current.relpath
            if write_again(annotation):
                parts.append(f"the label of {name} was saved again from the screen")
            else:  # a disk full, the folder made read-only: said as any failed save
                parts.append(
                    f"the label of {name} could not be written back ({annotation.unsaved()[1]}); it "
                    "stays on screen and in memory, and saving it is retried every few seconds"
                )
        if labels_now != self.labels:
            project.labels_dir.mkdir(parents=True, exist_ok=True)
            gone = reconcile_labels(project, recovering=False).gone
            if gone:
                parts.append(
                    f"{len(gone)} other label file(s) are gone ({name_list(gone)}): restore them "
                    f"from a backup of your own into {project.labels_dir} and reopen the project; "
                    "until then those photos are unfinished"
                )
            annotation.records_changed.emit()
        self._remember()
        self._said = None
        said = "; ".join(filter(None, parts))
        text = (
            f"{what} was {how} by another program while FaceParse Studio had it open (a "
            f"cleanup script, a sync client?){': ' + said if said else ''}."
        )
        log.warning("%s", text)
        annotation.message.emit(text, "warning")

    def _photo_on_screen(self, annotation: Annotation) -> None:
        """Say once that the photo on screen was changed on disk while open (what the canvas
        shows, and the label saved, stay those of the picture as it opened)."""
        rec = annotation.current
        if rec is None or annotation.document is None or rec.id in self._told:
            return
        rows = self.project.query("SELECT size_bytes, mtime_ns FROM images WHERE id=?", (rec.id,))
        try:
            st = os.stat(self.project.image_path(rec))
        except FileNotFoundError:
            how = "deleted from the folder"
        except OSError:
            return
        else:
            if not rows or (st.st_size, st.st_mtime_ns) == tuple(rows[0]):
                return
            how = "changed on disk (another picture under its name?)"
        self._told.add(rec.id)
        annotation.message.emit(
            f"{rec.relpath} was {how} while open: the canvas still shows it as it opened, and "
            "your label is saved for that picture; nothing is lost. Open the photo again (or "
            "Rescan folder, F5) to see what is on disk now.",
            "warning",
        )

    def photo_opened(self, annotation: Annotation, image_id: int) -> ImageRecord:
        """The record of a photo about to open, brought in line with its file first: a file
        changed since the store last saw it (replaced by another program) is hashed again, and
        another picture under a label made for the old one is noted (:meth:`tell_replaced`)."""
        project = self.project
        rec = project.get(image_id)
        self._told.discard(image_id)
        self._unscanned.pop(image_id, None)
        if project.read_only or rec.missing:
            return rec
        path = project.image_path(rec)
        row = project.query(f"SELECT {CHANGE_COLUMNS} FROM images WHERE id=?", (image_id,))[0]
        try:
            stat = path.stat()
        except OSError:
            return rec  # opening it says why
        if (stat.st_size, stat.st_mtime_ns) == (row[3], row[4]):
            return rec
        change = changed_file(path, stat, row)
        if change is None:
            return rec
        if change.digest != row[2] and project.query(
            "SELECT 1 FROM images WHERE content_hash=? AND id<>?", (change.digest, image_id)
        ):
            return self._renamed(annotation, rec)
        kept = misfit_aside(project, rec.relpath, change.size) if change.replaced else None
        with project.transaction() as c:
            c.execute(*change.update)
            if kept is not None:  # its label cannot fit the new picture: kept aside, started again
                c.execute(FRESH_START, (image_id,))
        if kept is not None:
            put_aside(project, rec.relpath, kept)
        if change.replaced:
            log.warning("%s is another picture since it was labeled; its label awaits a look", rec.relpath)
            self.replaced[image_id] = (rec.width, rec.height, kept)
        annotation.records_changed.emit()
        return project.get(image_id)

    def _renamed(self, annotation: Annotation, rec: ImageRecord) -> ImageRecord:
        """The photo's name holds another known picture now: photos were renamed (swapped,
        renumbered) in the folder while the app ran. The folder is scanned first, as File →
        Rescan would, so that each label follows its own picture rather than being taken for the
        new picture's; the record returned is the one now under the name clicked."""
        try:
            report = self.project.scan()
        except (ProjectError, OSError) as exc:  # nothing changed: Rescan (F5) can try again
            # Its row is another picture's: shown, strokes on this one would land in that label.
            self._unscanned[rec.id] = (
                f"it holds another picture of the project now (photos were renamed in the folder), "
                f"and the folder could not be rescanned: {str(exc).rstrip('.')}. Its label is not shown, so that "
                "nothing is painted into another picture's label; Rescan (F5) once that is fixed."
            )
            return rec
        annotation.records_changed.emit()
        now = self.project.find(rec.relpath) or self.project.get(rec.id)
        if rec.relpath in report.replaced:  # overwritten by a moved one (mv 1.jpg 2.jpg)
            self.replaced[now.id] = (rec.width, rec.height, None)
        others = replaced_text([p for p in report.replaced if p != rec.relpath])  # said when opened
        if report.gone:  # a name taken by a moved picture: its own is nowhere (mv 1.jpg 2.jpg)
            others = f"{others} {kept_text(report.gone, 'now')}".lstrip()
        if report.moved:
            annotation.message.emit(
                f"Photos were renamed in the folder while the project was open "
                f"({renames(report.moved)}): the folder "
                f"was rescanned and each label followed its own picture. {others}".rstrip(),
                "warning",
            )
        elif others:
            annotation.message.emit(others, "warning")
        return now

    def refuse_unscanned(self, rec: ImageRecord) -> None:
        """Raise ProjectError when ``rec``'s name holds another known picture and the rescan
        that would have sorted them out failed (:meth:`_renamed`): it is not opened for edits."""
        if rec.id in self._unscanned:
            raise ProjectError(self._unscanned[rec.id])

    def tell_replaced(self, annotation: Annotation, rec: ImageRecord) -> None:
        """Say that the photo just opened is another picture than the one its label was made
        for, and what became of the label (shown for review, or kept aside when it no longer fits)."""
        old = self.replaced.pop(rec.id, None)
        if old is None:
            return
        name = rec.relpath
        if old[2] is not None:  # kept aside when it was found
            label = (
                f"its label, made for the old {old[0]}×{old[1]} picture, cannot fit this "
                f"{rec.width}×{rec.height} one: it is kept as {old[2]}, and {name} starts again "
                "from the model's pre-label"
            )
        elif rec.id in annotation._invalid_label:  # its label is of the old picture's size
            label = (
                f"its label, made for the old {old[0]}×{old[1]} picture, does not fit this "
                f"{rec.width}×{rec.height} one: {name} starts from an empty label, and the old "
                "label file is kept as it is (as .invalid once you edit)"
            )
        else:
            label = (
                "the label shown was made for the old picture: check that it fits this one, then "
                "mark it labeled again (it is in progress and marked for review until then)"
            )
        annotation.message.emit(
            f"{name} was replaced on disk by another picture since its label was saved; {label}.",
            "warning",
        )

    def _put_store_back(self) -> Path | None:
        """Write the open store over whatever is (or is not) at ``project.sqlite`` now and open
        it there; returns where a replacing file was kept, or None.

        The open connection must be closed before the new file opens: SQLite deletes its
        ``-wal`` and ``-shm`` by name as it closes, which would be the new file's by then. So
        it is copied into memory first, and when the file put back cannot be opened (an I/O
        error, a disk full as SQLite makes its ``-wal``) the project goes on in that copy:
        every save still works, and the next check writes it back again (the error raised
        here says so to the annotator)."""
        project = self.project
        db = project.store_dir / DB_NAME
        with project._lock:
            project.labels_dir.mkdir(parents=True, exist_ok=True)
            tmp = db.with_name(db.name + ".rewrite.tmp")
            tmp.unlink(missing_ok=True)
            try:
                store_guard.create_with_umask(tmp)
                target = sqlite3.connect(tmp)
                try:
                    project._conn.backup(target)
                finally:
                    target.close()
                kept = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                project._conn.backup(kept)
            except BaseException:
                tmp.unlink(missing_ok=True)  # half a copy, on a disk that may be full
                raise
            project._conn.close()  # its -wal and -shm (by name) are its own, and go with it
            project._conn = kept  # until the file put back is open
            if db.exists() and _ident(db) == self._written:
                # The copy this watch wrote at a try that could not open it: no other
                # program's file, and no connection has it open now.
                for side in ("", "-wal", "-shm"):
                    Path(f"{db}{side}").unlink(missing_ok=True)
            aside = store_guard.move_store_aside(db, "replaced") if db.exists() else None
            os.replace(tmp, db)
            self._written = _ident(db)
            project._conn = store_open.connect(db).conn
            kept.close()
            self._written = None
            project._writes_since_backup += 1  # the next backup copies the store put back
        return aside

    def _take_lock_again(self) -> str:
        lock = self.project._file_lock
        if not isinstance(lock, store_guard.ProjectLock):
            return ""
        lock.release()
        try:
            lock.acquire()
        except ProjectLockedError as exc:
            log.warning("%s", exc)
            return f"another window took the project meanwhile ({exc}); close one of them"
        except (OSError, ProjectError) as exc:
            return f"the folder's lock could not be taken again ({exc})"
        return "the lock was taken again, so no second window opens the project meanwhile"


def current_label_gone(annotation: Annotation) -> bool:
    """Whether the label file of the image on screen, which the store recorded, is gone."""
    rec, doc = annotation.current, annotation.document
    if rec is None or doc is None or rec.label_source is None or doc.in_stroke:
        return False
    if rec.id in annotation._invalid_label:  # the canvas shows an empty start, not that label
        return False
    try:
        annotation.project.label_path(rec).stat()
    except FileNotFoundError:
        return True
    except OSError:  # there, but not to be looked at now (permissions, a share gone): a save says so
        return False
    return False


def write_again(annotation: Annotation) -> bool:
    """Write the label on screen to its deleted file; True when it is on disk again (else it
    is kept as an unsaved edit, retried, and the annotator told, as by any failed save).

    An unedited label is written as it was: a model's pre-label stays the model's (marked, its
    status kept), so a deletion never turns it into a hand label; edits are saved as any save."""
    from faceparse_app.label_writer import note_not_saved, note_saved
    from trainer.data.imageio import atomic_write_bytes, encode_label_png

    rec, doc, project = annotation.current, annotation.document, annotation.project
    assert rec is not None and doc is not None
    if doc.dirty:
        return annotation.save()
    rec = project.get(rec.id)
    if rec.label_source == "model":
        data = store_guard.encode_prelabel_png(doc.label, rec.model_version or "unknown")
    else:
        data = encode_label_png(doc.label)
    path = project.label_path(rec)
    try:
        atomic_write_bytes(path, data)
        stat = path.stat()
        annotation.current = project.set_label_stamp(rec, data, stat)
    except OSError as exc:
        note_not_saved(annotation, rec.id, doc, write_error(exc, path, f"the label of {rec.relpath}"))
        return False
    except ProjectError as exc:
        note_not_saved(annotation, rec.id, doc, exc)
        return False
    # An earlier try that failed left it among the unsaved edits: closing would offer to lose it.
    note_saved(annotation, rec, doc)
    return True


def label_file_gone(annotation: Annotation, rec: ImageRecord) -> None:
    """The photo ``rec`` opens and its label file, which the store recorded, is gone: its row
    says so (unfinished again: see ``reconcile_labels``) and, for a person's label, the
    annotator is told (a model's pre-label is simply predicted again). A read-only project is
    only looked at: nothing is written, and the photo shows empty."""
    if annotation.project.read_only:
        annotation.message.emit(
            f"The label file of {rec.relpath} is gone from {annotation.project.labels_dir} "
            "(deleted outside the app?): it shows empty here, and this read-only look changes "
            "nothing in the project.",
            "warning",
        )
        return
    reconcile_labels(annotation.project, recovering=False)
    if annotation.current is not None and annotation.current.id == rec.id:
        annotation.current = annotation.project.get(rec.id)
    annotation.records_changed.emit()
    if rec.label_source == "hand":
        annotation.message.emit(
            f"The label file of {rec.relpath} was deleted by another program: {rec.relpath} starts "
            f"from an empty label and is unfinished again. To get the label back, close the "
            f"project, restore {annotation.project.label_path(rec)} from a backup of yours and "
            "open it again.",
            "warning",
        )
