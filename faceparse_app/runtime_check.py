"""The pre-label runtime chosen in the background: :class:`RuntimeCheck` finds out whether a model
should run in ONNX Runtime, or in bf16, on this CPU (:mod:`trainer.runtime_choice`) while the
pre-labels go on in float32 torch, and hands over the faster predictor when there is one.

The answer the cache already holds is read in a thread of its own. Any work (exporting a graph,
checking its logits, timing the two runtimes) runs in a process of its own
(``python -m trainer.runtime_choice``) at the lowest priority: it never holds up a pre-label,
and quitting kills it instead of waiting for an export.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

RUNTIME_ENV = "FACEPARSE_RUNTIME"  # "torch": never check (pre-labels always run in torch)
POLL_S = 0.1  # how often the waiting thread looks at the check's process and at cancel

ONNX_TEXT = "ONNX Runtime (chosen on this CPU)"
TORCH_TEXT = "torch (chosen on this CPU)"
BF16_TEXT = "torch bf16 (chosen on this CPU)"


def runtime_setting() -> str:
    """The app's runtime setting: ``$FACEPARSE_RUNTIME`` ("auto" or "torch"), default "auto"."""
    value = os.environ.get(RUNTIME_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "torch"):
        log.warning("%s=%s is not auto or torch; using auto", RUNTIME_ENV, value)
        return "auto"
    return value


def onnxruntime_missing() -> str | None:
    """Why ONNX Runtime cannot be used here (a package is not installed), else None."""
    for name in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
    return None


def child_command(
    checkpoint: Path, cache: Path, threads: int, *, nice: int = 19, watched: bool = True
) -> list[str]:
    """The command that makes the choice in a process of its own: at the lowest priority
    (``nice``), ending if this process goes (``watched``)."""
    command = [
        sys.executable,
        "-m",
        "trainer.runtime_choice",
        str(checkpoint),
        "--cache-dir",
        str(cache),
        "--threads",
        str(threads),
    ]
    command += ["--nice", str(nice)] if nice else []
    return command + (["--parent-pid", str(os.getpid())] if watched else [])


def _pythonpath() -> str:
    # The child imports this very trainer (a source checkout need not be installed).
    here = str(Path(__file__).resolve().parents[1])
    rest = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([here, rest]) if rest else here


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", "replace")


def _last_line(handle: IO[bytes]) -> str:
    lines = [line for line in _read(handle).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


class RuntimeCheck:
    """Chooses the runtime of one model in the background and reports it once.

    Args:
        checkpoint: the model's checkpoint (what the torch predictor was loaded from).
        torch_predictor: the model in torch, already pre-labeling (read here, never run).
        on_done: called once from the check's thread with (the ONNX Runtime predictor to use
            instead, or None to stay in torch; a short text for the status bar). Not called
            when the check is cancelled.
        cache_dir: default :func:`trainer.runtime_choice.user_cache_dir`.
        thread_setup: called first in the check's thread (e.g. to lower its priority: ONNX
            Runtime's threads inherit it).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        torch_predictor: Any,
        on_done: Callable[[Any, str], None],
        cache_dir: str | os.PathLike[str] | None = None,
        thread_setup: Callable[[], None] | None = None,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.torch_predictor = torch_predictor
        self.on_done = on_done
        self.cache_dir = cache_dir
        self.thread_setup = thread_setup
        self.cancelled = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None  # the check's process, once started
        # A daemon thread: quitting never waits for it (its process is killed by cancel()).
        self._thread = threading.Thread(target=self._run, name="runtime-check", daemon=True)

    def start(self) -> RuntimeCheck:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop the check now: its process is killed (not waited for); nothing is reported."""
        self.cancelled.set()
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _run(self) -> None:
        if self.thread_setup is not None:
            self.thread_setup()
        try:
            predictor, text = self._choose()
        except Exception as exc:  # noqa: BLE001 - the check is optional: torch stays
            if self.cancelled.is_set():
                return
            log.warning("pre-labels stay in torch: the ONNX Runtime check failed (%s)", exc)
            predictor, text = None, "torch (the ONNX Runtime check failed)"
        finally:
            self.torch_predictor = None  # the queue may have moved on to another model
        if not self.cancelled.is_set():
            self.on_done(predictor, text)

    def _run_child(self, command: list[str]) -> dict[str, Any] | None:
        """Run the check's process to its end and return the choice it printed; None when
        cancelled first (the process is killed). Raises RuntimeError when it failed."""
        if self.cancelled.is_set():
            return None
        flags = getattr(subprocess, "IDLE_PRIORITY_CLASS", 0)  # Windows; elsewhere it nices itself
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                creationflags=flags,
                env={**os.environ, "PYTHONPATH": _pythonpath()},
            )
            self.process = proc
            try:
                while proc.poll() is None:
                    if self.cancelled.wait(POLL_S):
                        return None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if self.cancelled.is_set():
                return None
            if proc.returncode != 0:
                raise RuntimeError(f"it ended with code {proc.returncode}: {_last_line(err)}")
            lines = _read(out).splitlines()
            try:
                entry = json.loads(lines[-1])
            except (IndexError, ValueError):
                raise RuntimeError(f"it printed no choice: {_last_line(err)}") from None
        if not isinstance(entry, dict):
            raise RuntimeError(f"it printed {entry!r}, not a choice")
        return entry

    def _choose(self) -> tuple[Any, str]:
        import torch

        from trainer import runtime_choice as rc

        missing = onnxruntime_missing()
        if missing and rc.bf16_prelabels_unavailable():
            log.info("pre-labels run in torch: %s", missing)
            return None, "torch (ONNX Runtime not installed)"
        pred, ckpt = self.torch_predictor, self.checkpoint
        cache = Path(self.cache_dir) if self.cache_dir is not None else rc.user_cache_dir()
        entry = rc.known_choice(pred, ckpt, cache)
        exported = rc.onnx_path(pred, ckpt, cache).is_file()
        if entry is None or (entry.get("runtime") == "onnxruntime" and not exported):
            entry = self._run_child(child_command(ckpt, cache, torch.get_num_threads()))
            if entry is None:
                return None, ""  # cancelled
        if entry.get("runtime") == "torch-bf16":
            log.info("pre-labels run in bf16: %s", entry.get("reason", "the faster here"))
            return pred.in_precision("bf16"), BF16_TEXT
        if entry.get("runtime") != "onnxruntime":
            log.info("pre-labels run in torch: %s", entry.get("reason", "the faster here"))
            return None, TORCH_TEXT
        if self.cancelled.is_set():
            return None, ""
        try:
            return rc.onnx_predictor(pred, ckpt, cache), ONNX_TEXT
        except Exception as exc:  # noqa: BLE001 - any failure of the optional runtime: torch
            log.warning("pre-labels stay in torch: ONNX Runtime failed to load the model (%s)", exc)
            rc.record_failure(pred, ckpt, cache, f"failed to load: {exc}")
            return None, "torch (ONNX Runtime failed to load)"


