"""How ``faceparse`` commands treat the folder they write: what an earlier training run in a
``--out-dir`` stops, what ``--overwrite`` does with it, one command per folder at a time, and
what a failed command leaves (nothing, in a folder it made)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from trainer.errors import FaceParseError
from trainer.run_files import RunFiles, hold_folder

log = logging.getLogger("trainer.cli")


@contextlib.contextmanager
def run_folder(out_dir: str, stage: str, *, overwrite: bool, resume: str | None) -> Iterator[None]:
    """Wrap a training run of ``stage`` into ``out_dir``: the block runs it.

    In a folder that exists, rank 0 holds the stage's lock from before its checks to the end of
    the run (another run cannot slip in between) and finishes what a killed ``--overwrite``
    left (:meth:`RunFiles.settle_aside`). Then a new run (one not resuming a checkpoint of this
    folder: ``resume`` from another folder is a new run here) stops before an earlier run's
    checkpoints are replaced or mixed with its own (:meth:`RunFiles.what_a_new_run_would_replace`,
    :meth:`RunFiles.what_a_fresh_run_would_spoil`), unless ``overwrite``: they are set aside
    until this run has trained weights, and put back if it ends without. A folder that does not
    exist is made by the run, and removed again should the run fail before writing anything
    there. The other ranks of a torchrun leave the folder to rank 0 and end with it.

    Raises:
        FaceParseError: the folder holds a run that this one must not replace.
    """
    files = RunFiles(Path(out_dir), stage)
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    if not files.out_dir.is_dir():
        try:
            yield
        except BaseException:
            _remove_if_unused(files.out_dir, stage)
            raise
        return
    with files.hold(hand_down=True):
        _say(files.settle_aside())
        if not _resumes_its_own_run(files, resume):
            _make_way(files, overwrite)
        try:
            yield
        finally:
            _say(files.settle_aside())


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold ``folder``'s lock for ``command`` (:func:`hold_folder`: one ``command`` writes a
    folder at a time) while the block writes it; a folder made here is removed again if the
    block fails before writing anything there.

    Raises:
        RunFolderBusy: another ``command`` is writing the folder.
    """
    made = not Path(folder).exists()
    try:
        with hold_folder(folder, command):
            yield
    except BaseException:
        if made:
            _remove_if_unused(Path(folder), command)
        raise


def _remove_if_unused(folder: Path, command: str) -> None:
    """Remove the folder a failed command made, if it holds nothing but the command's lock (a
    mistyped --init should not leave a run folder behind)."""
    lock = folder / f".{command}.lock"
    try:
        if [p.name for p in folder.iterdir()] == [lock.name]:
            lock.unlink()
            folder.rmdir()
    except OSError:
        pass  # someone else's files appeared, or it is gone already: leave it


def refuse_a_missing_resume(resume: str | None) -> None:
    """Say why a ``--resume`` checkpoint is missing when its folder holds a stage-1 log: the
    run was stopped before its first checkpoint (a kill in its first minutes).

    Raises:
        FaceParseError: ``resume`` is missing and its folder holds ``pretrain_log.jsonl``.
    """
    if resume is None or Path(resume).exists():
        return
    files = RunFiles(Path(resume).parent, "pretrain")
    if Path(resume).name == files.last.name and files.find_log().is_file():
        raise FaceParseError(
            f"{resume}: not found: the run in {files.out_dir} stopped before its first checkpoint "
            "(pretrain_last is written every --checkpoint-minutes, and on Ctrl-C); start it "
            "again without --resume"
        )


def _resumes_its_own_run(files: RunFiles, resume: str | None) -> bool:
    """Whether ``resume`` continues the run in the folder (its last or a step file), not a run
    from elsewhere, which would replace the folder's own."""
    return resume is not None and Path(resume).resolve().parent == files.out_dir.resolve()


def _say(line: str | None) -> None:
    if line:
        log.warning("%s", line)


def _make_way(files: RunFiles, overwrite: bool) -> None:
    refusal = files.what_a_new_run_would_replace() or files.what_a_fresh_run_would_spoil()
    if refusal is None:
        return
    if not overwrite:
        raise FaceParseError(refusal)
    # Step checkpoints go too: the new run's would be mixed with (and pruned against) them.
    moved = files.set_aside()
    log.info("--overwrite: %s set aside until this run has trained weights", ", ".join(moved))
