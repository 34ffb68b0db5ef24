"""Which known images a folder scan finds under another name, and moving their files to follow.

A photo is known by its content hash. When it is no longer under its name (the file is gone, or
the name now holds another picture) and its picture is found under another name, its row, label
and landmarks follow it there. The other name may be one the project knows too: files renumbered
in a file manager (3 → 4, 2 → 3, 1 → 2) or two names swapped. A known name is taken over only
when its own picture moves on as well; a picture overwritten in place (``mv 1.jpg 2.jpg``) leaves
``2.jpg`` to its row only when nothing is known of the new picture. When the picture there is a
known one whose own name is gone (``mv 1.jpg 2.jpg``, or a photo deleted and the gap closed by
renumbering), it takes over the name, and the row whose picture is nowhere in the folder gives the
name up: it is kept, missing, under a hidden name (:func:`aside_relpath`), its label with it, and
comes back with its label when its picture does, under any name.

The files move before the store records it; a scan killed in between leaves labels moved and rows
not. The next scan finds each row's label by the size and mtime the store recorded for it (a move
keeps both), so it never moves a label already under its new name a second time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from faceparse_app.store_guard import FULL_ERRNOS, ProjectError

if TYPE_CHECKING:
    from faceparse_app.project import Project

log = logging.getLogger(__name__)


ASIDE = ".gone"  # rows that gave their name up: hidden names, never a photo's (list_images)


def aside_relpath(row_id: int | str, relpath: str) -> str:
    """The name a row gives its name up for: under a hidden folder, unique by its id."""
    return f"{ASIDE}/{row_id}/{relpath}"


def free_aside(project: Project, row: tuple, relpath: str) -> str:
    """:func:`aside_relpath` of ``row`` (relpath, id, …, label_size, label_mtime_ns), with a
    suffix while that name holds another label file: a store rebuilt without its backups
    numbers its rows again, and an earlier row's kept label is never written over. A file with
    this row's own stamp is its label, moved there by a scan killed before its transaction."""
    own, n = (row[7], row[8]), 1
    while True:
        name = aside_relpath(row[1] if n == 1 else f"{row[1]}-{n}", relpath)
        try:
            stat = project.label_file(name).stat()
        except OSError:
            return name
        if (stat.st_size, stat.st_mtime_ns) == own:
            return name
        n += 1


def shown_name(relpath: str) -> str:
    """The name an image is shown and said by: its own, also once it gave that name up."""
    if relpath.startswith(ASIDE + "/"):
        parts = relpath.split("/", 2)
        if len(parts) == 3:
            return parts[2]
    return relpath


def match_moves(
    vacated: Mapping[str, list[tuple]],
    unclaimed: Iterable[tuple[str, str]],
    held: Mapping[str, str],
) -> dict[str, tuple]:
    """Pair the images that left their name with the names that now hold their picture.

    Args:
        vacated: content hash -> rows (relpath first) whose picture is no longer under their name;
            the lists are not changed.
        unclaimed: (relpath, content hash) of the files on disk that are not their row's picture:
            new names, and known names now holding another picture.
        held: the relpaths of ``unclaimed`` that a row holds (the known names) -> the content
            hash of that row's own picture.

    Returns:
        relpath on disk -> the row that moves there. A row moves onto a held name only if that
        name's own row moves too, or its own picture is nowhere in the folder (see
        :func:`yielded`).
    """
    unclaimed = list(unclaimed)
    left = {digest: list(rows) for digest, rows in vacated.items()}
    on_disk = {digest for _, digest in unclaimed}
    claims: dict[str, tuple] = {}
    for relpath, digest in unclaimed:
        rows = left.get(digest)
        if rows:
            claims[relpath] = rows.pop(0)
    while True:
        moving = {row[0] for row in claims.values()}
        blocked = [
            relpath
            for relpath in claims
            if relpath in held and relpath not in moving and held[relpath] in on_disk
        ]
        if not blocked:
            return claims
        for relpath in blocked:  # its own picture stays (overwritten): the name stays its row's
            del claims[relpath]


def match_reencoded(
    gone: Iterable[tuple], new: Mapping[str, tuple[int, int]], sizes: Mapping[int, tuple[int, int]]
) -> dict[str, tuple]:
    """Pair photos gone from their name with new files of the same name in another format and
    the same size (a folder's PNGs saved as JPEG): the label was made for the same pixels.

    Args:
        gone: rows (relpath first, id second) whose file is gone and whose picture is nowhere.
        new: relpath -> (width, height) of the files new to the project, not claimed.
        sizes: row id -> the (width, height) the store recorded.

    Returns:
        new relpath -> the row that follows there; only pairs that are one to one.
    """
    stems: dict[tuple[str, str], list[str]] = {}
    for relpath in new:
        stems.setdefault(_stem(relpath), []).append(relpath)
    rows: dict[tuple[str, str], list[tuple]] = {}
    for row in gone:
        rows.setdefault(_stem(row[0]), []).append(row)
    pairs = {}
    for key, candidates in rows.items():
        files = stems.get(key, [])
        if len(candidates) == 1 and len(files) == 1 and files[0] != candidates[0][0]:
            if sizes.get(candidates[0][1]) == new[files[0]] != (0, 0):
                pairs[files[0]] = candidates[0]
    return pairs


