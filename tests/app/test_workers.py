"""Background workers: progress reaches the GUI thread, cancel is quick, errors surface, and
pre-labels come back for the face on screen first."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QThread

from faceparse_app.prelabel_queue import PrelabelQueue
from faceparse_app.training import run_finetune_job
from faceparse_app.workers import FunctionWorker
from tests.conftest import synthetic_face
from trainer.checkpoint import save_checkpoint
from trainer.data.imageio import write_image
from trainer.data.sample import Sample
from trainer.faces import Face
from trainer.models import build_model, get_preset
from trainer.predict import Predictor


def in_gui_thread() -> bool:
    return QThread.currentThread() is QCoreApplication.instance().thread()


def test_progress_and_result_arrive_in_the_gui_thread(qtbot):
    job_threads: list[bool] = []

    def job(n: int, on_progress, cancel) -> int:
        job_threads.append(in_gui_thread())
        for i in range(n):
            on_progress({"step": i + 1})
        return n * 10

    seen: list[tuple[str, object, bool]] = []
    worker = FunctionWorker(job, 5)
    worker.progress.connect(lambda p: seen.append(("progress", p["step"], in_gui_thread())))
    worker.finished.connect(lambda r: seen.append(("finished", r, in_gui_thread())))
    with qtbot.waitSignal(worker.done, timeout=5000):
        worker.start()
    assert job_threads == [False]  # the job itself ran off the GUI thread
    assert seen == [("progress", i, True) for i in range(1, 6)] + [("finished", 50, True)]
    assert not worker.is_running


def test_errored_carries_the_message_and_nothing_finishes(qtbot):
    def job() -> None:
        raise ValueError("labels/0003.png has class 42")

    worker = FunctionWorker(job)
    finished: list[object] = []
    worker.finished.connect(finished.append)
    with qtbot.waitSignal(worker.errored, timeout=5000) as blocker:
        worker.start()
    assert blocker.args == ["labels/0003.png has class 42"]
    assert "ValueError" in worker.traceback
    qtbot.waitUntil(lambda: not worker.is_running, timeout=5000)
    assert finished == []


def test_cancel_stops_a_real_finetune_within_3_s(qtbot, tmp_path):
    samples = [
        Sample(*synthetic_face(64, seed=i), f"f{i}", tmp_path / f"f{i}.png", None) for i in range(3)
    ]
    worker = FunctionWorker(
        run_finetune_job, samples, tmp_path / "run", val_samples=[], preset="tiny",
        batch_size=2, max_steps=10_000, device="cpu",
    )
    steps: list[int] = []
    worker.progress.connect(lambda p: steps.append(p["step"]))
    with qtbot.waitSignal(worker.progress, timeout=60000):
        worker.start()
    worker.cancel()
    with qtbot.waitSignal(worker.cancelled, timeout=3000) as blocker:
        pass
    assert blocker.args[0].cancelled
    assert steps[-1] < 10_000
    qtbot.waitUntil(lambda: not worker.is_running, timeout=3000)


def test_every_keyword_reaches_the_job_even_parent_and_fn(qtbot):
    """A job's own ``parent`` keyword (the model version a fine-tune derives from) used to be
    taken by the worker as its QObject parent and never reached the job."""
    got: dict[str, object] = {}

    def job(fn: str, parent: str | None = None, on_progress=None, cancel=None) -> None:
        got.update(fn=fn, parent=parent)

    worker = FunctionWorker(job, fn="f", parent="v0003")
    with qtbot.waitSignal(worker.done, timeout=5000):
        worker.start()
    assert got == {"fn": "f", "parent": "v0003"}


@pytest.fixture(scope="module")
def tiny_predictor() -> Predictor:
    return Predictor(build_model(get_preset("tiny"), heads=("parsing",)), device="cpu")


@pytest.fixture
def face_files(tmp_path) -> dict[int, Path]:
    files = {}
    for i in range(1, 7):
        files[i] = tmp_path / f"face{i}.png"
        write_image(files[i], synthetic_face(64, seed=i)[0])
    return files


def test_prelabel_queue_serves_the_requested_face_first_then_caches(qtbot, tiny_predictor, face_files):
    gate = threading.Event()
    loads: list[int] = []

    def loader(path: Path) -> np.ndarray:
        loads.append(int(path.stem[4:]))
        if len(loads) == 1:
            gate.wait(5)  # hold the first (background) job while the user asks for a face
        from trainer.data.imageio import read_image

        return read_image(path)

    queue = PrelabelQueue(lookahead=2, loader=loader)
    try:
        queue.set_model(tiny_predictor, "v0001")
        ready: list[tuple[int, bool]] = []
        queue.ready.connect(lambda i, pred: ready.append((i, in_gui_thread())))
        queue.score_all([(5, face_files[5]), (6, face_files[6])])
        qtbot.waitUntil(lambda: loads == [5], timeout=5000)
        queue.request(1, face_files[1], upcoming=[(2, face_files[2]), (3, face_files[3]), (4, face_files[4])])
        gate.set()
        qtbot.waitUntil(lambda: len(queue.scores()) == 5, timeout=20000)
        # The requested face beat the look-ahead, which beat the rest of the background sweep;
        # the sweep's job under way (5) stopped for them and was done again after.
        assert loads == [5, 1, 2, 3, 5, 6]
        assert ready == [(1, True), (2, True), (3, True)]  # only 2 look-ahead faces (lookahead=2)
        pred = queue.cached(1)
        assert pred.label.shape == (64, 64) and pred.confidence.shape == (64, 64)
        assert 0 <= pred.score <= 1 and len(pred.faces) == 1
        np.testing.assert_array_equal(pred.label, tiny_predictor(synthetic_face(64, seed=1)[0]).label)

        # A cached face is served at once, without predicting it again.
        with qtbot.waitSignal(queue.ready, timeout=100) as blocker:
            queue.request(1, face_files[1])
        assert blocker.args[0] == 1 and loads.count(1) == 1

        # A model swap drops the old predictions.
        queue.set_model(tiny_predictor, "v0002")
        assert queue.cached(1) is None and queue.scores() == {}
        with qtbot.waitSignal(queue.ready, timeout=10000) as blocker:
            queue.request(1, face_files[1])
        assert blocker.args[0] == 1 and loads.count(1) == 2
    finally:
        queue.stop()


def test_prelabel_queue_loads_a_checkpoint_and_reports_a_broken_one(qtbot, tmp_path, face_files):
    path = save_checkpoint(
        tmp_path / "parser.safetensors", build_model(get_preset("tiny"), ("parsing",)), "finetune"
    )
    queue = PrelabelQueue(device="cpu")
    try:
        queue.set_model(path, "v0003")
        with qtbot.waitSignals([queue.model_loaded, queue.ready], timeout=20000):
            queue.request(1, face_files[1])
        broken = tmp_path / "broken.safetensors"
        broken.write_bytes(b"nope")
        queue.set_model(broken, "v0004")
        with qtbot.waitSignal(queue.failed, timeout=10000) as blocker:
            queue.request(2, face_files[2])
        assert blocker.args[0] == -1 and "broken.safetensors" in blocker.args[1]
        # Without a model, requests are ignored: nothing breaks.
        queue.set_model(None, None)
        queue.request(3, face_files[3])
        assert not queue.has_model
    finally:
        queue.stop()


def test_a_cancel_that_comes_after_the_job_finished_its_work_reports_finished(qtbot):
    """Issue 28 §5: a cancel during pretraining's final write reported "cancelled" while the
    backbone was published and activated. The job's own result decides: one or the other."""
    from dataclasses import dataclass

    @dataclass
    class Outcome:
        cancelled: bool
        version: str | None

    def job(late: bool, on_progress, cancel) -> Outcome:
        cancel.set() if late else None  # the user presses Cancel while the job publishes
        return Outcome(cancelled=False, version="b0001") if late else Outcome(True, None)

    for late, expected in ((True, "finished"), (False, "cancelled")):
        seen: list[str] = []
        worker = FunctionWorker(job, late)
        worker.finished.connect(lambda r, seen=seen: seen.append("finished"))
        worker.cancelled.connect(lambda r, seen=seen: seen.append("cancelled"))
        if not late:
            worker.cancel_event.set()
        with qtbot.waitSignal(worker.done, timeout=5000):
            worker.start()
        assert seen == [expected]


