"""Bringing a project store in line with its folder: the images on disk and the label files.

``scan_images``: new images are added, moved ones relinked by content hash (their label follows,
also onto a name another moved image left: renumbered or swapped files), deleted ones flagged
missing, changed ones re-hashed.

``reconcile_labels``: every label file is checked against what the store last wrote there (its
sha256, size and mtime). A file the store did not write is the annotator's: it is never given to
a pre-label again. This is what makes a kill between the label write and the row update, a row
update lost to a full disk, and a lost or damaged store safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from faceparse_app.project_moves import (
    FRESH_START,
    free_aside,
    label_now,
    match_moves,
    match_reencoded,
    misfit_aside,
    move_files,
    put_aside,
    shown_name,
    yielded,
)
from faceparse_app.store_guard import ProjectError, prelabel_mark
from trainer.data.folders import list_images
from trainer.data.imageio import read_image
from trainer.errors import ImageReadError

if TYPE_CHECKING:
    from faceparse_app.project import Project

log = logging.getLogger(__name__)

FINISHED = frozenset({"labeled", "reviewed"})
# The columns of an image row that :func:`changed_file` reads, in its order.
CHANGE_COLUMNS = (
    "relpath, id, content_hash, size_bytes, mtime_ns, missing, status, label_size, label_mtime_ns"
)
UNTOUCHED = frozenset({"new", "pre-labeled"})
# The label-map folders of LaPa's and CelebAMask-HQ's layouts, each beside an images/ folder.
DATASET_LABEL_FOLDERS = ("labels", "masks")


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
        gone: the missing ones that were there at the last scan and held the annotator's work
            (not "new" or "pre-labeled"): what the user is told about, once.
        replaced: relpaths of labeled or started images whose file is now another picture (its
            label, made for the old one, is kept and marked for review; see :func:`changed_file`).
        dataset_labels: folder relpath -> number of label maps of a dataset's layout found new
            there and not taken as photos (:func:`dataset_label_folder`).
        reencoded: (old, new) relpaths of photos saved in another format under their name (their
            label followed, for review when a person made it; not in ``moved``).
        set_aside: (relpath, where its label is kept) of labeled or started photos replaced by a
            picture of another size: the label cannot fit it, so it is kept aside and the photo
            starts again from a pre-label (not in ``replaced``).
    """

    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    dataset_labels: dict[str, int] = field(default_factory=dict)
    reencoded: list[tuple[str, str]] = field(default_factory=list)
    relinked: dict[str, str] = field(default_factory=dict)  # every row's old relpath -> new
    set_aside: list[tuple[str, Path]] = field(default_factory=list)


@dataclass
class LabelReport:
    """What :func:`reconcile_labels` changed.

    Attributes:
        hand: relpaths whose label file is hand work the store did not know of.
        prelabels: relpaths whose label file is an untouched pre-label the store did not know of.
        gone: relpaths whose recorded label file was deleted.
    """

    hand: list[str] = field(default_factory=list)
    prelabels: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)


