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
    QTest.keyClicks(box, "21")
    QTest.keyClick(box, Qt.Key.Key_Return)
    assert window.state.radius == 10 and box.value() == 21  # the Size is the brush's width
    _type(Qt.Key.Key_5)
    assert window.state.cls == 5 and window.state.radius == 10


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


def test_the_list_keeps_long_names_from_hiding_the_score_and_repaints_only_what_changed(
    qtbot, tmp_path
):
    from faceparse_app.widgets.image_table import Column
    from tests.app.test_gui_canvas import make_project

    folder = make_project(tmp_path / "project", n=3)
    long_name = "3f9a1c0b7e2d4a6f8b1c3e5d7f9a0b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e1f3a5b.png"
    (folder / "f2.png").rename(folder / long_name)
    window = make_window(qtbot, tmp_path, open_project=False)
    window.resize(1400, 900)
    assert window.open_project(folder)
    image_list = window.image_list
    ids = image_list.visible_ids()
    image_list.set_scores({i: 0.25 for i in ids})
    long_id = next(i for i in ids if image_list.row_text(i) == long_name)
    assert image_list.row_text(long_id, Column.UNSURE) == "0.25"
    header, viewport = image_list.list.header(), image_list.list.viewport()
    right = header.sectionViewportPosition(Column.UNSURE) + header.sectionSize(Column.UNSURE)
    assert right <= viewport.width(), "the uncertainty column is pushed out of sight"
    assert long_name in image_list.row_tooltip(long_id)
    # A status change repaints its row; the list is not rebuilt.
    resets = []
    image_list.model.layoutChanged.connect(lambda *a: resets.append("layout"))
    image_list.model.modelReset.connect(lambda: resets.append("reset"))
    with qtbot.waitSignal(image_list.model.dataChanged) as changed:
        window.session.set_status("labeled")
    assert resets == []
    assert changed.args[0].row() == changed.args[1].row() == image_list.model.row_of(
        window.session.current.id
    )
    assert image_list.progress.text() == "1 / 3 labeled"


def test_the_hover_readout_forgets_the_last_image_and_the_confidence_view_has_a_scale(
    qtbot, tmp_path
):
    from tests.app.test_gui_canvas import drag, point

    window = make_window(qtbot, tmp_path)
    canvas, status = window.canvas, window.canvas_status
    window.state.set_radius(3)
    drag(canvas, [(20, 20), (24, 20)])
    QTest.mouseMove(canvas, point(canvas, 20, 20))
    assert status.cls.text() == "1 skin"
    # Page Down with the cursor resting on the canvas: the readout names the new image's pixel.
    QTest.keyClick(canvas, Qt.Key.Key_PageDown)
    assert status.cls.text() == "0 background"
    # Off the canvas (the cursor went to the list): nothing is named.
    canvas.leaveEvent(None)
    window.session.step(1)
    assert status.cls.text() == "" and status.position.text() == ""
    assert status.heat_legend.isHidden()
    window.tool_bar.heat_action.trigger()
    assert not status.heat_legend.isHidden()
    window.tool_bar.heat_action.trigger()
    assert status.heat_legend.isHidden()


def test_the_layout_is_remembered_and_the_canvas_refits_and_the_list_stays_put(qtbot, tmp_path):
    from faceparse_app.app import Settings
    from faceparse_app.main_window import MainWindow

    window = make_window(qtbot, tmp_path)
    canvas = window.canvas
    list_top = window.image_list.mapTo(window, window.image_list.rect().topLeft())
    window.show_message("A long message that takes a line above the canvas", "warning")
    QApplication.processEvents()
    assert window.image_list.mapTo(window, window.image_list.rect().topLeft()) == list_top
    # The canvas refits when it changes size (a dock opens, the message bar shows) ...
    w, h = canvas.image_size
    window.train_dock.hide()
    QApplication.processEvents()
    top_left, bottom_right = canvas.image_to_widget(0, 0), canvas.image_to_widget(w, h)
    assert top_left.x() >= 0 and top_left.y() >= 0
    assert bottom_right.x() <= canvas.width() and bottom_right.y() <= canvas.height()
    assert min(canvas.width() - bottom_right.x(), canvas.height() - bottom_right.y()) < 0.05 * canvas.width()
    # ... unless the annotator zoomed in.
    canvas.zoom_by(2.0)
    scale = canvas.scale
    window.train_dock.show()
    QApplication.processEvents()
    assert canvas.scale == scale
    # Hidden docks stay hidden next time.
    window.images_dock.hide()
    window.close()
    again = MainWindow(Settings(tmp_path / "settings.ini"))
    qtbot.addWidget(again)
    again.show_remembered()
    assert again.images_dock.isHidden() and not again.train_dock.isHidden()


