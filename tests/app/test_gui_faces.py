"""Faces in the real window: found faces are kept and shown, the face-box tool adds a face the
finder missed or removes a false one (its pre-label follows at once, as one undo step, touching
nothing outside that face's crop), a photo with no face says so, and "least sure" is over faces.

Tiny untrained models on synthetic faces on the CPU; finders are stand-ins that say where the
faces are. Every wait is for something the user would see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from faceparse_app.app import Settings
from faceparse_app.faces import coverage
from faceparse_app.project import Project
from faceparse_app.widgets.image_table import Column
from faceparse_app.widgets.tool_state import Tool
from tests.app.test_gui_canvas import click, drag, key, make_window
from tests.app.test_gui_model_loop import WAIT_MS, open_window, project_with, publish_parser, status
from tests.conftest import synthetic_face
from trainer import face_detect
from trainer.data.imageio import read_image, write_image
from trainer.faces import LABEL_BOX_FRAMING, Face
from trainer.predict import Predictor

LEFT = Face(box=(0.0, 0.0, 64.0, 64.0), score=0.97, box_framing=(0.5, 0.5, 1.0))
FALSE = Face(box=(96.0, 20.0, 124.0, 48.0), score=0.51, box_framing=(0.5, 0.5, 1.0))


class Finder:
    """Stands in for the face finder: the faces it 'finds' in every photo, and how often it ran."""

    name = "stand-in"

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces
        self.calls = 0

    def __call__(self, image: np.ndarray) -> list[Face]:
        self.calls += 1
        return list(self.faces)


def use_finder(monkeypatch, faces: list[Face]) -> Finder:
    finder = Finder(faces)
    monkeypatch.setattr(face_detect, "get_finder", lambda name=None: finder)
    return finder


def two_faces(folder: Path, n: int = 1) -> Path:
    """`n` photos p0.png...: two synthetic faces side by side (128×64)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        left, _ = synthetic_face(64, seed=2 * i)
        right, _ = synthetic_face(64, seed=2 * i + 1)
        write_image(folder / f"p{i}.png", np.concatenate([left, right], axis=1))
    return folder


def reference(window, version: str, faces: list[Face]) -> np.ndarray:
    """What `version` predicts for the photo on screen with exactly these faces."""
    store = window.model_loop.store
    predictor = Predictor.from_checkpoint(store.get(version).path, device="cpu")
    project = window.session.project
    image = read_image(project.image_path(window.session.current))
    return predictor.predict_batch([image], faces=[faces])[0].label


def wait_prelabeled(qtbot, window, version: str) -> None:
    image_id = window.session.current.id
    qtbot.waitUntil(lambda: status(window, image_id) == ("pre-labeled", version), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(window.canvas.faces) or window.model_loop.confidence is not None, timeout=WAIT_MS)


def two_faces_one_found(qtbot, tmp_path: Path, monkeypatch, n: int = 1):
    """A project of ``n`` two-face photos whose finder finds only the left face, open and
    pre-labeled by a published parser: (window, session, version)."""
    use_finder(monkeypatch, [LEFT])
    folder = two_faces(tmp_path / "project", n=n)
    version = publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder)
    wait_prelabeled(qtbot, window, version)
    return window, window.session, version


def no_face_found(qtbot, tmp_path: Path, monkeypatch, n: int = 1):
    """A project of ``n`` photos in which the finder finds no face, open with a published parser
    and showing its "No face found" request: the window."""
    use_finder(monkeypatch, [])
    folder = project_with(tmp_path / "project", n=n)
    publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder)
    qtbot.waitUntil(lambda: "No face found" in window.message_bar.message, timeout=WAIT_MS)
    return window


def wait_parsed(qtbot, session) -> None:
    """Until the pixels of a face drawn or removed have come (the face's undo step, made at
    once, takes them in)."""
    history = session.document.history
    qtbot.waitUntil(lambda: history.last is not None and history.last.has_pixels, timeout=WAIT_MS)


def face_tool(window) -> None:
    key(window, Qt.Key.Key_W)
    assert window.state.tool == Tool.FACE


def kept(window) -> list[Face]:
    return window.session.project.faces(window.session.current)


def mask_of(face: Face, shape: tuple[int, int]) -> np.ndarray:
    (x0, y0, x1, y1), m = coverage(face, shape)
    out = np.zeros(shape, bool)
    out[y0:y1, x0:x1] = m
    return out


# --------------------------------------------------------------------------------- tests