def scan_images(project: Project) -> ScanReport:
    """See :meth:`Project.scan`."""
    from faceparse_app.project import file_hash_or_none, image_size

    root = project.root
    report = ScanReport()
    on_disk = {p.relative_to(root).as_posix(): p for p in list_images(root)}
    rows = {r[0]: r for r in project.query(f"SELECT {CHANGE_COLUMNS} FROM images")}
    now = time.time()
    updates: list[tuple[str, tuple]] = []
    # Hashing happens outside any transaction: transactions stay short.
    vacated: dict[str, list[tuple]] = {}  # content hash -> rows whose picture left their name
    unclaimed: list[tuple[str, str]] = []  # (relpath, hash) of files that are not their row's
    changes: dict[str, FileChange] = {}
    stats: dict[str, os.stat_result] = {}
    for relpath in list(on_disk):
        try:
            stats[relpath] = on_disk[relpath].stat()
        except OSError as exc:  # vanished or unreadable since the listing: not fatal
            log.warning("skipping %s: %s", relpath, exc)
            del on_disk[relpath]
    for relpath, row in rows.items():
        if relpath not in on_disk:
            vacated.setdefault(row[2], []).append(row)
            continue
        stat = stats[relpath]
        if row[5]:
            updates.append(("UPDATE images SET missing=0, updated_at=? WHERE id=?", (now, row[1])))
        if (stat.st_size, stat.st_mtime_ns) != (row[3], row[4]):
            change = changed_file(on_disk[relpath], stat, row)
            if change is None:
                report.unreadable.append(relpath)
                continue
            changes[relpath] = change
            if change.digest != row[2]:  # another picture: maybe renamed here, its own moved on
                vacated.setdefault(row[2], []).append(row)
                unclaimed.append((relpath, change.digest))
    found: dict[str, tuple[str, tuple[int, int]]] = {}
    for relpath in sorted(set(on_disk) - set(rows)):
        aside = dataset_label_folder(root, relpath)
        if aside is not None:  # a photo already listed from there stays (rows above)
            report.dataset_labels[aside] = report.dataset_labels.get(aside, 0) + 1
            continue
        digest = file_hash_or_none(on_disk[relpath])
        if digest is None:
            report.unreadable.append(relpath)
            continue
        size = image_size(on_disk[relpath])
        if size is None:
            report.unreadable.append(relpath)
            size = (0, 0)
        found[relpath] = (digest, size)
        unclaimed.append((relpath, digest))
    held = {relpath: rows[relpath][2] for relpath in changes}
    claims = match_moves(vacated, unclaimed, held)
    moving = {row[0]: relpath for relpath, row in claims.items()}
    # A name another known picture took whose own picture is nowhere: its row gives it up,
    # kept missing under a hidden name with its label (project_moves).
    aside = {free_aside(project, rows[p], p): rows[p] for p in yielded(claims, held)}
    # A photo saved in another format under its name (a.png -> a.jpg, same size): its label
    # follows, for review like a picture replaced under its name.
    gone = [r for rs in vacated.values() for r in rs if r[0] not in on_disk and r[0] not in moving]
    new = {p: found[p][1] for p in found if p not in claims}
    sizes = {i: (w, h) for i, w, h in project.query("SELECT id, width, height FROM images")} if gone and new else {}
    reencoded = match_reencoded(gone, new, sizes)
    claims.update(reencoded)
    moving.update({row[0]: relpath for relpath, row in reencoded.items()})
    for relpath, change in changes.items():
        if relpath in moving or relpath in claims:
            continue  # its picture is under another name now, or nowhere: the row goes
        updates.append(change.update)
        if change.size == (0, 0):
            report.unreadable.append(relpath)
        kept = misfit_aside(project, relpath, change.size) if change.replaced else None
        if kept is not None:
            updates.append((FRESH_START, (change.update[1][-1],)))
            report.set_aside.append((relpath, kept))
        elif change.replaced:
            log.warning("%s is another picture since it was labeled; its label awaits a look", relpath)
            report.replaced.append(relpath)
    moves: list[tuple[str, tuple]] = []
    for relpath, row in sorted(claims.items()):
        stat = stats[relpath]
        size = found[relpath][1] if relpath in found else changes[relpath].size
        # Its old name is first let go of: another row may be moving onto it.
        updates.insert(0, ("UPDATE images SET relpath=? WHERE id=?", (f"\0moving/{row[1]}", row[1])))
        moves.append(
            (
                "UPDATE images SET relpath=?, size_bytes=?, mtime_ns=?, width=?, height=?, "
                "missing=0, updated_at=? WHERE id=?",
                (relpath, stat.st_size, stat.st_mtime_ns, size[0], size[1], now, row[1]),
            )
        )
        report.relinked[row[0]] = relpath
        if relpath in reencoded:
            moves.append(reencoded_update(row, found[relpath][0], now))
            report.reencoded.append((shown_name(row[0]), relpath))
        elif shown_name(row[0]) != relpath:  # else a gone photo back under its own name: no rename
            report.moved.append((shown_name(row[0]), relpath))
    for relpath, row in aside.items():
        updates.insert(0, ("UPDATE images SET relpath=?, missing=1, updated_at=? WHERE id=?", (relpath, now, row[1])))
        report.missing.append(row[0])
        if row[6] not in UNTOUCHED:
            report.gone.append(row[0])
    updates.extend(moves)
    # Its label and its own landmarks (an import's) follow it, unless a scan killed before its
    # transaction moved them already: moved again, swapped labels would cross back.
    pairs: list[tuple[Path, Path]] = []
    stamps = {row[1]: (row[7], row[8]) for row in [*claims.values(), *aside.values()] if row[7] is not None}
    moving_stamps = set(stamps.values())
    for relpath, row in [*claims.items(), *aside.items()]:
        label = project.label_file(relpath)
        now_at = label_now(project.label_file(row[0]), label, stamps.get(row[1]), moving_stamps)
        if now_at != label:
            pairs += [(now_at, label), (project.landmarks_file(row[0]), project.landmarks_file(relpath))]
    relinked = move_files(pairs, "scan", project.labels_dir)  # all or none: ProjectError
    left = {relpath for relpath in moving if relpath in changes}  # another picture is there now
    for relpath in sorted((set(found) | left) - set(claims)):  # a picture new to the project
        stat = stats[relpath]
        digest, size = found.get(relpath) or (changes[relpath].digest, changes[relpath].size)
        updates.append(
            (
                "INSERT INTO images (relpath, content_hash, size_bytes, mtime_ns, width, height, "
                "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'new', ?, ?)",
                (relpath, digest, stat.st_size, stat.st_mtime_ns, size[0], size[1], now, now),
            )
        )
        report.added.append(relpath)
    report.added.sort()
    for candidates in vacated.values():
        for row in candidates:
            if row[0] in moving or row[0] in on_disk:
                continue  # moved, or stays as another picture under its name
            if not row[5]:
                updates.append(("UPDATE images SET missing=1, updated_at=? WHERE id=?", (now, row[1])))
                if row[6] not in UNTOUCHED:  # the annotator's work, not a model's
                    report.gone.append(row[0])
            report.missing.append(shown_name(row[0]))
    report.missing.sort()
    report.gone.sort()
    if updates:
        try:
            with project.transaction() as c:
                for sql, args in updates:
                    c.execute(sql, args)
        except BaseException:
            with contextlib.suppress(ProjectError):  # else left where the next scan finds it
                move_files([(dst, src) for src, dst in relinked], "undo", project.labels_dir)
            raise
    for relpath, kept in report.set_aside:  # after the rows: a kill before leaves it hand work
        put_aside(project, relpath, kept)
    for relpath in report.missing:
        log.warning("%s is missing from the project folder", relpath)
    return report


