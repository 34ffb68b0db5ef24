"""The files a training run writes into its ``--out-dir``: one naming scheme for both stages.

Every file is ``<stage>_<what>``, ``<stage>`` being ``pretrain`` or ``finetune``, so the two
stages may share a folder::

    <stage>_last.safetensors      the newest state; stage 1's holds the optimizer (``--resume``)
    <stage>_best.safetensors      stage 2: the best validation epoch (the last one without)
    <stage>_step<N>.safetensors   stage 1: periodic checkpoints (``--checkpoint-every``)
    <stage>_log.jsonl             one JSON object per logged step
    <stage>_val.jsonl             stage 2: one JSON object per validation

Runs written before this scheme logged stage 1 to ``metrics.jsonl``: a resumed run moves that
log to its new name and appends to it (:meth:`RunFiles.adopt_legacy_log`).

One run of a stage writes a folder at a time: a run holds ``.<stage>.lock`` (an OS file lock,
released when the process ends however it ends) from before it touches the folder to its end.

A new run told to replace an earlier one (``--overwrite``) first moves the earlier run's files
into ``.<stage>-overwritten/``; they are deleted once the new run has written a trained
checkpoint, and put back if it ends without one (an error, Ctrl-C, or, after a kill, by the next
command into the folder), so the folder never holds one run's checkpoints beside another's logs
(:meth:`RunFiles.set_aside`, :meth:`RunFiles.settle_aside`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import FaceParseError

log = logging.getLogger(__name__)

STAGES = ("pretrain", "finetune")
# What stage 1 logged to before the <stage>_log.jsonl scheme.
LEGACY_PRETRAIN_LOG = "metrics.jsonl"
# In a folder set aside by --overwrite: the names of the files moved there, as JSON.
ASIDE_MANIFEST = "files.json"


class RunFolderBusy(FaceParseError):
    """Another run of the same command is writing the folder."""


# Locks a command holds for the run it starts, (lock file, thread): the run's own hold_folder
# nests inside instead of meeting the lock as another run's.
_HANDED_DOWN: set[tuple[str, int]] = set()


@contextlib.contextmanager
def hold_folder(
    folder: str | os.PathLike[str], command: str, *, hand_down: bool = False
) -> Iterator[None]:
    """Hold ``folder/.<command>.lock`` (an OS file lock, released however the process ends;
    the folder is made if missing) while the block runs: one ``command`` writes a folder at a
    time.

    Args:
        folder: the folder to write.
        command: the command writing it ("pretrain", "finetune", "predict").
        hand_down: a ``hold_folder`` of the same folder and command inside the block, in the
            same thread, shares this hold (the CLI holds the folder across its checks and the
            run they allow, so no other run slips in between); any other meets the lock.

    Raises:
        RunFolderBusy: another ``command`` holds it.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / f".{command}.lock")
    key = (os.path.realpath(path), threading.get_ident())
    if key in _HANDED_DOWN:
        yield
        return
    lock = FileLock(path, is_singleton=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunFolderBusy(
            f"{folder}: another faceparse {command} is writing this folder; wait for it to end "
            "or choose another output folder"
        ) from None
    if hand_down:
        _HANDED_DOWN.add(key)
    try:
        yield
    finally:
        _HANDED_DOWN.discard(key)
        lock.release()


@dataclass(frozen=True)
class RunFiles:
    """The paths of one stage's files in a run folder.

    Args:
        out_dir: the run folder.
        stage: "pretrain" or "finetune".
    """

    out_dir: Path
    stage: str

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    def hold(self, *, hand_down: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold this stage's lock on the folder (made if missing) while the block runs
        (``hand_down``: see :func:`hold_folder`).

        Raises:
            RunFolderBusy: another run of this stage holds it.
        """
        return hold_folder(self.out_dir, self.stage, hand_down=hand_down)

    def _file(self, what: str) -> Path:
        return self.out_dir / f"{self.stage}_{what}"

    @property
    def last(self) -> Path:
        """``<stage>_last.safetensors``: the newest state."""
        return self._file("last.safetensors")

    @property
    def best(self) -> Path:
        """``<stage>_best.safetensors``: the best validation epoch (stage 2)."""
        return self._file("best.safetensors")

    @property
    def log(self) -> Path:
        """``<stage>_log.jsonl``: one JSON object per logged step."""
        return self._file("log.jsonl")

    @property
    def val_log(self) -> Path:
        """``<stage>_val.jsonl``: one JSON object per validation (stage 2)."""
        return self._file("val.jsonl")

    @property
    def checkpoints_glob(self) -> str:
        """The glob pattern of every checkpoint of this stage (last, best and step files)."""
        return f"{self.stage}_*.safetensors"

    def step(self, step: int) -> Path:
        """``<stage>_step<N>.safetensors``: the periodic checkpoint written at ``step``."""
        return self._file(f"step{step}.safetensors")

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """The periodic checkpoints in the folder as (step, path), oldest first."""
        pattern = re.compile(rf"{self.stage}_step(\d+)\.safetensors")
        found = []
        if self.out_dir.is_dir():
            for path in self.out_dir.glob(f"{self.stage}_step*.safetensors"):
                match = pattern.fullmatch(path.name)
                if match:
                    found.append((int(match.group(1)), path))
        return sorted(found)

    def _last_steps(self) -> tuple[int | None, int | None]:
        """(step, total_steps) of ``<stage>_last``; None for what it lacks, or for a file
        that is missing or unreadable as a checkpoint."""
        from trainer.checkpoint import read_metadata

        try:
            meta = read_metadata(self.last) if self.last.is_file() else {}
        except FaceParseError:
            meta = {}
        step, total = meta.get("step"), meta.get("total_steps")
        return (
            step if isinstance(step, int) else None,
            total if isinstance(total, int) else None,
        )

    def what_a_fresh_run_would_spoil(self) -> str | None:
        """Why a new stage-1 run (no ``--resume``) must not start in this folder unless told to
        replace what it holds (``--overwrite``), in one line, or None: an earlier run stopped short of its steps (killed, cancelled), which a fresh
        one would replace at its first save, or an earlier run's step checkpoints, which its
        own would be mixed with (and pruned against)."""
        if self.stage != "pretrain":
            return None
        step, total = self._last_steps()  # an unreadable one is not resumable anyway
        steps = self.step_checkpoints()
        if steps and (step is None or steps[-1][0] > step):
            # Stopped between a step file and pretrain_last (a full disk, a kill): the step
            # file is the newest state.
            stopped = self._stopped_short(steps[-1][1])
            if stopped is not None:
                return stopped
        if step is not None and total is not None and step < total:
            return self._stopped_at(step, total, self.last)
        if steps:
            names = ", ".join(path.name for _, path in steps)
            return (
                f"{self.out_dir} holds an earlier run's step checkpoints ({names}), which a new "
                "run's would be mixed with; start it in another --out-dir, or pass --overwrite "
                "to replace them"
            )
        return None

    def _stopped_short(self, path: Path) -> str | None:
        """The refusal for a run stopped short whose newest checkpoint is ``path``, or None
        when that one finished its steps or cannot be read."""
        from trainer.checkpoint import read_metadata

        try:
            meta = read_metadata(path)
        except FaceParseError:
            return None
        step, total = meta.get("step"), meta.get("total_steps")
        if not (isinstance(step, int) and isinstance(total, int) and step < total):
            return None
        return self._stopped_at(step, total, path)

    def _stopped_at(self, step: int, total: int, path: Path) -> str:
        return (
            f"{self.out_dir} holds a pretraining stopped at step {step} of {total}; "
            f"continue it with --resume {path}, start a new run in another "
            "--out-dir, or pass --overwrite to replace it"
        )

    def what_a_new_run_would_replace(self) -> str | None:
        """Why a new run must not start in this folder unless told to replace what it holds
        (``--overwrite``), in one line, or None: a finished stage-1 run's checkpoints, or any
        fine-tune's checkpoints (stage 2 does not resume: a new run would replace them at its
        first save, hours of training gone by a reused folder name)."""
        kept = [path for path in (self.best, self.last) if path.is_file()]
        if not kept:
            return None
        step, total = self._last_steps()
        if self.stage == "pretrain":
            if step is None or total is None or step < total:
                return None  # stopped short or unreadable: what_a_fresh_run_would_spoil's case
            kept += [path for _, path in self.step_checkpoints()]
            what = f"a finished pretraining ({step} steps) in {', '.join(p.name for p in kept)}"
        else:
            trained = f", trained {step} steps" if step is not None else ""
            if not self.last.is_file():  # killed after a validation: only its best is there
                trained = f", from {self._best_step()}a run that did not finish: no {self.last.name}"
            what = f"a fine-tune's checkpoints ({', '.join(p.name for p in kept)}{trained})"
        return (
            f"{self.out_dir} holds {what}, which a new run would replace; choose another "
            "--out-dir, or pass --overwrite to replace it"
        )

    def _best_step(self) -> str:
        """"step N of " for ``<stage>_best``, or "" when it does not say."""
        from trainer.checkpoint import read_metadata

        try:
            step = read_metadata(self.best).get("step")
        except FaceParseError:
            return ""
        return f"step {step} of " if isinstance(step, int) else ""

    def find_log(self) -> Path:
        """The run's step log: ``<stage>_log.jsonl``, or a stage-1 run's ``metrics.jsonl`` when
        it was written before this scheme and has not been resumed since."""
        legacy = self.out_dir / LEGACY_PRETRAIN_LOG
        if self.stage == "pretrain" and not self.log.exists() and legacy.is_file():
            return legacy
        return self.log

    def adopt_legacy_log(self) -> bool:
        """Move a stage-1 ``metrics.jsonl`` of a run written before this scheme to
        ``pretrain_log.jsonl``, so a resumed run keeps one log. True when a file was moved."""
        legacy = self.out_dir / LEGACY_PRETRAIN_LOG
        if self.stage != "pretrain" or self.log.exists() or not legacy.is_file():
            return False
        os.replace(legacy, self.log)
        log.info(
            "moved %s, the log of a run written before %s, to %s", legacy, self.log.name, self.log
        )
        return True

    # --overwrite: the earlier run waits aside until the new one has trained weights.

    def _aside(self, state: str = "") -> Path:
        """``.<stage>-overwritten`` (set aside, a run going), ``...partial`` (being set aside)
        or ``...restoring`` (being put back)."""
        return self.out_dir / f".{self.stage}-overwritten{state}"

    def run_files(self) -> list[Path]:
        """This stage's checkpoints (last, best and step files) and logs in the folder."""
        found = [p for p in self.out_dir.glob(self.checkpoints_glob) if p.is_file()]
        logs = [self.log, self.val_log, self.out_dir / LEGACY_PRETRAIN_LOG]
        found += [p for p in logs[: 3 if self.stage == "pretrain" else 2] if p.is_file()]
        return sorted(found)

    def set_aside(self) -> list[str]:
        """Move this stage's run files (:meth:`run_files`) into ``.<stage>-overwritten/`` for
        a new run that replaces them; :meth:`settle_aside` ends what this begins. Call it
        holding the folder's lock. Returns the names moved."""
        import json

        from trainer.data.imageio import atomic_write_bytes

        files = self.run_files()
        if not files:
            return []
        partial = self._aside(".partial")
        partial.mkdir()
        names = [p.name for p in files]
        atomic_write_bytes(partial / ASIDE_MANIFEST, json.dumps(names).encode("utf-8"))
        for path in files:
            os.replace(path, partial / path.name)
        os.replace(partial, self._aside())  # all or nothing, as the next command sees it
        return names

    def settle_aside(self) -> str | None:
        """End what :meth:`set_aside` began, however the run it made way for ended: delete the
        earlier run's files once the new run has a trained checkpoint (last or best past step
        0), else put them back in place of the new run's files. Idempotent, so a command
        killed midway is finished by the next one. Call it holding the folder's lock.

        Returns:
            One line for the user when the earlier run was put back, else None.
        """
        if self._aside(".partial").is_dir():  # stopped while setting aside: nothing ran
            return self._put_back(self._aside(".partial"))
        if self._aside(".restoring").is_dir():
            return self._put_back(self._aside(".restoring"))
        aside = self._aside()
        if not aside.is_dir():
            return None
        if self._trained():
            log.info("removing the earlier run's files that this run replaced (%s)", aside)
            shutil.rmtree(aside)
            return None
        os.replace(aside, self._aside(".restoring"))  # decided: a kill midway goes on with it
        return self._put_back(self._aside(".restoring"))

    def _trained(self) -> bool:
        from trainer.checkpoint import read_metadata

        for path in (self.last, self.best):
            try:
                step = read_metadata(path).get("step") if path.is_file() else None
            except (FaceParseError, OSError):
                step = None
            if isinstance(step, int) and step > 0:
                return True
        return False

    def _put_back(self, folder: Path) -> str:
        import json

        try:
            names = json.loads((folder / ASIDE_MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # killed before its manifest was written: moved nothing
            names = [p.name for p in folder.iterdir() if p.name != ASIDE_MANIFEST]
        for path in self.run_files():  # the new run's, unless the earlier one had its name
            if path.name not in names:
                path.unlink()
        for name in names:
            if (folder / name).is_file():
                os.replace(folder / name, self.out_dir / name)
        shutil.rmtree(folder)
        return (
            f"{self.out_dir}: put back the earlier run ({', '.join(names)}) that --overwrite "
            "had set aside: the run meant to replace it ended before its first trained checkpoint"
        )