def _stem(relpath: str) -> tuple[str, str]:
    folder, _, name = relpath.rpartition("/")
    return folder, name.rpartition(".")[0].lower() or name.lower()


def yielded(claims: Mapping[str, tuple], held: Mapping[str, str]) -> list[str]:
    """The held names of ``claims`` whose own row stays behind: its picture is nowhere in the
    folder, so the row gives the name up (:func:`aside_relpath`)."""
    moving = {row[0] for row in claims.values()}
    return sorted(relpath for relpath in claims if relpath in held and relpath not in moving)


def invalid_aside(path: Path) -> Path:
    """Where an unusable label file is kept: ``<name>.invalid``, or ``.invalid-2``, … when an
    earlier one is there (it is never written over)."""
    aside, n = path.with_name(path.name + ".invalid"), 2
    while os.path.lexists(aside):
        aside, n = path.with_name(f"{path.name}.invalid-{n}"), n + 1
    return aside


def move_files(
    pairs: Iterable[tuple[Path, Path]], tag: str, labels_dir: Path
) -> list[tuple[Path, Path]]:
    """Move each existing ``src`` to ``dst``, through a temporary name so that names swapped or
    shifted along a chain never overwrite one another; all of them or none.

    Args:
        pairs: (src, dst) paths; a src that does not exist is skipped.
        tag: a word for the temporary names (unique to this call's caller).
        labels_dir: the project's label folder, named in the error.

    Returns:
        The (src, dst) pairs moved.

    Raises:
        ProjectError: a move failed (a full disk, permissions); the files moved are put back
            first, so that no row is recorded where its label is not.
    """
    staged: list[tuple[Path, Path, Path]] = []
    done: list[tuple[Path, Path]] = []
    try:
        for n, (src, dst) in enumerate(pairs):
            if src.exists():
                tmp = src.with_name(f".{src.name}.{tag}-{n}")
                os.replace(src, tmp)
                staged.append((src, tmp, dst))
        for src, tmp, dst in staged:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dst)
            done.append((src, dst))
    except OSError as exc:
        log.warning("could not move a file after its picture (%s); the moves are undone", exc)
        placed = {src for src, _ in done}
        for src, tmp, dst in reversed(staged):  # off the names first: they may be another's src
            if src in placed:
                _put(dst, tmp)
        for src, tmp, _ in staged:
            _put(tmp, src)
        why = "disk full" if exc.errno in FULL_ERRNOS else str(exc)
        raise ProjectError(
            f"could not move the labels of photos renamed in the folder ({why}); nothing was "
            f"changed. Free some disk space or fix the permissions of {labels_dir}, then open the "
            "folder again (or Rescan, F5)."
        ) from None
    return done


def _put(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:  # left under its name: the next scan finds it by its stamp
        log.warning("could not put %s back to %s: %s", src, dst, exc)


def label_now(
    src: Path, dst: Path, stamp: tuple[int, int] | None, moving: set[tuple[int, int]]
) -> Path:
    """Where the label file of a row moving from ``src`` to ``dst`` is now.

    Args:
        src, dst: its label file under the old and the new name.
        stamp: the (size, mtime_ns) the store recorded for it; None when it recorded none.
        moving: the stamps of every row moving: a file with another's is that row's.

    Returns:
        ``dst`` when a scan killed before its transaction already moved it there (or it has
        none: nothing to move), the temporary name it was left under, else ``src`` (also when no
        file matches: a file the store did not write follows its name).
    """
    if stamp is not None:
        for path in (src, dst):
            if _stamp(path) == stamp:
                return path
        for name in (src, dst):  # left under move_files' temporary name by a kill midway
            try:
                temps = [p for p in name.parent.iterdir() if p.name.startswith(f".{name.name}.")]
            except OSError:
                continue
            for path in temps:
                if (
                    path.name.rsplit(".", 1)[-1].startswith(("scan-", "undo-"))
                    and _stamp(path) == stamp
                ):
                    return path
    return dst if _stamp(src) in moving else src  # another's, moved there by a killed scan


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


# A photo whose label was kept aside starts again: no label, the model's pre-label to come.
FRESH_START = (
    "UPDATE images SET status='new', needs_review=0, label_hash=NULL, label_source=NULL, "
    "label_size=NULL, label_mtime_ns=NULL, model_version=NULL WHERE id=?"
)


def misfit_aside(project: Project, relpath: str, size: tuple[int, int]) -> Path | None:
    """Where the label of a photo now another picture goes when it cannot fit the new one (of
    another size); None when it fits, there is none, or it cannot be read (left as it is)."""
    label = project.label_file(relpath)
    try:
        with Image.open(label) as im:
            old = im.size
    except (OSError, ValueError):
        return None
    return invalid_aside(label) if size not in (old, (0, 0)) else None


def put_aside(project: Project, relpath: str, aside: Path) -> None:
    """Keep the label (and the project's landmarks) of ``relpath`` aside as ``aside`` (.invalid)."""
    landmarks = project.landmarks_file(relpath)
    for src, dst in ((project.label_file(relpath), aside), (landmarks, invalid_aside(landmarks))):
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            pass
        except OSError as exc:  # left under its name: the next open takes it for hand work
            log.warning("could not keep %s aside as %s: %s", src, dst, exc)