def reencoded_update(row: tuple, digest: str, now: float) -> tuple[str, tuple]:
    """The row of a photo saved in another format: its picture's new hash, and the label made
    from the old file marked for review (a finished photo in progress again), as
    :func:`changed_file` does for another picture under the name; a model's is predicted again."""
    status = {"pre-labeled": "new", "labeled": "in_progress", "reviewed": "in_progress"}.get(row[6], row[6])
    review = int(row[6] not in UNTOUCHED)
    sql = "UPDATE images SET content_hash=?, status=?, needs_review=MAX(needs_review, ?), faces=NULL WHERE id=?"
    return sql, (digest, status, review, row[1])


def dataset_label_folder(root: Path, relpath: str) -> str | None:
    """The folder (relpath) of a dataset's label maps holding image ``relpath``, else None.

    Only a single-channel ('L' or 'P') PNG directly in ``labels/`` or ``masks/`` beside an
    ``images/`` folder (LaPa's and CelebAMask-HQ's layouts): File → Import labels… takes those in
    as labels. Photos in a ``labels`` folder with no ``images/`` beside it, and colour pictures
    in one, stay photos; the open message names the folders set aside.
    """
    parts = relpath.split("/")
    if len(parts) < 2 or parts[-2] not in DATASET_LABEL_FOLDERS or not relpath.lower().endswith(".png"):
        return None
    if not root.joinpath(*parts[:-2], "images").is_dir():
        return None
    try:
        with Image.open(root / relpath) as im:
            if im.mode not in ("L", "P"):
                return None
    except (OSError, ValueError):
        return None
    return "/".join(parts[:-1])