class CountingFinder:
    """A face finder that says where it ran and how often (one whole-image face per image)."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[bool] = []  # per call: was it on the GUI thread?

    def __call__(self, image: np.ndarray) -> list[Face]:
        self.calls.append(in_gui_thread())
        h, w = image.shape[:2]
        return [Face(box=(0.0, 0.0, float(w), float(h)), score=0.9, box_framing=(0.5, 0.5, 1.0))]


def test_prelabel_queue_finds_faces_once_then_parses_the_kept_ones(qtbot, face_files):
    finder = CountingFinder()
    predictor = Predictor(build_model(get_preset("tiny"), heads=("parsing",)), device="cpu", finder=finder)
    kept: dict[int, list[Face]] = {}
    asked: list[bool] = []

    def faces_for(image_id: int) -> list[Face] | None:
        asked.append(in_gui_thread())
        return kept.get(image_id)

    queue = PrelabelQueue(lookahead=0, faces_for=faces_for)
    try:
        queue.set_model(predictor, "v0001")
        found: list[tuple[int, list[Face]]] = []
        queue.faces_found.connect(lambda i, faces: found.append((i, faces)))
        with qtbot.waitSignal(queue.ready, timeout=20000) as blocker:
            queue.request(1, face_files[1])
        first = blocker.args[1]
        assert finder.calls == [False] and asked == [False]  # found and asked off the GUI thread
        assert [i for i, _ in found] == [1] and found[0][1] == first.faces
        kept[1] = found[0][1]
        # Kept faces are parsed as they are: no second search, also for a newer model.
        queue.set_model(predictor, "v0002")
        with qtbot.waitSignal(queue.ready, timeout=20000) as blocker:
            queue.request(1, face_files[1])
        assert finder.calls == [False] and len(found) == 1
        np.testing.assert_array_equal(blocker.args[1].label, first.label)
        # An image whose kept list is empty (no face there) is all background, score NaN.
        kept[2] = []
        with qtbot.waitSignal(queue.ready, timeout=20000) as blocker:
            queue.request(2, face_files[2])
        empty = blocker.args[1]
        assert not empty.label.any() and (empty.confidence == 1).all() and np.isnan(empty.score)
        assert finder.calls == [False]
    finally:
        queue.stop()


def test_forget_drops_the_old_prediction_even_one_still_running(qtbot, tiny_predictor, face_files):
    gate = threading.Event()

    def loader(path: Path) -> np.ndarray:
        gate.wait(10)
        from trainer.data.imageio import read_image

        return read_image(path)

    half = Face(box=(0.0, 0.0, 32.0, 32.0), source="user", box_framing=(0.5, 0.5, 1.0))
    kept: dict[int, list[Face]] = {}
    queue = PrelabelQueue(lookahead=0, loader=loader, faces_for=kept.get)
    try:
        queue.set_model(tiny_predictor, "v0001")
        ready: list = []
        queue.ready.connect(lambda i, pred: ready.append((i, pred)))
        queue.request(1, face_files[1])
        qtbot.waitUntil(lambda: queue._inflight is not None, timeout=5000)
        kept[1] = [half]  # the annotator changed the faces while the old ones were parsed
        queue.forget(1)
        queue.request(1, face_files[1])
        gate.set()
        qtbot.waitUntil(lambda: bool(ready), timeout=20000)
        qtbot.wait(200)
        assert len(ready) == 1  # the prediction with the old faces never arrived
        pred = ready[0][1]
        assert len(pred.faces) == 1 and pred.faces[0].box == half.box
        assert not pred.label[40:, :].any() and not pred.label[:, 40:].any()  # one quarter only
        assert queue.cached(1) is pred
        queue.forget(1)
        assert queue.cached(1) is None and queue.score(1) is None
    finally:
        queue.stop()


def test_an_image_is_searched_once_even_before_its_faces_are_kept(qtbot, face_files):
    """The sweep right behind a request used to search the image again: the GUI thread had
    not kept the faces of the first search yet (or cannot: a read-only project)."""
    finder = CountingFinder()
    predictor = Predictor(build_model(get_preset("tiny"), heads=("parsing",)), device="cpu", finder=finder)
    queue = PrelabelQueue(lookahead=0, faces_for=lambda image_id: None)  # nothing is ever kept
    try:
        queue.set_model(predictor, "v0001")
        queue.request(1, face_files[1])
        queue.score_all([(1, face_files[1]), (2, face_files[2])])
        qtbot.waitUntil(lambda: len(queue.scores()) == 2, timeout=20000)
        queue.set_model(predictor, "v0002")  # a newer model: the faces are the same
        queue.score_all([(1, face_files[1])])
        qtbot.waitUntil(lambda: len(queue.scores()) == 1, timeout=20000)
        assert len(finder.calls) == 2  # once per image
    finally:
        queue.stop()


class CountingCalls(Predictor):
    """A predictor whose every forward pass takes a while (a photo of many faces on a slow CPU)."""

    def __init__(self) -> None:
        super().__init__(build_model(get_preset("tiny"), heads=("parsing",)), device="cpu")
        self.passes = 0

    def logits(self, images):  # type: ignore[override]
        self.passes += 1
        threading.Event().wait(0.3)
        return super().logits(images)


def test_a_face_the_annotator_asks_for_interrupts_the_background_scoring(qtbot, face_files):
    """The face-box tool's pre-label waited for the whole scoring of a 30-face photo."""
    crowd = [
        Face(box=(float(x), float(y), x + 16.0, y + 16.0), source="user", box_framing=(0.5, 0.5, 1.0))
        for x in range(0, 48, 8)
        for y in range(0, 48, 8)
    ]  # 36 faces: 10 slow forward passes
    drawn = [Face(box=(8.0, 8.0, 56.0, 56.0), source="user", box_framing=(0.5, 0.5, 1.0))]
    kept = {1: crowd, 2: drawn}
    predictor = CountingCalls()
    queue = PrelabelQueue(lookahead=0, faces_for=kept.get)
    try:
        queue.set_model(predictor, "v0001")
        order: list[str] = []
        queue.ready.connect(lambda i, pred: order.append(f"ready {i}"))
        queue.scored.connect(lambda i, score: order.append(f"scored {i}"))
        queue.score_all([(1, face_files[1])])
        qtbot.waitUntil(lambda: predictor.passes >= 2, timeout=20000)  # the sweep is under way
        queue.request(2, face_files[2])
        qtbot.waitUntil(lambda: {"scored 1", "ready 2"} <= set(order), timeout=60000)
        # The annotator's face came first; the interrupted scoring still finished after it.
        assert order.index("ready 2") < order.index("scored 1"), order
        assert len(queue.cached(2).faces) == 1
        assert not np.isnan(queue.score(1))
    finally:
        queue.stop()


