"""Defects found in the review of session 5's changes (face-box undo, rescan, exports): each
test drives the window as a user would and asserts what the user would lose or see."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from tests.app.test_gui_canvas import drag, key
from tests.app.test_gui_faces import face_tool, kept, two_faces_one_found
from tests.app.test_gui_model_loop import WAIT_MS

CTRL = Qt.KeyboardModifier.ControlModifier
REDO = CTRL | Qt.KeyboardModifier.ShiftModifier


def test_redo_of_a_face_box_keeps_the_strokes_still_to_redo(qtbot, tmp_path, monkeypatch):
    # A box drawn, a stroke made while the face was being parsed, then the face's pixels: three
    # steps. Undone all three and redone, the stroke came back no more: redoing the box parsed
    # the face again, and its pixels, a new step, wiped the steps still to redo.
    window, session, version = two_faces_one_found(qtbot, tmp_path, monkeypatch)
    doc, queue = session.document, window.model_loop.queue
    face_tool(window)
    queue.forget(session.current.id)  # no cached result: the parse is still to come
    drag(window.canvas, [(66, 2), (126, 62)])
    stroke = doc.fill_polygon([(2, 40), (30, 40), (30, 60), (2, 60)], 10)  # before the parse
    assert stroke is not None
    with_stroke = doc.label.copy()
    qtbot.waitUntil(lambda: not np.array_equal(doc.label, with_stroke), timeout=WAIT_MS)
    done, drawn = doc.label.copy(), kept(window)
    assert len(drawn) == 2

    for _ in range(3):
        key(window, Qt.Key.Key_Z, CTRL)
    qtbot.waitUntil(lambda: len(kept(window)) == 1, timeout=WAIT_MS)
    qtbot.wait(300)  # the re-parse without the box lands
    with qtbot.waitSignal(queue.ready, timeout=WAIT_MS):  # the box is back, parsed again
        key(window, Qt.Key.Key_Z, REDO)
    qtbot.wait(200)
    key(window, Qt.Key.Key_Z, REDO)  # the stroke
    key(window, Qt.Key.Key_Z, REDO)  # the face's pixels
    np.testing.assert_array_equal(doc.label, done)  # the stroke is back, and the face
    assert kept(window) == drawn


def test_a_run_held_out_on_faces_without_any_part_is_compared_not_crashed():
    # Held-out faces labeled all background (photos without a face, labeled by hand): a new
    # parser that predicts no part there has no mean F1 (None: nothing to score), the one in
    # use that predicts parts where there are none scores 0. Comparing the two ended the run
    # in a TypeError ('>=' between None and float), and the trained version was never published.
    from faceparse_app.training import candidate_wins

    assert candidate_wins({"baseline_mean_f1": 0.0, "candidate_mean_f1": None}) is True
    # The reverse: the one in use is right on them (no part), the new one is not: it stays.
    assert candidate_wins({"baseline_mean_f1": None, "candidate_mean_f1": 0.4}) is False
    # A baseline that could not be loaded is replaced, whatever the new one scores.
    damaged = {"baseline_mean_f1": None, "candidate_mean_f1": 0.1, "baseline_error": "damaged"}
    assert candidate_wins(damaged) is True