@dataclass(frozen=True)
class FileChange:
    """How a known image's row follows its file changed on disk (:func:`changed_file`).

    Attributes:
        update: the (sql, args) that records the file as it is now.
        size: its (width, height); (0, 0) when its header cannot be read.
        replaced: another picture now, under a label made for the old one.
        digest: the file's content hash now.
    """

    update: tuple[str, tuple]
    size: tuple[int, int]
    replaced: bool
    digest: str


def changed_file(path: Path, stat: os.stat_result, row: tuple) -> FileChange | None:
    """Re-hash an image file whose size or mtime changed (None: it cannot be read).

    Another picture under the same name (re-exported cropped, swapped with another file) makes
    the faces kept for the old one go (looked for afresh); a label made for the old picture is
    kept but is not trusted: a finished image is in progress again and the label is marked for
    review, so it is neither exported nor taken for the new picture's without a look; a model's
    pre-label of the old picture is predicted again.

    Args:
        row: the image's row, :data:`CHANGE_COLUMNS`.
    """
    from faceparse_app.project import file_hash_or_none, image_size

    digest = file_hash_or_none(path)
    if digest is None:
        return None
    size = image_size(path) or (0, 0)
    status, other = row[6], digest != row[2]
    replaced = other and status not in UNTOUCHED  # started or finished: a label was made
    if other and status == "pre-labeled":
        status = "new"  # the model's label of the old picture: predicted again for this one
    if replaced:
        status = "in_progress" if status in FINISHED else status
    extra = (", faces=NULL" if other else "") + (", needs_review=1" if replaced else "")
    sql = (
        "UPDATE images SET content_hash=?, size_bytes=?, mtime_ns=?, width=?, height=?, status=?, "
        f"updated_at=?{extra} WHERE id=?"
    )
    args = (digest, stat.st_size, stat.st_mtime_ns, size[0], size[1], status, time.time(), row[1])
    return FileChange((sql, args), size, replaced, digest)


def reconcile_labels(project: Project, recovering: bool) -> LabelReport:
    """Check every label file against what the store last wrote there.

    A label file whose size and mtime are the recorded ones is taken as is; any other is hashed.
    One that is not what the store wrote is classified by its pre-label mark (see
    ``store_guard.encode_prelabel_png``):

    - marked, behind a "new" or "pre-labeled" row: our own pre-label (its row update was lost);
      it becomes "pre-labeled" and stays refreshable;
    - unmarked: the annotator's work. It is never handed to a pre-label again. When
      ``recovering`` (the store was rebuilt or restored from a backup) it becomes "labeled,
      needs review"; otherwise (a kill or full disk between the label write and the row update)
      an untouched row becomes "in_progress", and a finished one is flagged for review.

    Args:
        project: the open project (not read-only).
        recovering: the rows come from a rebuilt store or an older backup.
    """
    from faceparse_app.project import file_hash_or_none

    report = LabelReport()
    updates: list[tuple[str, tuple]] = []
    rows = project.query(
        "SELECT id, relpath, status, label_hash, label_source, label_size, label_mtime_ns, "
        "needs_review FROM images WHERE missing=0"
    )
    for image_id, relpath, status, known, source, size, mtime, review in rows:
        path = project.label_file(relpath)
        try:
            stat = path.stat()
        except FileNotFoundError:
            if known is not None:
                report.gone.append(relpath)
                log.warning("the label file of %s was deleted", relpath)
                # A photo whose label is gone is not finished: nothing of it would be exported.
                # The model's can be predicted again ("new"); a person's is work to redo.
                if status == "pre-labeled" or (status in FINISHED and source == "model"):
                    status = "new"
                elif status in FINISHED:
                    status = "in_progress"
                updates.append(
                    (
                        "label_hash=NULL, label_source=NULL, label_size=NULL, "
                        "label_mtime_ns=NULL, status=?",
                        (status, image_id),
                    )
                )
            continue
        except OSError as exc:
            log.warning("cannot read the label file of %s: %s", relpath, exc)
            continue
        if known is not None and (stat.st_size, stat.st_mtime_ns) == (size, mtime):
            continue
        digest = file_hash_or_none(path)
        if digest is None:
            continue
        stamp = "label_hash=?, label_size=?, label_mtime_ns=?"
        seen = (digest, stat.st_size, stat.st_mtime_ns)
        if digest == known or (known is None and source == "model"):
            # Ours (touched by a copy), or a pre-label of a store migrated from schema 1.
            updates.append((stamp, (*seen, image_id)))
            continue
        mark = prelabel_mark(path)
        if mark is not None and status in UNTOUCHED:
            report.prelabels.append(relpath)
            updates.append(
                (
                    f"{stamp}, label_source='model', status='pre-labeled', model_version=?",
                    (*seen, mark, image_id),
                )
            )
            continue
        report.hand.append(relpath)
        if recovering:
            new_status, flag = "labeled", 1
        elif status in UNTOUCHED:
            new_status, flag = "in_progress", int(review)
        else:
            new_status, flag = status, 1 if status in FINISHED else int(review)
        updates.append(
            (
                f"{stamp}, label_source='hand', status=?, needs_review=?",
                (*seen, new_status, flag, image_id),
            )
        )
    if updates:
        now = time.time()
        with project.transaction() as c:
            for sets, args in updates:
                c.execute(
                    f"UPDATE images SET {sets}, updated_at=? WHERE id=?",
                    (*args[:-1], now, args[-1]),
                )
    for relpath in report.hand:
        log.warning("%s: its label file is hand work the store did not know of; kept", relpath)
    return report


