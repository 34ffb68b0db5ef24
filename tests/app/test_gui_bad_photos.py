"""Bad photos in the real window (issue 29 §6): no face, thirty faces, a 1×1 image, a face cut by
the frame edge, a 12-megapixel photo. Each gets a clear status, loses nothing, and never raises
(pytest-qt fails a test on an exception in any Qt slot or event handler) or freezes the window:
finding and parsing run on the pre-label thread while the GUI thread keeps serving events.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QThread, QTimer

from faceparse_app.faces import coverage
from faceparse_app.widgets.tool_state import Tool
from tests.app.test_gui_canvas import drag
from tests.app.test_gui_faces import face_tool, kept, mask_of, reference, two_faces, wait_parsed
from tests.app.test_gui_model_loop import WAIT_MS, open_window, publish_parser, status
from tests.app.test_gui_session import select
from tests.conftest import synthetic_face
from trainer import face_detect
from trainer.data.imageio import read_label, write_image
from trainer.faces import Face

TICKS_WHILE_FINDING = 5  # GUI timer ticks the finder waits for before it answers


def in_gui_thread() -> bool:
    return QThread.currentThread() is QCoreApplication.instance().thread()


class GuiWatchingFinder:
    """A finder that answers only after the GUI thread has served a few timer ticks.

    Run on the GUI thread, it could never see those ticks (it would block them), so a prediction
    that ends at all has run elsewhere while the window stayed responsive: no wall clock. Only
    the first search of each photo but the 64×64 "good" one waits (a later one, e.g. while
    the window closes, must not wait for a GUI thread that is waiting for it).
    """

    name = "gui-watching"

    def __init__(self, faces_for_shape) -> None:
        self.faces_for_shape = faces_for_shape
        self.threads: list[bool] = []  # per call: on the GUI thread?
        self.saw_ticks: list[bool] = []
        self.ticks = 0
        self._armed = False
        self._watched: set[tuple[int, int]] = set()
        self._enough = threading.Event()
        # Made here, on the GUI thread: it ticks in the GUI's event loop. Owned by the
        # application, so that Python's collector (which may run on the worker thread that last
        # held this finder) never deletes it off its thread: that crashed the GUI thread.
        self._timer = QTimer(QCoreApplication.instance())
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        if self._armed:
            self.ticks += 1
            if self.ticks >= TICKS_WHILE_FINDING:
                self._enough.set()

    def __call__(self, image: np.ndarray) -> list[Face]:
        shape = image.shape[:2]
        if shape == (64, 64) or shape in self._watched:
            return self.faces_for_shape(shape)
        self._watched.add(shape)
        self.threads.append(in_gui_thread())
        self._enough.clear()
        self.ticks = 0
        self._armed = True
        self.saw_ticks.append(self._enough.wait(60))
        self._armed = False
        return self.faces_for_shape(image.shape[:2])


@pytest.fixture
def watching_finder(monkeypatch):
    """Makes a :class:`GuiWatchingFinder` the app's finder; afterwards its timer is stopped and
    deleted on the GUI thread."""
    made: list[GuiWatchingFinder] = []

    def make(faces_for_shape) -> GuiWatchingFinder:
        finder = GuiWatchingFinder(faces_for_shape)
        made.append(finder)
        monkeypatch.setattr(face_detect, "get_finder", lambda name=None: finder)
        return finder

    yield make
    for finder in made:
        finder._timer.stop()
        finder._timer.deleteLater()


def assert_off_the_gui_thread(finder: GuiWatchingFinder) -> None:
    assert finder.threads and not any(finder.threads)
    assert all(finder.saw_ticks)  # the window served events while the faces were looked for


def photo_folder(folder: Path, name: str, image: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_image(folder / "good.png", synthetic_face(64, seed=3)[0])
    write_image(folder / name, image)
    return folder


def open_photo(qtbot, tmp_path, folder: Path, name: str, loader=None):
    version = publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder, loader=loader)
    image_id = next(r.id for r in window.session.records() if r.relpath == name)
    select(window, image_id)
    assert window.session.current.id == image_id
    return window, version, image_id


def still_works(qtbot, window, version: str) -> None:
    """The good photo still opens, gets its pre-label and takes paint."""
    session = window.session
    good = next(r for r in session.records() if r.relpath == "good.png")
    select(window, good.id)
    qtbot.waitUntil(lambda: status(window, good.id) == ("pre-labeled", version), timeout=WAIT_MS)
    window.state.set_tool(Tool.BRUSH)
    window.state.set_class(6)
    drag(window.canvas, [(20, 20), (24, 24)])
    assert session.document.label[22, 22] == 6


# --------------------------------------------------------------------------------- tests


def test_a_photo_with_no_face(qtbot, tmp_path, watching_finder):
    finder = watching_finder(lambda shape: [])
    landscape = cv2.resize(synthetic_face(64, seed=7)[0][40:, :], (160, 90))
    folder = photo_folder(tmp_path / "project", "landscape.jpg", landscape)
    window, version, image_id = open_photo(qtbot, tmp_path, folder, "landscape.jpg")
    session = window.session
    qtbot.waitUntil(lambda: "No face found" in window.message_bar.message, timeout=WAIT_MS)
    assert_off_the_gui_thread(finder)
    assert window.message_bar.message.startswith("No face found in landscape.jpg")
    assert window.message_bar.level == "info" and not window.face_offer.isHidden()
    # Nothing lost, nothing invented: an all-background pre-label, saved as one.
    assert status(window, image_id) == ("pre-labeled", version)
    assert not read_label(session.project.label_path(session.current)).any()
    assert kept(window) == [] and np.isnan(window.model_loop.scores()[image_id])
    still_works(qtbot, window, version)


def test_thirty_faces(qtbot, tmp_path, watching_finder):
    tiles = [synthetic_face(64, seed=s)[0] for s in range(30)]
    crowd = np.concatenate([np.concatenate(tiles[r * 6 : r * 6 + 6], axis=1) for r in range(5)], axis=0)
    boxes = [
        Face(box=(c * 64.0 + 6, r * 64.0 + 4, c * 64.0 + 58, r * 64.0 + 60), score=0.9)
        for r in range(5)
        for c in range(6)
    ]
    finder = watching_finder(lambda shape: boxes)
    folder = photo_folder(tmp_path / "project", "crowd.png", crowd)
    window, version, image_id = open_photo(qtbot, tmp_path, folder, "crowd.png")
    session = window.session
    qtbot.waitUntil(lambda: status(window, image_id) == ("pre-labeled", version), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(window.canvas.faces) == 30, timeout=WAIT_MS)
    assert_off_the_gui_thread(finder)
    assert window.statusBar().currentMessage() == "30 faces in crowd.png"
    window.canvas.repaint()  # thirty boxes and captions draw without trouble
    assert len(kept(window)) == 30 and 0.0 <= window.model_loop.scores()[image_id] <= 1.0
    # Every face was parsed: each face's crop holds the model's parse of it.
    np.testing.assert_array_equal(session.document.label, reference(window, version, boxes))
    still_works(qtbot, window, version)


def test_a_1x1_image(qtbot, tmp_path, watching_finder):
    # A real finder finds no face in a single pixel; the whole-image stand-in would find one.
    finder = watching_finder(lambda shape: [] if min(shape) < 8 else [Face(box=(0, 0, shape[1], shape[0]))])
    folder = photo_folder(tmp_path / "project", "dot.png", np.full((1, 1, 3), 200, np.uint8))
    window, version, image_id = open_photo(qtbot, tmp_path, folder, "dot.png")
    session = window.session
    qtbot.waitUntil(lambda: status(window, image_id) == ("pre-labeled", version), timeout=WAIT_MS)
    assert_off_the_gui_thread(finder)
    assert window.message_bar.message.startswith("No face found in dot.png")
    assert session.document.label.shape == (1, 1) and window.canvas.image_size == (1, 1)
    # A face box cannot be drawn on one pixel: the tool says why, and nothing changes.
    face_tool(window)
    drag(window.canvas, [(0.0, 0.0), (0.9, 0.9)])
    assert "at least 4×4 image pixels" in window.statusBar().currentMessage()
    assert kept(window) == [] and not session.document.label.any()
    still_works(qtbot, window, version)


def test_a_face_cut_by_the_frame_edge(qtbot, tmp_path, watching_finder):
    # The finder's box reaches past the left edge (the face is half out of the picture).
    cut = Face(box=(-30.0, 0.0, 34.0, 64.0), score=0.8, box_framing=(0.5, 0.5, 1.0))
    finder = watching_finder(lambda shape: [cut])
    folder = two_faces(tmp_path / "project")
    (folder / "p0.png").rename(folder / "edge.png")
    write_image(folder / "good.png", synthetic_face(64, seed=3)[0])
    window, version, image_id = open_photo(qtbot, tmp_path, folder, "edge.png")
    session = window.session
    qtbot.waitUntil(lambda: status(window, image_id) == ("pre-labeled", version), timeout=WAIT_MS)
    assert_off_the_gui_thread(finder)
    label = session.document.label
    (_, _, reach, _), _ = coverage(cut, label.shape)  # the face's crops, zoomed-out one included
    assert label.shape == (64, 128) and reach < 128 and not label[:, reach:].any()
    np.testing.assert_array_equal(label, reference(window, version, [cut]))
    # The annotator's own box may reach past the right edge too: parsed where it is in view.
    face_tool(window)
    steps = len(session.document.history)
    window.canvas.zoom_by(0.5)  # room around the photo to drag past its edge
    drag(window.canvas, [(70, 0), (140, 64)])  # image x 140 lies past the right edge
    wait_parsed(qtbot, session)  # the face's step comes at once, its pixels later
    assert len(session.document.history) == steps + 1
    drawn = kept(window)[1]
    assert drawn.box[2] > 128 and drawn.source == "user"
    inside = mask_of(drawn, label.shape)
    np.testing.assert_array_equal(session.document.label[inside], reference(window, version, [cut, drawn])[inside])
    still_works(qtbot, window, version)


def test_a_12_megapixel_photo(qtbot, tmp_path, watching_finder):
    face, _ = synthetic_face(64, seed=5)
    big = np.full((3000, 4000, 3), 90, np.uint8)
    big[800:2100, 1600:2400] = cv2.resize(face, (800, 1300), interpolation=cv2.INTER_LINEAR)
    box = Face(box=(1600.0, 800.0, 2400.0, 2100.0), score=0.95, box_framing=(0.5, 0.5, 1.0))
    finder = watching_finder(lambda shape: [box])
    folder = photo_folder(tmp_path / "project", "big.jpg", big)
    window, version, image_id = open_photo(qtbot, tmp_path, folder, "big.jpg")
    session = window.session
    qtbot.waitUntil(lambda: status(window, image_id) == ("pre-labeled", version), timeout=WAIT_MS)
    assert_off_the_gui_thread(finder)
    label = session.document.label
    assert label.shape == (3000, 4000) and window.canvas.image_size == (4000, 3000)
    assert label[800:2100, 1600:2400].any()
    (x0, y0, x1, y1), _ = coverage(box, label.shape)  # the face's crops, zoomed-out one included
    outside = np.ones(label.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert x1 - x0 < 4000 and not label[outside].any()
    assert window.statusBar().currentMessage() == "1 face in big.jpg"
    np.testing.assert_array_equal(read_label(session.project.label_path(session.current)), label)
    still_works(qtbot, window, version)


def test_closing_the_project_while_a_long_prediction_runs(qtbot, tmp_path, monkeypatch):
    """A 12-megapixel parse on a slow CPU can outlast the wait for the pre-label thread when the
    project closes: the thread must finish on its own, with nothing deleted under it."""
    import faceparse_app.prelabel_queue as prelabel_queue

    gate = threading.Event()
    started = threading.Event()

    def slow_loader(path):
        if Path(path).name == "slow.png":
            started.set()
            gate.wait(60)
        from trainer.data.imageio import read_image

        return read_image(path)

    monkeypatch.setattr(prelabel_queue, "STOP_WAIT_MS", 200)
    folder = photo_folder(tmp_path / "project", "slow.png", synthetic_face(64, seed=9)[0])
    window, version, image_id = open_photo(qtbot, tmp_path, folder, "slow.png", loader=slow_loader)
    qtbot.waitUntil(started.is_set, timeout=WAIT_MS)
    queue = window.model_loop.queue
    window.close_project()  # the prediction is still running
    assert window.session is None and window.stack.currentWidget() is window.start_page
    gate.set()  # it ends after the project has closed: dropped, not delivered
    qtbot.waitUntil(lambda: not queue._thread.isRunning(), timeout=WAIT_MS)
    qtbot.wait(100)
    assert window.open_project(folder)  # the project opens again and works
    still_works(qtbot, window, version)
