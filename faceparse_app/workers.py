"""Work off the GUI thread: training jobs and pre-labels (PySide6, in the style of superqt).

- :class:`FunctionWorker` runs ``fn(*args, on_progress=..., cancel=..., **kwargs)`` in a QThread.
- :func:`at_lower_priority` makes a job's thread yield the CPU to the GUI thread.
- :class:`JobThread` and :class:`Relay`: the thread and the way back to the GUI thread that they
  and :class:`faceparse_app.prelabel_queue.PrelabelQueue` share.

Everything the job threads report crosses to the GUI thread the same way: the job thread appends
to a deque and emits an internal signal with a queued connection; a slot in the GUI thread drains
the deque and emits the public signals. So every public signal is emitted in the GUI thread and
any receiver (slot, lambda) runs there, in order: progress reports, then exactly one of
finished / errored / cancelled, then ``done``.

Torch releases the GIL inside its kernels, and :func:`configure_torch_threads` leaves one core to
the GUI thread, so the event loop keeps running while a job computes.

Why not superqt's ``thread_worker``: the trainer reports through plain callbacks
(``on_progress``, a ``cancel`` event) that it checks every step, not by yielding, and superqt's
function worker has neither progress nor cancel; its outcome signals carry no guarantee of the
order above (``returned`` and ``finished`` from the pool thread), and the pre-label queue shares
this module's thread and relay.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from trainer.errors import FaceParseError

log = logging.getLogger(__name__)

_threads_configured = False


def configure_torch_threads(reserve: int = 1) -> int:
    """Let torch use all cores but ``reserve`` (kept for the GUI thread); returns the count set.

    torch's intra-op pool is process-wide; call once before the first job (idempotent).
    """
    global _threads_configured
    import torch

    n = max(1, (os.cpu_count() or 1) - reserve)
    if not _threads_configured:
        torch.set_num_threads(n)
        _threads_configured = True
    return torch.get_num_threads()


class JobThread(QThread):
    """A QThread that runs one Python callable."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__()
        self._target = target

    def run(self) -> None:
        self._target()