def read_photo(path: str | os.PathLike[str]) -> np.ndarray:
    """``read_image`` of a project photo, an empty file said to be empty (see :func:`read_error`)."""
    try:
        return read_image(path)
    except ImageReadError as exc:
        raise read_error(exc, path) from None


def read_error(exc: ImageReadError, path: str | os.PathLike[str]) -> ImageReadError:
    """The error to tell for a photo ``read_image`` could not read: for a file of 0 bytes (a
    copy or download that did not finish) that it is empty, for a file gone that its work is
    kept, and what to do in the app (the reader says only "empty", "file not found"); else
    ``exc`` itself."""
    try:
        if os.stat(path).st_size != 0:
            return exc
    except FileNotFoundError:  # a missing photo clicked in the list: "file not found" said little
        return ImageReadError(
            f"{os.fspath(path)}: the photo is gone from the folder (deleted, renamed or moved away); "
            f"what was labeled on it is kept and comes back with it, under any name: put it back, "
            f"then Rescan folder ({RESCAN_KEY})."
        )
    except OSError:
        return exc
    return ImageReadError(
        f"{os.fspath(path)}: the file is empty (0 bytes), a copy or download that did not "
        f"finish? Copy it into the folder again, then Rescan folder ({RESCAN_KEY})."
    )


RESCAN_KEY = "F5"  # File → Rescan folder


def open_error_text(folder: str | os.PathLike[str], error: Exception) -> str:
    """'Cannot open FOLDER: why', the folder named once though the store's error names it too:
    "/x/gone: folder not found" says 'folder not found', "/x is read-only; ..." 'the folder is
    read-only; ...', and a path inside it ("/x/.faceparse/project.sqlite was written by ...") is
    told relative to it. The store names the folder by its absolute path (a relative one given
    on the command line too), so that is the path looked for, whole, and the one shown."""
    text = str(error)
    given = Path(folder).expanduser()
    for path in dict.fromkeys((os.fspath(given.absolute()), os.fspath(given.resolve()))):
        if text.startswith(f"{path}: "):
            return f"Cannot open {path}: {text[len(path) + 2:]}"
        # The whole path only: never a piece of a longer name ("/x/gone" in "/x/gone2").
        whole = re.compile(re.escape(path) + r"(/|(?=[\s:;,)]|$))")
        if whole.search(text):
            why = whole.sub(lambda m: "" if m.group(1) == "/" else "the folder", text, count=1)
            return f"Cannot open {path}: {why}"
    return f"Cannot open {os.fspath(folder)}: {text}"