def test_the_training_panel_waits_for_a_project_and_cancel_clears_the_step(qtbot, tmp_path):
    from faceparse_app.loop_state import RunOutcome

    window = make_window(qtbot, tmp_path, open_project=False)
    assert not window.train_panel.isEnabled()
    from tests.app.test_gui_canvas import make_project

    assert window.open_project(make_project(tmp_path / "project"))
    assert window.train_panel.isEnabled()
    state, progress = window.loop_state, window.train_panel.progress
    state.job_started("finetune")
    state.report_progress({
        "phase": "train", "step": 7, "total_steps": 30, "epoch": 1, "epochs": 3,
        "loss": 0.5, "images_per_s": 2.0, "eta_s": 43.0,
    })  # fmt: skip
    assert progress.eta_label.text() == "43 s left"
    state.finish(RunOutcome("finetune", cancelled=True))
    assert "step 7" not in progress.step_label.text() and progress.eta_label.text() == ""
    assert "cancelled" in progress.status_label.text()


def test_roll_back_from_the_only_version_reaches_the_starter_parser(qtbot, tmp_path, monkeypatch):
    import torch

    from tests.app.test_gui_model_loop import (
        WAIT_MS,
        open_window,
        project_with,
        publish_parser,
        status,
    )
    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model, get_preset

    torch.manual_seed(5)
    starter = save_checkpoint(
        tmp_path / "starter.safetensors", build_model(get_preset("tiny"), heads=("parsing",)), "finetune"
    )
    monkeypatch.setattr("faceparse_app.model_store.STARTER_PARSER", starter)
    folder = project_with(tmp_path / "project", n=2)
    v1 = publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder)
    image_id = window.session.current.id
    qtbot.waitUntil(lambda: status(window, image_id) == ("pre-labeled", v1), timeout=WAIT_MS)
    rollback = window.train_panel.versions.rollback_button
    assert rollback.isEnabled()
    QTest.mouseClick(rollback, Qt.MouseButton.LeftButton)
    assert window.model_loop.version == "starter"
    assert "starter parser" in window.message_bar.message
    qtbot.waitUntil(lambda: status(window, image_id) == ("pre-labeled", "starter"), timeout=WAIT_MS)
    assert not rollback.isEnabled()  # nothing older than the starter
    # v1 is still there to go back to.
    assert [v.id for v in window.model_loop.store.versions("parser")] == [v1]


def test_help_lists_every_key_and_about_names_the_versions(qtbot, tmp_path):
    from faceparse_app.widgets.help_dialogs import show_about, show_shortcuts

    window = make_window(qtbot, tmp_path)
    window.menuBar().actions()  # the Help menu is the last one
    assert window.menuBar().actions()[-1].text() == "&Help"
    sheet = show_shortcuts(window)
    text = sheet.findChild(type(sheet.children()[-1]), "shortcuts_text").toPlainText()
    for keys, what in (("Ctrl+Z", "Undo"), ("Shift+N", "Next least sure"), ("P", "Polygon"),
                       ("-", "Class 10"), ("Space + drag", "Pan"), ("U", "Confidence view")):  # fmt: skip
        assert keys in text and what in text, (keys, what)
    box = show_about(window)
    assert "faceparse-studio 0.1.0" in box.informativeText() and "Qt 6." in box.informativeText()


def test_quit_sits_apart_and_asks_while_training(qtbot, tmp_path, monkeypatch):
    window = make_window(qtbot, tmp_path)
    file_menu = window.menuBar().actions()[0].menu()
    texts = [a.text() for a in file_menu.actions()]
    quit_at, close_at = texts.index("&Quit"), texts.index("&Close project")
    assert quit_at == len(texts) - 1 and texts[quit_at - 1] == ""  # a separator between
    asked = []
    monkeypatch.setattr(type(window.model_loop.training), "running", property(lambda self: True))
    window.confirm_stop_training = lambda: asked.append(1) or False
    window.close()
    assert asked and window.isVisible() and window.session is not None
    assert close_at < quit_at
    window.confirm_stop_training = lambda: True
    window.close()
    assert window.session is None