def test_closing_interrupts_the_prediction_in_progress(qtbot, face_files):
    """Quitting during the pre-label of a many-face photo left its thread running past the
    window ('QThread: Destroyed while thread is still running' at exit): the image on screen
    was not interruptible, only background scoring was."""
    crowd = [
        Face(box=(float(x), float(y), x + 16.0, y + 16.0), source="user", box_framing=(0.5, 0.5, 1.0))
        for x in range(0, 48, 8)
        for y in range(0, 48, 8)
    ]  # 36 faces: 10 forward passes of 0.3 s
    predictor = CountingCalls()
    queue = PrelabelQueue(lookahead=0, faces_for={1: crowd}.get)
    queue.set_model(predictor, "v0001")
    queue.request(1, face_files[1])  # the image on screen
    qtbot.waitUntil(lambda: predictor.passes >= 1, timeout=20000)
    assert queue.stop(timeout_ms=2500)  # ended at the next pass, not after all ten
    assert predictor.passes < 8


def test_a_refusal_logs_one_line_and_a_crash_its_traceback(qtbot, caplog):
    # The t35 trial: an export refused for a folder that is not an export of ours printed a
    # full traceback to stderr, as if the app had crashed; the window had said why already.
    import logging

    from faceparse_app.store_guard import ProjectError

    def refused() -> None:
        raise ProjectError("out/ is neither empty nor an export of ours")

    def crashed() -> None:
        raise ValueError("labels/0003.png has class 42")

    for job in (refused, crashed):
        worker = FunctionWorker(job)
        with caplog.at_level(logging.INFO, logger="faceparse_app.workers"):
            with qtbot.waitSignal(worker.errored, timeout=5000):
                worker.start()
        qtbot.waitUntil(lambda worker=worker: not worker.is_running, timeout=5000)
    refusal, crash = (r for r in caplog.records if r.name == "faceparse_app.workers")
    assert "neither empty nor an export" in refusal.getMessage()
    assert "Traceback" not in refusal.getMessage() and refusal.levelno < logging.ERROR
    assert "Traceback" in crash.getMessage() and crash.levelno == logging.ERROR
