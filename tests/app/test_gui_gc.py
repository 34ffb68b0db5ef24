"""Python's garbage is collected on the GUI thread, never by a worker's allocations: the suite
died once with "Fatal Python error: Segmentation fault ... Garbage-collecting" in an export job's
thread, right after its dialog closed (Qt objects deleted from the wrong thread)."""

from __future__ import annotations

import gc
import threading

from tests.app.test_gui_canvas import make_window


def test_a_cycle_is_collected_on_the_gui_thread_not_by_a_workers_allocations(qtbot, tmp_path):
    make_window(qtbot, tmp_path)
    where: list[str] = []

    class Cycle:
        def __del__(self) -> None:
            where.append(threading.current_thread().name)

    cycle = Cycle()
    cycle.me = cycle
    del cycle

    kept: list[list] = []

    def allocate() -> None:  # live objects: past the collector's first threshold (700)
        kept.extend([] for _ in range(10_000))

    # Kept alive past the worker's end: freed, they would take the count of allocations back
    # under the threshold, and the GUI thread's timer would wait for other allocations (the
    # test timed out once that way on a clean clone).
    worker = threading.Thread(target=allocate, name="worker")
    worker.start()
    worker.join()
    assert where == []  # the worker's allocations did not collect it
    qtbot.waitUntil(lambda: bool(where), timeout=5_000)
    assert where == [threading.main_thread().name] and len(kept) == 10_000


def test_the_gui_thread_collects_by_the_same_thresholds(qtbot, tmp_path):
    from faceparse_app.gui_gc import install

    make_window(qtbot, tmp_path)
    collector = install()
    assert collector is install()  # one per application
    assert not gc.isenabled() and collector.thresholds[0] > 0
    kept = [[] for _ in range(2 * collector.thresholds[0])]
    assert gc.get_count()[0] > collector.thresholds[0]
    collector.check()
    assert gc.get_count()[0] < collector.thresholds[0] and kept