def runtime_text(predictor: Any) -> str:
    """The runtime a loaded predictor runs in, for the status bar ("" without one)."""
    if predictor is None:
        return ""
    info = getattr(predictor, "model_info", None) or {}
    runtime = info.get("runtime")
    return {"onnxruntime": "ONNX Runtime", "torch-bf16": "torch bf16"}.get(runtime, "torch")


class RuntimeSwitch:
    """The runtime check of the model a worker thread predicts with, and the check's answer
    until the worker takes it between two images (the pre-label queue's part of the check).

    Args:
        cond: the worker's lock and condition; notified when an answer arrives.
        setting: "auto" (check checkpoints) or "torch"; default :func:`runtime_setting`.
        thread_setup: as :class:`RuntimeCheck`.
    """

    def __init__(
        self,
        cond: threading.Condition,
        setting: str | None = None,
        thread_setup: Callable[[], None] | None = None,
    ) -> None:
        self.cond = cond
        self.setting = setting or runtime_setting()
        self.thread_setup = thread_setup
        self.check: RuntimeCheck | None = None
        # (generation, predictor to switch to or None: stay, text) from a finished check
        self._answer: tuple[int, Any, str] | None = None

    @property
    def ready(self) -> bool:
        """An answer waits (read with the lock held)."""
        return self._answer is not None

    def start(
        self, source: Any, predictor: Any, generation: int, current: Callable[[], int]
    ) -> None:
        """Check a model just loaded for ``generation`` (worker thread), if it is a checkpoint
        on the CPU; ``current()`` is the worker's generation now (read with the lock held)."""
        if (
            self.setting != "auto"
            or not isinstance(source, str | os.PathLike)
            or getattr(getattr(predictor, "device", None), "type", None) != "cpu"
        ):
            return

        def done(chosen: Any, text: str) -> None:  # the check's thread
            with self.cond:
                if self.check is check and generation == current():
                    self._answer = (generation, chosen, text)
                    self.cond.notify_all()

        check = RuntimeCheck(source, predictor, done, thread_setup=self.thread_setup)
        with self.cond:
            if generation != current():
                return
            self.cancel()
            self.check = check
        check.start()

    def cancel(self) -> None:
        """Cancel the check in progress and drop its answer (caller holds the lock)."""
        if self.check is not None:
            self.check.cancel()
            self.check = None
        self._answer = None

    def take(self) -> tuple[int, Any, str] | None:
        """The waiting answer, once (caller holds the lock)."""
        answer, self._answer = self._answer, None
        return answer

    def apply(
        self, answer: tuple[int, Any, str], predictor: Any, loaded: int
    ) -> tuple[Any, str | None]:
        """(the predictor to go on with, the text to show or None) after an answer, for the
        worker that has ``predictor`` loaded for generation ``loaded``."""
        generation, chosen, text = answer
        if generation != loaded or predictor is None:
            return predictor, None
        if chosen is not None:
            if getattr(chosen, "_finder", None) is None:  # loaded there since the check began
                chosen._finder = getattr(predictor, "_finder", None)
            predictor = chosen
        return predictor, text
