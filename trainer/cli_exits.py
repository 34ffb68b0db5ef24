"""How a ``faceparse`` command ends when it does not succeed: a file the system refused, a
signal, and what an interrupted training left behind."""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from trainer.errors import FaceParseError

# The disk or the user's quota is full: never a bug, whether or not a file is named.
FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, *FULL_DISK}


def os_error_line(exc: OSError) -> str:
    """One line for a file the system refused: the user's path (the folder, for the temporary
    file of an atomic write) and what to do."""
    if exc.filename is None:  # a buffered write (a log line) meets a full disk
        return f"cannot write the output ({exc.strerror}); free some space"
    path = Path(exc.filename)
    if path.name.startswith(".") and path.name.endswith((".tmp", ".lock")):
        path = path.parent  # `.<name>.<random>.tmp`, `.<command>.lock`: the user never named it
    if exc.errno in _WRITE_ERRNOS:
        hint = "free some space" if exc.errno in FULL_DISK else "choose a folder you can write to"
        return f"{path}: cannot write here ({exc.strerror}); {hint}"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # mkdir of an output folder met a file
        return f"{path}: a file stands where a folder is needed; give a folder path"
    return f"{path}: {exc.strerror}"


def refuse_unwritable(path: str | os.PathLike[str]) -> None:
    """Stop at once, before a long computation, when the file ``path`` could not be written:
    makes its folder and a temporary file in it, then removes that file.

    Raises:
        OSError: the folder is read-only, a file stands where it should be, the disk is full
            (:func:`os_error_line` names the folder).
    """
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{Path(path).name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(probe)


def pretrain_kept(
    out_dir: str, started: float, resume: str | None, how: str = "interrupted"
) -> str:
    """How to go on after a stage-1 run ``how`` stopped after ``started`` (a ``time.time()``),
    in one line: its own newest checkpoint (``pretrain_last``, or a step file written after
    it, as when the disk filled between the two), or else the one it resumed from (never an
    earlier run's checkpoint left in the folder)."""
    from trainer.checkpoint import read_metadata
    from trainer.run_files import RunFiles

    files = RunFiles(Path(out_dir), "pretrain")
    newest: tuple[int, Path] | None = None
    for path in [files.last, *(p for _, p in files.step_checkpoints())]:
        try:
            step = read_metadata(path).get("step") if path.stat().st_mtime >= started else None
        except (OSError, FaceParseError):
            continue
        if isinstance(step, int) and (newest is None or step > newest[0]):
            newest = (step, path)
    if newest is not None:
        return f"{how} at step {newest[0]}; continue with --resume {newest[1]}"
    if resume is not None:
        return f"{how} before its first checkpoint; continue with --resume {resume}"
    return f"{how} before its first checkpoint"


def finetune_kept(out_dir: str, started: float) -> str:
    """What a fine-tuning interrupted after ``started`` (a ``time.time()``) left in its folder,
    in one line (an earlier run's checkpoints there are not this run's)."""
    from trainer.checkpoint import read_metadata
    from trainer.run_files import RunFiles

    files = RunFiles(Path(out_dir), "finetune")
    try:
        ours = min(files.last.stat().st_mtime, files.best.stat().st_mtime) >= started
        last, best = read_metadata(files.last), read_metadata(files.best)
    except (OSError, FaceParseError):
        ours = False
    if not ours:
        return "interrupted before its first checkpoint"
    return (
        f"interrupted at step {last.get('step')} (epoch {last.get('epoch')}); kept "
        f"{_best_epoch(files.best, best)} and {files.last}"
    )


def finetune_best_kept(out_dir: str, started: float) -> str | None:
    """The best checkpoint a fine-tuning stopped after ``started`` wrote (a full disk stopped
    it before its last one), in words, or None when it wrote none."""
    from trainer.checkpoint import read_metadata
    from trainer.run_files import RunFiles

    best = RunFiles(Path(out_dir), "finetune").best
    try:
        return _best_epoch(best, read_metadata(best)) if best.stat().st_mtime >= started else None
    except (OSError, FaceParseError):
        return None


def _best_epoch(path: Path, meta: dict[str, Any]) -> str:
    score = (meta.get("metrics") or {}).get("mean_f1")
    scored = f", mean F1 {100 * score:.2f}%" if isinstance(score, float) else ", not validated"
    return f"{path} (epoch {meta.get('epoch')}{scored})"


def stop_on_sigterm() -> signal.Handlers | Any:
    """Make SIGTERM (``kill``, a cluster's preemption, ``docker stop``) stop a command as Ctrl+C
    does: a training writes its resumable checkpoint and says how to go on. Returns the handler
    it replaced (None off the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
