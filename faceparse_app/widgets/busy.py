"""Run a slow call (a project's folder scan) off the GUI thread while the window keeps painting,
with a busy dialog once it takes longer than a moment; returns its result or raises its error."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QProgressDialog, QWidget

T = TypeVar("T")
SHOW_AFTER_MS = 400  # quicker calls show no dialog at all
POLL_MS = 20


def run_busy(parent: QWidget, text: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a worker thread; the caller waits in a local event loop (the
    window repaints; a modal busy dialog keeps clicks from starting anything else)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="busy") as pool:
        future = pool.submit(fn, *args, **kwargs)
        dialog = QProgressDialog(text, "", 0, 0, parent)
        dialog.setWindowTitle("Please wait")
        dialog.setCancelButton(None)
        dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
        dialog.setMinimumDuration(0)
        dialog.hide()
        loop = QEventLoop()
        poll = QTimer()
        poll.setInterval(POLL_MS)
        poll.timeout.connect(lambda: future.done() and loop.quit())
        show = QTimer()
        show.setSingleShot(True)
        show.timeout.connect(lambda: not future.done() and dialog.show())
        poll.start()
        show.start(SHOW_AFTER_MS)
        if not future.done():
            loop.exec()
        poll.stop()
        show.stop()
        dialog.close()
        dialog.deleteLater()
        return future.result()