def test_found_faces_are_kept_shown_and_parsed_again_without_a_second_search(qtbot, tmp_path, monkeypatch):
    finder = use_finder(monkeypatch, [LEFT])
    folder = two_faces(tmp_path / "project")
    v1 = publish_parser(folder, seed=1)
    v2 = publish_parser(folder, seed=2, activate=False)
    window = open_window(qtbot, tmp_path, folder)
    wait_prelabeled(qtbot, window, v1)
    assert [f.box for f in kept(window)] == [LEFT.box] and finder.calls == 1
    # The box is shown (on by default); Shift+W hides it, and the choice is remembered.
    assert window.canvas.faces and window.canvas.shows_faces
    key(window, Qt.Key.Key_W, Qt.KeyboardModifier.ShiftModifier)
    assert not window.canvas.shows_faces and not window.tool_bar.faces_action.isChecked()
    assert Settings(tmp_path / "settings.ini").show_faces is False
    # The pre-label is the model's parse of the found face only; the rest is background.
    np.testing.assert_array_equal(window.session.document.label, reference(window, v1, [LEFT]))
    reach = coverage(LEFT, window.session.document.label.shape)[0][2]  # its zoomed-out crop's edge
    assert reach < 128 and not window.session.document.label[:, reach:].any()
    # The confidence view is over faces: sure (1.0) wherever no face was parsed.
    assert (window.model_loop.confidence[:, reach:] == 1.0).all()
    # A newer model parses the kept face; the finder is not asked again.
    window.model_loop.activate(v2)
    wait_prelabeled(qtbot, window, v2)
    assert finder.calls == 1
    np.testing.assert_array_equal(window.session.document.label, reference(window, v2, [LEFT]))


def test_the_face_tool_adds_a_missed_face_in_one_undo_step_touching_only_its_crop(qtbot, tmp_path, monkeypatch):
    window, session, version = two_faces_one_found(qtbot, tmp_path, monkeypatch)
    folder = session.project.root
    # The annotator has edited already: a stroke of class 4 on the left face, and hair protected.
    window.state.set_class(4)
    drag(window.canvas, [(8, 40), (20, 40)])
    window.palette.protect_boxes[10].setChecked(True)
    before = session.document.label.copy()
    by_hand = before != reference(window, version, [LEFT])  # the stroke's pixels
    steps = len(session.document.history)

    face_tool(window)
    drag(window.canvas, [(66, 2), (126, 62)])
    wait_parsed(qtbot, session)
    assert len(session.document.history) == steps + 1
    after = session.document.label.copy()
    drawn = kept(window)[1]
    assert [f.source for f in kept(window)] == ["detector", "user"]
    assert drawn.box_framing == LABEL_BOX_FRAMING and drawn.landmarks is None
    inside = mask_of(drawn, after.shape)
    # Nothing outside the new face's crop changed; the stroke is still there.
    np.testing.assert_array_equal(after[~inside], before[~inside])
    assert (after[40, 10:18] == 4).all()
    # Inside it, the model's parse with both faces, except where a protected class or a stroke
    # was (its widest crop, zoomed out for hair, reaches the stroke).
    expected = reference(window, version, [LEFT, drawn])
    free = inside & (before != 10) & ~by_hand
    np.testing.assert_array_equal(after[free], expected[free])
    np.testing.assert_array_equal(after[inside & (before == 10)], 10)
    assert after[:, 64:].any() and window.canvas.faces[1].source == "user"
    # One undo step takes it all back.
    window.undo_action.trigger()
    np.testing.assert_array_equal(session.document.label, before)
    window.redo_action.trigger()
    np.testing.assert_array_equal(session.document.label, after)
    # Saved as the annotator's work, and the face stays drawn after a reopen.
    assert session.save()
    assert status(window, session.current.id)[0] == "in_progress"
    window.close_project()
    with Project.open(folder) as project:
        faces = project.faces(project.images()[0])
        assert [f.source for f in faces] == ["detector", "user"]
        assert faces[1].box_framing == LABEL_BOX_FRAMING


def test_removing_a_false_face_gives_its_pixels_back_to_the_background(qtbot, tmp_path, monkeypatch):
    finder = use_finder(monkeypatch, [LEFT, FALSE])
    folder = two_faces(tmp_path / "project")
    v1 = publish_parser(folder, seed=1)
    v2 = publish_parser(folder, seed=2, activate=False)
    window = open_window(qtbot, tmp_path, folder)
    session = window.session
    wait_prelabeled(qtbot, window, v1)
    before = session.document.label.copy()
    false_area = mask_of(FALSE, before.shape)
    assert before[false_area].any()  # the false face got a parse

    face_tool(window)
    click(window.canvas, 110, 30)
    assert window.canvas.selected_face == 1
    key(window, Qt.Key.Key_Delete)
    wait_parsed(qtbot, session)
    assert len(session.document.history) == 1  # the face's removal (the pre-label is the start)
    after = session.document.label
    np.testing.assert_array_equal(after[~false_area], before[~false_area])
    np.testing.assert_array_equal(after[false_area], reference(window, v1, [LEFT])[false_area])
    reach = coverage(LEFT, after.shape)[0][2]
    assert not after[:, reach:].any()  # no other face claims those pixels: background
    assert [f.box for f in kept(window)] == [LEFT.box] and len(window.canvas.faces) == 1
    window.undo_action.trigger()
    np.testing.assert_array_equal(session.document.label, before)
    window.redo_action.trigger()
    # The removal sticks: a newer model's prediction parses the kept face only, no new search.
    window.model_loop.activate(v2)
    qtbot.waitUntil(lambda: window.model_loop.confidence is not None, timeout=WAIT_MS)
    assert finder.calls == 1 and [f.box for f in window.canvas.faces] == [LEFT.box]


