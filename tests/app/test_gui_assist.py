"""The assisted tools on the canvas (issue 32): click to relabel (R) and the edge-snapping
outline (S), driven with QTest as a user drives them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from faceparse_app.assist import ClassProbabilities, CropProbabilities
from faceparse_app.widgets.tool_state import Tool
from tests.app.test_gui_canvas import click, key, make_window
from trainer.data.imageio import write_image


def _disc() -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    return (xx - 32) ** 2 + (yy - 32) ** 2 <= 14**2


def _disc_project(folder: Path) -> Path:
    """One 64×64 photo: a bright disc (radius 14 around (32, 32)) on a dark, noisy ground."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    image = rng.integers(20, 40, (64, 64, 3), dtype=np.uint8)
    image[_disc()] = rng.integers(200, 230, (int(_disc().sum()), 3), dtype=np.uint8)
    write_image(folder / "disc.png", image)
    return folder


def outline_window(qtbot, tmp_path: Path):
    """A window on the disc photo with the edge outline (S) chosen and the nose class (6)."""
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(_disc_project(tmp_path / "disc"))
    key(window, Qt.Key.Key_S)
    assert window.state.tool is Tool.BOUNDARY
    window.state.set_class(6)
    return window


def _probabilities(shape: tuple[int, int], blob: np.ndarray) -> ClassProbabilities:
    """A model that calls the blob class 2, with class 4 its second guess there and class 5 its
    third; elsewhere skin, sure of it."""
    probs = np.zeros((11, *shape), np.float32)
    probs[1] = 0.97
    probs[0] = 0.03
    probs[:, blob] = 0.0
    probs[2][blob], probs[4][blob], probs[5][blob], probs[1][blob] = 0.5, 0.3, 0.15, 0.05
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return ClassProbabilities(11, [CropProbabilities(probs, identity)])


def test_relabel_cycles_the_models_next_classes_one_undo_step_a_click(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    doc, canvas = window.session.document, window.canvas
    label = np.ones(doc.shape, np.uint8)
    blob = np.zeros(doc.shape, bool)
    blob[20:30, 20:30] = True
    label[blob] = 2
    doc.replace(label)
    canvas.assist.probabilities = lambda: _probabilities(doc.shape, blob)
    key(window, Qt.Key.Key_R)
    assert window.state.tool is Tool.RELABEL
    steps = len(doc.history)
    click(canvas, 25, 25)
    assert (doc.label[blob] == 4).all() and (doc.label[~blob] == 1).all()  # the second guess
    click(canvas, 25, 25)
    assert (doc.label[blob] == 5).all()  # then the third
    assert len(doc.history) == steps + 2
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (doc.label[blob] == 4).all()
    # A protected class is never relabeled.
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    window.palette.protect_boxes[2].click()
    click(canvas, 25, 25)
    assert (doc.label[blob] == 2).all() and len(doc.history) == steps


def test_relabel_without_a_model_says_so(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    before = window.session.document.label.copy()
    key(window, Qt.Key.Key_R)
    click(window.canvas, 30, 30)
    assert np.array_equal(window.session.document.label, before)
    assert "needs a model" in window.message_bar.text.text()


def test_edge_outline_follows_the_edges_between_its_points(qtbot, tmp_path):
    window = outline_window(qtbot, tmp_path)
    doc, canvas = window.session.document, window.canvas
    # Four clicks on the disc's rim: straight sides would make a diamond of 64% of the disc;
    # following the rim, the outline is the disc. Enter closes.
    rim = [(32, 18), (46, 32), (32, 46), (18, 32)]
    for x, y in rim:
        click(canvas, x, y)
    key(window, Qt.Key.Key_Return)
    painted, disc = doc.label == 6, _disc()
    assert (painted & disc).sum() >= 0.9 * disc.sum()
    assert (painted & ~disc).sum() <= 0.1 * disc.sum()
    assert len(doc.history) == 1
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not (doc.label == 6).any()
    # Esc abandons an outline half drawn; Shift+Enter closes one too.
    for x, y in rim[:3]:
        click(canvas, x, y)
    key(window, Qt.Key.Key_Escape)
    key(window, Qt.Key.Key_Return)
    assert not (doc.label == 6).any()
    for x, y in rim:
        click(canvas, x, y)
    key(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert ((doc.label == 6) & disc).sum() >= 0.9 * disc.sum()


def test_shift_enter_closes_a_polygon_too(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    doc, canvas = window.session.document, window.canvas
    key(window, Qt.Key.Key_P)
    window.state.set_class(6)
    for x, y in [(10, 10), (30, 10), (30, 30), (10, 30)]:
        click(canvas, x, y)
    key(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert (doc.label[12:29, 12:29] == 6).all() and len(doc.history) == 1
