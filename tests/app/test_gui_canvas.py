"""The canvas and its tools, driven through the real widgets with QTest mouse and key events.

Also home of the small drivers the other GUI tests import (make_window, drag, click, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget

from faceparse_app.app import Settings
from faceparse_app.main_window import MainWindow
from faceparse_app.widgets.canvas import LabelCanvas
from faceparse_app.widgets.label_colours import display_palette
from faceparse_app.widgets.tool_state import Tool
from tests.conftest import synthetic_face
from trainer.data.imageio import write_image
from trainer.labels import LAPA

SKIN = tuple(int(c) for c in display_palette(LAPA)[1])

# ---------------------------------------------------------------------------- drivers


def make_project(folder: Path, n: int = 3, size: int = 64) -> Path:
    """A folder of `n` synthetic faces f0.png, f1.png, ... (no labels yet)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _ = synthetic_face(size, seed=i)
        write_image(folder / f"f{i}.png", image)
    return folder


def make_window(
    qtbot, tmp_path: Path, autosave_ms: int = 60_000, open_project: bool = True
) -> MainWindow:
    """A shown main window with its own settings file; opens a 3-face project by default.

    The autosave interval defaults to a minute so tests see only the saves they cause.
    """
    settings = Settings(tmp_path / "settings.ini")
    settings.set_autosave_ms(autosave_ms)
    settings.set_demo_dir(tmp_path / "demo")
    window = MainWindow(settings)
    qtbot.addWidget(window)
    with qtbot.waitActive(window):  # window shortcuts fire only in the active window
        window.show()
        window.activateWindow()
    if open_project:
        assert window.open_project(make_project(tmp_path / "project"))
        keys_to(window)
    return window


def point(canvas: LabelCanvas, x: float, y: float) -> QPoint:
    """Widget point at the centre of image pixel (x, y)."""
    return canvas.image_to_widget(x + 0.5, y + 0.5).toPoint()


