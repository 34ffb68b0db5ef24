"""Projects in the main window: switching images, autosave, the image list, export, start page."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from faceparse_app.__main__ import main
from faceparse_app.main_window import MainWindow
from faceparse_app.project import Project
from faceparse_app.samples import sample_paths
from tests.app.test_gui_canvas import click, drag, key, make_project, make_window
from trainer.data.imageio import read_label
from trainer.data.lapa import LapaDataset


def saved_label(window, image_id: int) -> np.ndarray | None:
    """The label on disk, read the way every trainer reader reads it."""
    session = window.session
    path = session.project.label_path(session.project.get(image_id))
    return read_label(path) if path.exists() else None


def select(window, image_id: int) -> None:
    """Click the image's row in the list, as the user does."""
    rect = window.image_list.row_rect(image_id)
    QTest.mouseClick(
        window.image_list.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center()
    )


def test_switching_images_autosaves_and_keeps_undo_history(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    session = window.session
    first = session.current.id
    window.state.set_class(4)
    drag(window.canvas, [(10, 10), (20, 10)])
    drag(window.canvas, [(10, 30), (20, 30)])
    painted = session.document.label.copy()
    ids = window.image_list.visible_ids()
    select(window, ids[1])
    assert session.current.id == ids[1]
    assert np.array_equal(saved_label(window, first), painted)  # saved on switch
    assert session.project.get(first).status == "in_progress"
    drag(window.canvas, [(40, 40), (50, 40)])
    select(window, first)
    assert np.array_equal(session.document.label, painted)
    # Both strokes made before the switch are still undoable, one at a time.
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (session.document.label[10] == 4).any() and not (session.document.label[30] == 4).any()
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not session.document.label.any()
    key(window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert (session.document.label[10] == 4).any()
    # The other image kept its own stroke.
    assert (saved_label(window, ids[1])[40, 40:50] == 4).all()


def test_autosave_timer_writes_edits_without_any_switch(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, autosave_ms=200)
    session = window.session
    drag(window.canvas, [(5, 5), (25, 25)])
    painted = session.document.label.copy()
    assert painted.any()
    qtbot.waitUntil(
        lambda: (
            (lab := saved_label(window, session.current.id)) is not None
            and np.array_equal(lab, painted)
        ),
        timeout=5000,
    )
    assert not session.document.dirty


def test_close_saves_and_reopen_shows_labels(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    session = window.session
    image_id = session.current.id
    drag(window.canvas, [(30, 30), (35, 35)])
    painted = session.document.label.copy()
    root = session.project.root
    window.close()
    with Project.open(root) as project:
        assert np.array_equal(project.load_label(project.get(image_id)), painted)
    window2 = make_window(qtbot, tmp_path / "again", open_project=False)
    assert window2.open_project(root)
    window2.session.open_image(image_id)
    assert np.array_equal(window2.session.document.label, painted)


def test_image_list_status_filter_progress_and_next_unfinished(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    session, image_list = window.session, window.image_list
    assert image_list.progress.text() == "0 / 3 labeled"
    assert len(image_list.visible_ids()) == 3
    first = session.current.id
    drag(window.canvas, [(10, 10), (12, 12)])
    key(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # mark labeled
    assert session.project.get(first).status == "labeled"
    assert image_list.progress.text() == "1 / 3 labeled"
    image_list.set_status_filter("labeled")
    assert image_list.visible_ids() == [first]
    image_list.set_status_filter("new")
    assert first not in image_list.visible_ids() and len(image_list.visible_ids()) == 2
    image_list.set_status_filter("all")
    # N goes to the next unfinished image, skipping labeled ones and wrapping around.
    key(window, Qt.Key.Key_N)
    second = session.current.id
    assert second != first
    key(window, Qt.Key.Key_N)
    third = session.current.id
    assert third not in (first, second)
    key(window, Qt.Key.Key_N)
    assert session.current.id == second
    image_list.next_button.click()
    assert session.current.id == third


def test_export_lapa_reads_back_pixel_for_pixel(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    session = window.session
    labels = {}
    for image_id in window.image_list.visible_ids()[:2]:
        session.open_image(image_id)
        key(window, Qt.Key.Key_F)
        window.state.set_class(10)
        click(window.canvas, 1, 1)
        key(window, Qt.Key.Key_B)
        window.state.set_class(6)
        drag(window.canvas, [(30, 20), (30, 40)])
        labels[session.current.relpath] = session.document.label.copy()
        session.set_status("labeled")
    counts = window.export_lapa(tmp_path / "export")
    assert sum(counts[s] for s in ("train", "val", "test")) == 2
    assert "Exported" in window.message_bar.message
    read = {}
    for split in ("train", "val", "test"):
        if (tmp_path / "export" / split / "images").is_dir():
            for sample in LapaDataset(tmp_path / "export", split):
                read[sample.name] = sample.label
    assert {f"{name.rsplit('.', 1)[0]}" for name in labels} == set(read)
    for relpath, label in labels.items():
        assert np.array_equal(read[relpath.rsplit(".", 1)[0]], label)


def test_start_page_open_folder_recent_and_demo(qtbot, tmp_path, monkeypatch):
    window = make_window(qtbot, tmp_path, open_project=False)
    page = window.start_page
    assert window.stack.currentWidget() is page
    assert page.open_button.isVisible() and page.demo_button.isVisible()
    folder = make_project(tmp_path / "faces", n=2)
    monkeypatch.setattr(
        "faceparse_app.widgets.start_page.QFileDialog.getExistingDirectory",
        lambda *a, **k: str(folder),
    )
    page.open_button.click()
    assert window.session is not None and window.session.project.root == folder
    assert len(window.image_list.visible_ids()) == 2
    window.close_project()
    assert window.stack.currentWidget() is page
    assert page.recent.count() == 1 and page.recent.item(0).text() == str(folder.resolve())
    page.recent.itemActivated.emit(page.recent.item(0))
    assert window.session.project.root == folder
    window.close_project()
    page.demo_button.click()
    demo = tmp_path / "demo"
    assert window.session.project.root == demo
    names = {p.name for p in sample_paths()}
    assert len(names) >= 2 and names <= {p.name for p in demo.iterdir()}
    assert (demo / "SOURCES.md").is_file()
    assert window.session.document is not None and window.canvas.image_size == (512, 512)


def test_command_line_opens_folder(qtbot, tmp_path, monkeypatch):
    folder = make_project(tmp_path / "faces", n=1)
    shown = {}

    def fake_exec(self):
        window = next(
            w for w in self.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()
        )
        shown["root"] = window.session.project.root
        window.close()
        return 0

    monkeypatch.setattr("PySide6.QtWidgets.QApplication.exec", fake_exec)
    assert main([str(folder), "--settings", str(tmp_path / "s.ini")]) == 0
    assert shown["root"] == folder


def test_active_time_is_counted_on_save(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    session = window.session
    image_id = session.current.id
    assert session.project.get(image_id).active_seconds == 0
    drag(window.canvas, [(10, 10), (20, 20)])
    drag(window.canvas, [(30, 10), (40, 20)])
    assert session.save()
    assert session.project.get(image_id).active_seconds > 0


def test_prelabel_fills_an_image_without_a_label(qtbot, tmp_path):
    # Pre-labels arrive asynchronously from the model loop (issue 4) through
    # session.apply_prelabel; the model-driven path is tested in test_gui_model_loop.py.
    label = np.zeros((64, 64), np.uint8)
    label[16:48, 16:48] = 1
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(make_project(tmp_path / "project", n=2))
    session = window.session
    assert session.apply_prelabel(session.current.id, label, "test-model-1")
    assert (session.document.label[16:48, 16:48] == 1).all()
    rec = session.project.get(session.current.id)
    assert rec.status == "pre-labeled" and rec.model_version == "test-model-1"
    np.testing.assert_array_equal(saved_label(window, rec.id), label)
    # Pre-labels are edited like any label.
    window.state.set_class(6)
    drag(window.canvas, [(30, 30), (32, 32)])
    assert session.document.label[31, 31] == 6
    # ... and a later prediction never replaces an edited label.
    assert not session.apply_prelabel(rec.id, np.zeros((64, 64), np.uint8), "test-model-2")
    assert session.document.label[31, 31] == 6