def test_a_face_drawn_before_the_faces_are_known_is_refused_with_a_note(qtbot, tmp_path, monkeypatch):
    import threading

    gate = threading.Event()

    def slow_loader(path):
        gate.wait(60)
        return read_image(path)

    use_finder(monkeypatch, [LEFT])
    folder = two_faces(tmp_path / "project")
    publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder, loader=slow_loader)
    face_tool(window)
    drag(window.canvas, [(66, 2), (126, 62)])
    assert "Still looking for the faces" in window.statusBar().currentMessage()
    assert kept(window) is None
    gate.set()
    qtbot.waitUntil(lambda: kept(window) is not None, timeout=WAIT_MS)
    drag(window.canvas, [(66, 2), (126, 62)])
    qtbot.waitUntil(lambda: len(window.canvas.faces) == 2, timeout=WAIT_MS)


def test_no_face_found_says_so_offers_the_face_tool_and_ranks_first(qtbot, tmp_path, monkeypatch):
    # f1.png has no face the finder can find; the others have one each.
    blind = _finder_blind_to_f1()
    monkeypatch.setattr(face_detect, "get_finder", lambda name=None: blind)
    folder = project_with(tmp_path / "project", n=3)
    version = publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder)
    session, loop = window.session, window.model_loop
    ids = {r.relpath: r.id for r in session.records()}
    qtbot.waitUntil(lambda: set(window.image_list.scores) >= set(ids.values()), timeout=WAIT_MS)
    scores = loop.scores()
    assert np.isnan(scores[ids["f1.png"]]) and all(not np.isnan(scores[ids[n]]) for n in ("f0.png", "f2.png"))
    # Least sure first: the photo with no face found comes first; the list says why.
    window.image_list.sort_box.setCurrentIndex(window.image_list.sort_box.findData("uncertainty"))
    assert window.image_list.visible_ids()[0] == ids["f1.png"]
    assert window.image_list.row_text(ids["f1.png"], Column.UNSURE) == "no face"
    key(window, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert session.current.id == ids["f1.png"]
    qtbot.waitUntil(lambda: "No face found" in window.message_bar.message, timeout=WAIT_MS)
    assert window.message_bar.message == (
        "No face found in f1.png: draw a box around each face with the face tool (W), or press A "
        "if it has none (all background)"
    )
    assert not window.face_offer.isHidden()
    assert not session.document.label.any()  # nothing parsed: all background
    # The offer switches to the face tool; a box drawn there is parsed at once.
    window.face_offer.click()
    assert window.state.tool == Tool.FACE
    steps = len(session.document.history)
    drag(window.canvas, [(4, 2), (60, 62)])
    wait_parsed(qtbot, session)
    assert len(session.document.history) == steps + 1
    drawn = kept(window)
    assert len(drawn) == 1 and drawn[0].source == "user"
    np.testing.assert_array_equal(session.document.label, reference(window, version, drawn))
    assert window.face_offer.isHidden() and "No face found" not in window.message_bar.message
    assert window.message_bar.message.startswith("Parsing the face you drew in f1.png")


def _finder_blind_to_f1():
    """A finder that finds nothing in f1.png (told apart by its pixels) and a whole face in
    every other image."""
    f1, _ = synthetic_face(64, seed=1)

    def finder(image: np.ndarray) -> list[Face]:
        return [] if np.array_equal(image, f1) else [LEFT]

    finder.name = "stand-in"  # type: ignore[attr-defined]
    return finder


@pytest.mark.parametrize("visible", [True, False])
def test_the_faces_view_is_remembered_between_runs(qtbot, tmp_path, visible):
    window = make_window(qtbot, tmp_path, open_project=False)
    window.tool_bar.faces_action.setChecked(visible)
    window.close()
    again = make_window(qtbot, tmp_path, open_project=False)
    assert again.tool_bar.faces_action.isChecked() is visible
    assert again.canvas.faces_visible is visible


def test_the_whole_image_framing_is_not_kept_as_found_faces(qtbot, tmp_path):
    """Until a real finder is in, every photo is framed whole (the conftest finder is that
    one): keeping that 'face' would stop the real finder from ever looking at the photo."""
    folder = project_with(tmp_path / "project", n=2)
    version = publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder)
    wait_prelabeled(qtbot, window, version)
    qtbot.waitUntil(lambda: len(window.canvas.faces) == 1, timeout=WAIT_MS)
    assert kept(window) is None
    # The face tool still adds to the faces shown, which are kept from then on.
    face_tool(window)
    drag(window.canvas, [(10, 10), (40, 40)])
    qtbot.waitUntil(lambda: kept(window) is not None and len(window.canvas.faces) == 2, timeout=WAIT_MS)
    assert [f.source for f in kept(window)] == ["detector", "user"]