def drag(canvas: LabelCanvas, points: list[tuple[float, float]], steps: int = 6) -> None:
    """Press at the first image point, move through the others, release at the last."""
    QTest.mousePress(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, *points[0])
    )
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        for t in np.linspace(0, 1, steps)[1:]:
            QTest.mouseMove(canvas, point(canvas, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
    QTest.mouseRelease(
        canvas,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        point(canvas, *points[-1]),
    )


def click(canvas: LabelCanvas, x: float, y: float) -> None:
    QTest.mouseClick(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, x, y)
    )


def keys_to(widget: QWidget) -> None:
    """Make the widget's window the active one before keys are typed at it, as a window manager
    does when a dialog over it closes. The offscreen platform has none: after the busy dialog of
    a folder scan slower than 0.4 s (an open, a rescan or an import on a loaded machine) no
    window was active, and the keys typed fired no window shortcut (tests failed under load)."""
    window = widget.window()
    if not window.isActiveWindow():
        window.activateWindow()
        assert QTest.qWaitForWindowActive(window), "the window did not become active"


def key(window: MainWindow, key: Qt.Key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """A key press as the user types it (window shortcuts fire), with the canvas focused."""
    keys_to(window)
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, key, modifiers)


def wheel(
    canvas: LabelCanvas, x: float, y: float, notches: int, modifiers=Qt.KeyboardModifier.NoModifier
) -> None:
    pos = QPointF(point(canvas, x, y))
    event = QWheelEvent(
        pos,
        canvas.mapToGlobal(pos),
        QPoint(),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas, event)


def pixel_colour(canvas: LabelCanvas, x: float, y: float) -> tuple[int, int, int]:
    """RGB shown on screen at the centre of image pixel (x, y)."""
    c = canvas.grab().toImage().pixelColor(point(canvas, x, y))
    return c.red(), c.green(), c.blue()


# ------------------------------------------------------------------------------ tests


def test_brush_stroke_paints_one_undo_step_and_undo_redo_keys(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    doc = window.session.document
    window.state.set_class(7)
    window.state.set_radius(2)
    drag(window.canvas, [(10, 10), (40, 10)])
    painted = doc.label == 7
    # A continuous band from x=10 to x=40, about 5 px high, and nothing far from it.
    assert painted[10, 10:41].all()
    assert painted[8:13, 25].all() and not painted[16, 25]
    assert not painted[30:, :].any()
    assert len(doc.history) == 1
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not (doc.label == 7).any()
    key(
        window,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert np.array_equal(doc.label == 7, painted)
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    key(window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(doc.label == 7, painted)


def test_eraser_paints_background(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    doc = window.session.document
    window.state.set_radius(4)
    drag(window.canvas, [(20, 20), (30, 20)])
    assert (doc.label == 1).sum() > 50
    key(window, Qt.Key.Key_E)
    assert window.state.tool is Tool.ERASER
    drag(window.canvas, [(20, 20), (30, 20)])
    assert not doc.label.any()


def test_flood_fill_polygon_and_cancel(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    doc, canvas = window.session.document, window.canvas
    key(window, Qt.Key.Key_P)
    window.state.set_class(6)
    for x, y in [(10, 10), (30, 10), (30, 30), (10, 30)]:
        click(canvas, x, y)
    key(window, Qt.Key.Key_Return)
    inside = doc.label == 6
    assert inside[12:29, 12:29].all() and not inside[35:, :].any() and not inside[:, 35:].any()
    assert len(doc.history) == 1
    # Esc abandons a polygon half drawn.
    for x, y in [(40, 40), (60, 40), (60, 60)]:
        click(canvas, x, y)
    key(window, Qt.Key.Key_Escape)
    key(window, Qt.Key.Key_Return)
    assert not (doc.label[40:, 40:] == 6).any() and len(doc.history) == 1
    # A double-click closes the polygon too.
    window.state.set_class(9)
    click(canvas, 40, 40)
    click(canvas, 60, 40)
    QTest.mouseDClick(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, 60, 60)
    )
    assert (doc.label[45:55, 55:59] == 9).all()
    assert len(doc.history) == 2
    # Flood fill: the background region (everything outside the two shapes) becomes hair.
    key(window, Qt.Key.Key_F)
    window.state.set_class(10)
    click(canvas, 2, 2)
    assert (doc.label[0, :] == 10).all() and (doc.label[20, 20] == 6)
    assert (doc.label == 0).sum() == 0
    assert len(doc.history) == 3
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert doc.label[0, 0] == 0 and doc.label[20, 20] == 6


def test_protected_classes_are_never_painted_over(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    doc, canvas, palette = window.session.document, window.canvas, window.palette
    window.state.set_radius(3)
    key(window, Qt.Key.Key_8)  # inner mouth
    drag(canvas, [(30, 10), (30, 50)])
    mouth = doc.label == 8
    assert mouth.sum() > 100
    palette.protect_boxes[8].click()
    assert window.state.protected == {8}
    key(window, Qt.Key.Key_7)  # upper lip, across the mouth
    drag(canvas, [(10, 30), (50, 30)])
    assert np.array_equal(doc.label == 8, mouth)
    assert (doc.label[30, 10:25] == 7).all()
    # Fill over a protected region does nothing; unprotect and it fills.
    key(window, Qt.Key.Key_F)
    click(canvas, 30, 12)
    assert np.array_equal(doc.label == 8, mouth)
    palette.protect_boxes[8].click()
    click(canvas, 30, 12)
    assert (doc.label[10:14, 30] == 7).all()


def test_class_hotkeys_palette_eyedropper_and_brush_size(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    state, canvas = window.state, window.canvas
    for k, cls in [(Qt.Key.Key_0, 0), (Qt.Key.Key_4, 4), (Qt.Key.Key_9, 9), (Qt.Key.Key_Minus, 10)]:
        key(window, k)
        assert state.cls == cls
        assert window.palette.class_buttons[cls].isChecked()
    window.palette.class_buttons[2].click()
    assert state.cls == 2
    # The eyedropper picks the class under the cursor.
    drag(canvas, [(20, 20), (21, 20)])
    key(window, Qt.Key.Key_5)
    key(window, Qt.Key.Key_I)
    click(canvas, 20, 20)
    assert state.cls == 2
    # [ and ] change the brush; so does Ctrl+wheel; the tool bar shows it.
    state.set_radius(10)
    key(window, Qt.Key.Key_BracketRight)
    assert state.radius > 10 and window.tool_bar.size_box.value() == 2 * state.radius + 1  # its width
    key(window, Qt.Key.Key_BracketLeft)
    key(window, Qt.Key.Key_BracketLeft)
    assert state.radius < 10
    before = state.radius
    wheel(canvas, 30, 30, 2, Qt.KeyboardModifier.ControlModifier)
    assert state.radius > before


def test_zoom_pan_overlay_look_and_status_bar(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    canvas, state = window.canvas, window.state
    fit = canvas.scale
    # Wheel zoom keeps the pixel under the cursor in place.
    anchor = canvas.image_to_widget(20.5, 30.5)
    wheel(canvas, 20, 30, 1)
    assert canvas.scale > fit
    after = canvas.image_to_widget(20.5, 30.5)
    assert abs(after.x() - anchor.x()) < 1.5 and abs(after.y() - anchor.y()) < 1.5
    canvas.zoom_actual()
    assert canvas.scale == 1.0 and window.canvas_status.zoom.text() == "100 %"
    canvas.zoom_fit()
    assert canvas.scale == fit
    # Middle-button drag pans.
    start = canvas.image_to_widget(0, 0)
    QTest.mousePress(
        canvas, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(100, 100)
    )
    QTest.mouseMove(canvas, QPoint(150, 130))
    QTest.mouseRelease(
        canvas, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(150, 130)
    )
    moved = canvas.image_to_widget(0, 0) - start
    assert (round(moved.x()), round(moved.y())) == (50, 30)
    # So does a left drag with space held, without painting.
    label_before = window.session.document.label.copy()
    QTest.keyPress(canvas, Qt.Key.Key_Space)
    QTest.mousePress(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(150, 130)
    )
    QTest.mouseMove(canvas, QPoint(130, 140))
    QTest.mouseRelease(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(130, 140)
    )
    QTest.keyRelease(canvas, Qt.Key.Key_Space)
    moved = canvas.image_to_widget(0, 0) - start
    assert (round(moved.x()), round(moved.y())) == (30, 40)
    assert np.array_equal(window.session.document.label, label_before)
    # Hover shows position and class.
    drag(canvas, [(20, 20), (21, 20)])
    QTest.mouseMove(canvas, point(canvas, 20, 20))
    assert window.canvas_status.position.text() == "x 20, y 20"
    assert window.canvas_status.cls.text() == "1 skin"
    # Overlay: visible labels tint the image; hidden shows the photo; outline hides the inside.
    state.set_opacity(1.0)
    shown = pixel_colour(canvas, 20, 20)
    assert shown == SKIN  # the canvas's skin colour at full opacity
    window.tool_bar.overlay_action.trigger()
    assert not state.overlay_visible
    hidden = pixel_colour(canvas, 20, 20)
    assert hidden != shown
    window.tool_bar.overlay_action.trigger()
    state.set_radius(6)
    drag(canvas, [(40, 40), (41, 40)])
    QTest.mouseMove(canvas, point(canvas, 5, 60))  # keep the brush circle out of the samples
    window.tool_bar.outline_action.trigger()
    assert pixel_colour(canvas, 40, 40) == pixel_colour_hidden(window, 40, 40)
    top = int(np.flatnonzero(window.session.document.label[:, 40] == 1)[0])
    assert 30 <= top <= 35
    assert pixel_colour(canvas, 40, top) == SKIN  # on the outline


def pixel_colour_hidden(window: MainWindow, x: float, y: float) -> tuple[int, int, int]:
    window.state.set_overlay_visible(False)
    try:
        return pixel_colour(window.canvas, x, y)
    finally:
        window.state.set_overlay_visible(True)


def test_undo_or_switch_in_the_middle_of_a_drag_loses_nothing(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    session, canvas = window.session, window.canvas
    first = session.current.id
    window.state.set_class(2)
    QTest.mousePress(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, 10, 10)
    )
    QTest.mouseMove(canvas, point(canvas, 20, 10))
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undoes the stroke so far
    QTest.mouseMove(canvas, point(canvas, 30, 10))  # the drag goes on, painting nothing
    QTest.mouseRelease(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, 30, 10)
    )
    assert not (session.document.label == 2).any()
    # N while still dragging: the stroke so far is saved with the image.
    QTest.mousePress(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, 10, 40)
    )
    QTest.mouseMove(canvas, point(canvas, 30, 40))
    key(window, Qt.Key.Key_N)
    QTest.mouseMove(canvas, point(canvas, 40, 50))
    QTest.mouseRelease(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, 40, 50)
    )
    assert session.current.id != first
    assert not (session.document.label == 2).any()
    with_stroke = session.project.load_label(session.project.get(first))
    assert (with_stroke[40, 10:31] == 2).all()
