"""Defects found in a user's trial of the real window (the h31 trial), each driven the way
the user met it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.app.test_gui_canvas import make_project, make_window


def error_shown(window) -> bool:
    """An error is on the message bar."""
    bar = window.message_bar
    return bool(bar.message) and bar.level == "error"


def test_double_clicking_a_recent_project_opens_it_once_without_an_error(qtbot, tmp_path):
    # The trial: a double-click on the start page's recent project opened it, then tried
    # again and said "already open in this FaceParse Studio; switch to that window".
    window = make_window(qtbot, tmp_path, open_project=False)
    window.resize(1200, 800)  # room for the recent list
    folder = make_project(tmp_path / "faces", n=2)
    assert window.open_project(folder)
    window.close_project()
    page = window.start_page
    opened: list[str] = []
    page.open_requested.connect(opened.append)
    recent = page.recent
    qtbot.waitUntil(lambda: recent.visualItemRect(recent.item(0)).bottom() < recent.viewport().height())
    rect = recent.visualItemRect(recent.item(0))
    # A real double-click: a click, then the second press that makes it double.
    QTest.mouseClick(recent.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    QTest.mouseDClick(recent.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert len(opened) == 1
    assert window.session is not None and window.session.project.root == folder
    assert not error_shown(window), window.message_bar.message


def test_opening_the_folder_that_is_open_keeps_it_open_without_an_error(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    session = window.session
    root = session.project.root
    assert window.open_project(root)
    assert window.session is session and window.session.document is not None
    assert not error_shown(window), window.message_bar.message
