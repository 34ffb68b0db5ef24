"""Garbage collection on the GUI thread only.

Python's cyclic garbage collector runs in whichever thread happens to allocate when its
threshold is passed. When that is a worker thread (an export, a pre-label) and the garbage holds
Qt objects of the GUI thread (a closed dialog whose signal connections keep it in a cycle), Qt
deletes them from the wrong thread and the process can crash: the test suite died once with
"Fatal Python error: Segmentation fault ... Garbage-collecting" in an export job's thread while
its dialog had just closed. The usual cure in Qt applications: turn the automatic collector off
and collect from a timer on the GUI thread, by the same generation thresholds.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer

INTERVAL_MS = 500  # how often the GUI thread looks at the collector's counts


class GuiThreadCollector(QObject):
    """Turns automatic collection off and collects on its (GUI) thread's timer instead."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(INTERVAL_MS)

    def check(self) -> int:
        """Collect the generations whose counts passed their thresholds (as the automatic
        collector would); returns the objects found unreachable."""
        counts, thresholds = gc.get_count(), self.thresholds
        if counts[0] <= thresholds[0]:
            return 0
        generation = 2 if counts[2] > thresholds[2] else 1 if counts[1] > thresholds[1] else 0
        return gc.collect(generation)


def install() -> GuiThreadCollector | None:
    """The application's collector, made once (call on the GUI thread after the QApplication
    exists); None without a QApplication."""
    app = QCoreApplication.instance()
    if app is None:
        return None
    found = app.findChild(GuiThreadCollector)
    return found if found is not None else GuiThreadCollector(app)