class Relay(QObject):
    """Carries events from any thread to the GUI thread, in order.

    ``post`` may be called from any thread; ``handler`` is called in the thread this object
    lives in (the GUI thread) with each event.
    """

    _wake = Signal()

    def __init__(self, handler: Callable[[str, Any], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._handler = handler
        self._events: deque[tuple[str, Any]] = deque()
        self._lock = threading.Lock()
        self._pending = False
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)

    def post(self, kind: str, payload: Any = None) -> None:
        with self._lock:
            self._events.append((kind, payload))
            if self._pending:
                return  # one wake-up drains everything queued before it runs
            self._pending = True
        self._wake.emit()

    @Slot()
    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._events:
                    self._pending = False
                    return
                kind, payload = self._events.popleft()
            self._handler(kind, payload)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def error_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


class FunctionWorker(QObject):
    """Run ``fn(*args, **kwargs)`` in a background thread.

    If ``fn`` takes ``on_progress`` and/or ``cancel`` parameters (or ``**kwargs``), the worker
    passes its progress callback (thread-safe; reports arrive as ``progress`` signals in the GUI
    thread) and its ``threading.Event`` cancel flag.

    Every keyword goes to ``fn`` (the worker takes none of its own; ``fn`` is positional-only),
    so a job may have a ``parent`` or ``fn`` parameter. A running worker keeps itself alive.

    Signals:
        started(): the job began (GUI thread).
        progress(object): a progress dict from the job.
        finished(object): the job's return value (not emitted after a cancel or an error).
        errored(str): the job raised; the message (full traceback in ``.traceback``).
        cancelled(object): the job stopped after ``cancel()``; its return value, if any. A
            return value with a boolean ``cancelled`` attribute decides instead of the flag.
        done(): always last, whatever the outcome.

    Example::

        worker = FunctionWorker(run_finetune_job, samples, run_dir, store=store)
        worker.progress.connect(show_progress)
        worker.finished.connect(on_done)
        worker.errored.connect(show_error)
        worker.start()
    """

    started = Signal()
    progress = Signal(object)
    finished = Signal(object)
    errored = Signal(str)
    cancelled = Signal(object)
    done = Signal()

    # Workers that are running, so one dropped by its creator is not garbage-collected mid-run.
    _live: set[FunctionWorker] = set()

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = dict(kwargs)
        self.cancel_event = threading.Event()
        self.traceback: str | None = None
        self.result: Any = None
        self._relay = Relay(self._on_event, self)
        self._thread: JobThread | None = None
        self._running = False
        if _accepts(fn, "on_progress"):
            self.kwargs.setdefault("on_progress", self._emit_progress)
        if _accepts(fn, "cancel"):
            self.kwargs.setdefault("cancel", self.cancel_event)

    # -- public -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the job in its own thread (once)."""
        if self._thread is not None:
            raise RuntimeError("a worker runs once; create a new one")
        configure_torch_threads()
        self._running = True
        FunctionWorker._live.add(self)
        self._thread = JobThread(self._run_in_thread)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop; the trainer checks the flag every step."""
        self.cancel_event.set()

    @property
    def is_running(self) -> bool:
        return self._running

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the job thread ends (for shutdown and tests); True if it did."""
        if self._thread is None:
            return True
        return bool(self._thread.wait(timeout_ms))

    # -- job thread ---------------------------------------------------------------------------

    def _emit_progress(self, report: Any) -> None:
        """The ``on_progress`` callback handed to the job (called on the job thread)."""
        self._relay.post("progress", report)

    def _execute(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    def _run_in_thread(self) -> None:
        self._relay.post("started")
        try:
            result = self._execute()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI
            self.traceback = traceback.format_exc()
            if isinstance(exc, FaceParseError):  # a refusal that says why: the GUI shows it
                log.warning("background job stopped: %s", error_message(exc))
            else:
                log.error("background job failed:\n%s", self.traceback)
            self._relay.post("errored", error_message(exc))
        else:
            # A job that says whether it stopped early (a training result's ``cancelled``) is
            # taken at its word: a cancel that came after its work was done, while it
            # published, must not be reported as a cancel of a published model.
            stopped = getattr(result, "cancelled", None)
            if not isinstance(stopped, bool):
                stopped = self.cancel_event.is_set()
            self._relay.post("cancelled" if stopped else "finished", result)
        self._relay.post("done")

    # -- GUI thread ---------------------------------------------------------------------------

    def _on_event(self, kind: str, payload: Any) -> None:
        if kind == "started":
            self.started.emit()
        elif kind == "progress":
            self.progress.emit(payload)
        elif kind == "finished":
            self.result = payload
            self.finished.emit(payload)
        elif kind == "cancelled":
            self.result = payload
            self.cancelled.emit(payload)
        elif kind == "errored":
            self.errored.emit(payload)
        elif kind == "done":
            if self._thread is not None:
                self._thread.wait()  # run() has returned; this only joins the thread
            self._running = False
            FunctionWorker._live.discard(self)
            self.done.emit()


# How much lower than the GUI thread the background threads run (Linux nice steps): on a
# small CPU the scheduler then serves the GUI first, and training yields to pre-labels.
TRAINING_NICE = 10
PRELABEL_NICE = 5

_lowered = threading.local()


def lower_thread_priority(steps: int) -> None:
    """Make the calling thread yield the CPU to the GUI thread (once per thread).

    On Linux, nice values are per thread; raising only this thread's keeps the window
    responsive while a job computes. Elsewhere (and where it is not permitted) nothing changes.
    """
    if getattr(_lowered, "done", False) or not sys.platform.startswith("linux"):
        return
    _lowered.done = True
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except (AttributeError, OSError) as exc:
        log.debug("could not lower the priority of a background thread: %s", exc)


def at_lower_priority(fn: Callable[..., Any], steps: int) -> Callable[..., Any]:
    """`fn`, lowering its (worker) thread's priority first; keeps fn's signature for the worker."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        lower_thread_priority(steps)
        return fn(*args, **kwargs)

    return run