def test_the_plot_legend_leaves_the_curves_uncovered(qtbot):
    from faceparse_app.widgets.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(320, 200)
    plot.total_steps = 10
    for step in range(1, 11):
        plot.add_loss(step, 1.0 / step)  # the first steps run along the top of the plot
    plot.add_val(10, 0.9, 0.8)
    rect = plot._plot_rect()
    shot, base = plot.grab().toImage(), plot.palette().base().color()
    # Along the plot's top, right of the first steps' loss, only the background shows.
    for x in range(int(rect.left()) + 40, int(rect.left()) + 160, 3):
        for y in range(int(rect.top()) + 3, int(rect.top()) + 16, 3):
            assert shot.pixelColor(x, y) == base, (x, y)


def test_export_goes_beside_the_project_into_a_new_folder_with_the_split_asked(qtbot, tmp_path):
    from PySide6.QtCore import QTimer

    from tests.app.test_gui_canvas import drag

    window = make_window(qtbot, tmp_path)
    session = window.session
    for _ in range(2):
        drag(window.canvas, [(10, 10), (30, 10)])
        session.set_status("labeled")
        session.step(1)
    target = tmp_path / "exports" / "new" / "lapa"  # nothing of it exists yet
    seen = {}

    def fill_in() -> None:
        dialog = QApplication.activeModalWidget()
        seen["default"] = dialog.folder_edit.text()
        dialog.folder_edit.setText(str(target))
        dialog.val_spin.setValue(0.5)
        dialog.test_spin.setValue(0.0)
        assert dialog.export_button.isEnabled()
        dialog.export_button.click()

    QTimer.singleShot(0, fill_in)
    assert window.export_lapa() is None  # runs in the background
    assert seen["default"] == str(tmp_path / "project-lapa")  # beside the project
    qtbot.waitUntil(lambda: "Exported to" in window.message_bar.message, timeout=60_000)
    assert "train 1" in window.message_bar.message and "val 1" in window.message_bar.message
    assert len(list((target / "train" / "labels").glob("*.png"))) == 1
    assert len(list((target / "val" / "labels").glob("*.png"))) == 1


def test_the_folder_scan_runs_off_the_gui_thread_with_a_busy_dialog(qtbot, tmp_path, monkeypatch):
    import threading
    import time

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QProgressDialog

    from faceparse_app.project import Project
    from tests.app.test_gui_canvas import make_project

    folder = make_project(tmp_path / "project")
    window = make_window(qtbot, tmp_path, open_project=False)
    real_open, threads, seen = Project.open, [], []

    def slow_open(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        time.sleep(1.0)  # a big folder
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Project, "open", staticmethod(slow_open))
    def look() -> None:
        dialog = QApplication.activeModalWidget()
        seen.append(dialog.labelText() if isinstance(dialog, QProgressDialog) else dialog)

    QTimer.singleShot(700, look)
    assert window.open_project(folder)
    assert threads == [False]
    assert "Opening project" in seen[0]


def test_scores_arriving_never_move_the_rows_under_the_cursor(qtbot, tmp_path):
    from faceparse_app.uncertainty import rank_by_uncertainty
    from faceparse_app.widgets.image_list import SORT_UNCERTAINTY

    window = make_window(qtbot, tmp_path)
    image_list = window.image_list
    image_list.sort_box.setCurrentIndex(image_list.sort_box.findData(SORT_UNCERTAINTY))
    before = image_list.visible_ids()
    scores = {image_id: 0.1 * (k + 1) for k, image_id in enumerate(before)}  # least sure last
    image_list.set_scores(scores)
    assert image_list.visible_ids() == before and not image_list.resort_button.isHidden()
    QTest.mouseClick(image_list.resort_button, Qt.MouseButton.LeftButton)
    assert image_list.visible_ids() == rank_by_uncertainty(scores) and image_list.resort_button.isHidden()


def test_the_list_shows_each_images_edits_once_saved(qtbot, tmp_path):
    from faceparse_app.widgets.image_table import Column
    from tests.app.test_gui_canvas import drag

    window = make_window(qtbot, tmp_path)
    session, image_list = window.session, window.image_list
    first = session.current.id
    assert image_list.row_text(first, Column.ACTIONS) == ""
    drag(window.canvas, [(10, 10), (30, 10)])
    drag(window.canvas, [(10, 30), (30, 30)])
    window._step(1)  # saves the first image
    assert image_list.row_text(first, Column.ACTIONS) == str(session.project.get(first).actions) == "2"
