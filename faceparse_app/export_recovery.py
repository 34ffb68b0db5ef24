"""What an export killed midway leaves beside its folder, put back by the next export into it.

An export builds ``.NAME.partial-*`` beside the folder NAME, moves the user's own files of an
earlier export (those it did not write) into it, and publishes it with two renames: the earlier
export to ``.NAME.old-*/export``, then the new one to NAME. A kill between those steps leaves the
earlier export, or the user's files, in the hidden folders. Before it writes anything, the next
export into NAME (one at a time: :func:`one_export_at_a_time`) puts back whatever those folders
hold, so a killed export never costs a file it did not write.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from faceparse_app.store_guard import ProjectError, write_error

log = logging.getLogger(__name__)


@contextmanager
def one_export_at_a_time(out: Path) -> Iterator[None]:
    """Hold ``.NAME.export-lock`` beside ``out`` for one export (its parent folders are made
    first): a second export into the same folder (the CLI while a window exports) is refused, so
    the leftovers :func:`put_back` finds are never a running export's own."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, out, "the export") from None
    lock = FileLock(str(out.parent / f".{out.name}.export-lock"), is_singleton=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ProjectError(f"another export into {out} is running; wait for it to finish") from None
    except OSError as exc:  # a read-only parent: the export itself will say why it cannot write
        log.debug("no export lock beside %s: %s", out, exc)
        yield
        return
    try:
        yield
    finally:
        # Removed while still held, so nothing is left beside the export: every export tries
        # the lock without waiting, so no one can be waiting on this file to take it next.
        Path(lock.lock_file).unlink(missing_ok=True)
        lock.release()


def _leftovers(parent: Path, name: str, kind: str) -> list[Path]:
    """The ``.NAME.<kind>-XXXXXXXX`` folders beside NAME (``make_temp_dir``'s 8-character
    suffix), matched literally: a name like ``faces[v2]`` is no glob pattern, and another
    folder's leftovers (``.faces.partial-x.partial-...``) never match."""
    pattern = re.compile(re.escape(f".{name}.{kind}-") + r"[a-z0-9_]{8}")
    return sorted(p for p in parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir())


def put_back(out: Path, manifest_name: str) -> list[str]:
    """Undo what an export killed midway left beside ``out``: the earlier export goes back to
    ``out`` if it is missing, and the user's files carried into an unfinished export go back
    into ``out`` (one written there again since keeps its place; the one put back is named
    ``NAME.recovered``); then the hidden folders are removed, as is an unfinished export killed
    before its manifest was written (it holds only the faces it wrote). An unfinished export
    whose manifest is there but cannot be read is kept, and a warning says where.

    Returns:
        the paths (relative to ``out``) of the user's files put back.
    """
    parent, name = out.parent, out.name
    if not parent.is_dir():
        return []
    for old in _leftovers(parent, name, "old"):
        earlier = old / "export"
        if earlier.is_dir() and not out.exists():
            os.replace(earlier, out)  # killed between the two renames: the earlier export returns
            log.warning("an interrupted export is undone: %s is back", out)
        # Else the new export is in place and the earlier one holds only files of ours (the
        # user's were carried into the new one first).
        shutil.rmtree(old, ignore_errors=True)
    restored: list[str] = []
    for partial in _leftovers(parent, name, "partial"):
        if not os.path.lexists(partial / manifest_name):
            # Killed while writing the faces: the manifest (and its folder entry) is on disk
            # before the first of the user's files is moved in, so this holds only our copies.
            log.info("removing %s, an export killed before it moved anything of yours", partial)
            shutil.rmtree(partial, ignore_errors=True)
            continue
        back = _carried_back(partial, out, manifest_name)
        if back is None:
            log.warning("%s is what an interrupted export left, and its manifest cannot be read: "
                        "kept as it is; look in it for files of %s", partial, out)  # fmt: skip
            continue
        restored += back
        shutil.rmtree(partial, ignore_errors=True)
    if restored:
        log.warning("an interrupted export is undone: %d of your files are back in %s", len(restored), out)
    return restored


def _carried_back(partial: Path, out: Path, manifest_name: str) -> list[str] | None:
    """Move what an unfinished export carried over (whatever in ``partial`` its manifest does
    not list: files, links, whole folders) back into ``out``, looking into a folder that is in
    both; a file written again in ``out`` meanwhile keeps its place and the one put back is
    named ``NAME.recovered``. None when the manifest cannot be read (it is written, and synced,
    before anything is carried)."""
    try:
        ours = set(json.loads((partial / manifest_name).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ours.add(manifest_name)
    ours_dirs = folders_of(ours)
    back: list[str] = []

    def visit(folder: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = prefix + entry.name
            if rel in ours:
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir and (rel in ours_dirs or (out / rel).is_dir() and not (out / rel).is_symlink()):
                visit(Path(entry.path), rel + "/")
                continue
            target = out / rel
            if os.path.lexists(target):
                target = _free_name(out / f"{rel}.recovered")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(entry.path, target)
            back.append(target.relative_to(out).as_posix())

    visit(partial, "")
    return back


def folders_of(relpaths: Iterable[str]) -> set[str]:
    """Every folder that holds one of these '/'-separated relpaths (``a/b/c`` -> ``a``, ``a/b``)."""
    return {rel.rsplit("/", k)[0] for rel in relpaths for k in range(1, rel.count("/") + 1)}


def _free_name(path: Path) -> Path:
    """``path``, or ``path.2``, ``path.3``... : the first name not taken."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
