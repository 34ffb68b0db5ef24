"""What a new annotator's first hour trips over (issue 31), driven through the real widgets.

Every test here fails on a Qt warning or an exception raised in a paint or other Qt event.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QSpinBox

from faceparse_app.widgets.tool_state import Tool
from tests.app.test_gui_canvas import click, make_window

# The offscreen platform's own notice is not the app's.
pytestmark = [
    pytest.mark.qt_log_level_fail("WARNING"),
    pytest.mark.qt_log_ignore("This plugin does not support"),
]


def _type(key: Qt.Key) -> None:
    """A key typed at whatever has the keyboard focus, as a user types it."""
    target = QApplication.focusWidget()
    assert target is not None, "nothing has the keyboard focus"
    QTest.keyClick(target, key)


def test_class_keys_work_from_the_first_press(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    radius = window.state.radius
    assert not isinstance(QApplication.focusWidget(), QSpinBox)
    _type(Qt.Key.Key_3)
    assert window.state.cls == 3 and window.state.radius == radius
    _type(Qt.Key.Key_P)
    assert window.state.tool is Tool.POLYGON


def test_the_size_box_gives_the_keys_back_after_editing(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    box = window.tool_bar.size_box
    assert box.focusPolicy() & Qt.FocusPolicy.TabFocus != Qt.FocusPolicy.TabFocus
    box.setFocus()
    box.selectAll()
    QTest.keyClicks(box, "20")
    QTest.keyClick(box, Qt.Key.Key_Return)
    assert window.state.radius == 20
    _type(Qt.Key.Key_5)
    assert window.state.cls == 5 and window.state.radius == 20


def test_the_polygon_preview_draws_its_vertices(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    canvas = window.canvas
    window.state.set_tool(Tool.POLYGON)
    window.state.set_overlay_visible(False)
    for x, y in [(10, 10), (40, 12), (40, 40)]:
        click(canvas, x, y)
    shot = canvas.grab().toImage()  # paints; a paint error fails the test
    vertex = canvas.image_to_widget(*canvas.tool.points[1]).toPoint()
    colour = shot.pixelColor(vertex)
    assert colour.red() > 230 and colour.green() > 230 and colour.blue() > 230
