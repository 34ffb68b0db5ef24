"""Gaps found in the fourth user trial of the real window (t38): group photos (undoing a face
box, stepping from face to face), photos copied into an open project, a very large image at
scan; each driven the way the user met it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from faceparse_app.project import Project
from tests.app.test_gui_canvas import drag, key
from tests.app.test_gui_faces import (
    LEFT,
    face_tool,
    kept,
    two_faces,
    two_faces_one_found,
    use_finder,
    wait_prelabeled,
)
from tests.app.test_gui_model_loop import WAIT_MS, open_window, publish_parser
from tests.conftest import synthetic_face
from trainer.data.imageio import write_image

CTRL = Qt.KeyboardModifier.ControlModifier


def boxes(faces) -> list[tuple[float, ...]]:
    return [tuple(round(v) for v in f.box) for f in faces]


def test_undo_of_a_drawn_face_box_takes_the_box_with_its_pixels_and_redo_brings_both(qtbot, tmp_path, monkeypatch):
    # The trial: on a group photo the user drew a box round the face the finder missed; Ctrl+Z
    # put its pixels back, but the box stayed on screen and in the project (after a reopen too).
    window, session, version = two_faces_one_found(qtbot, tmp_path, monkeypatch, n=2)
    folder = session.project.root
    image_id = session.current.id
    before = session.document.label.copy()
    face_tool(window)
    drag(window.canvas, [(66, 2), (126, 62)])
    qtbot.waitUntil(lambda: not np.array_equal(session.document.label, before), timeout=WAIT_MS)
    after = session.document.label.copy()
    drawn = boxes(kept(window))
    assert len(drawn) == 2 and boxes(window.canvas.faces) == drawn

    key(window, Qt.Key.Key_Z, CTRL)
    np.testing.assert_array_equal(session.document.label, before)
    assert boxes(kept(window)) == boxes([LEFT])  # in the store ...
    assert boxes(window.canvas.faces) == boxes([LEFT])  # ... and on screen
    key(window, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(session.document.label, after)
    assert boxes(kept(window)) == drawn and boxes(window.canvas.faces) == drawn

    # Undone again, it stays undone across an image switch (the re-parse with one face does
    # not bring the box back) ...
    key(window, Qt.Key.Key_Z, CTRL)
    key(window, Qt.Key.Key_PageDown)
    assert session.current.id != image_id
    key(window, Qt.Key.Key_PageUp)
    assert session.current.id == image_id
    qtbot.waitUntil(lambda: window.model_loop.confidence is not None, timeout=WAIT_MS)
    assert boxes(window.canvas.faces) == boxes([LEFT]) and boxes(kept(window)) == boxes([LEFT])
    np.testing.assert_array_equal(session.document.label, before)
    # ... and a reopen.
    assert session.save()
    window.close_project()
    with Project.open(folder) as project:
        assert boxes(project.faces(project.get(image_id))) == boxes([LEFT])


def test_undo_of_a_face_box_before_its_pixels_come_takes_the_box_back(qtbot, tmp_path, monkeypatch):
    # Ctrl+Z pressed at once, while the new face is still being parsed: the box goes, and the
    # parse, when it comes, does not paint the face that is no longer there.
    window, session, version = two_faces_one_found(qtbot, tmp_path, monkeypatch)
    before = session.document.label.copy()
    queue = window.model_loop.queue
    face_tool(window)
    queue.forget(session.current.id)  # no cached result: the parse is still to come
    drag(window.canvas, [(66, 2), (126, 62)])
    assert len(kept(window)) == 2
    key(window, Qt.Key.Key_Z, CTRL)
    assert boxes(kept(window)) == boxes([LEFT]) and boxes(window.canvas.faces) == boxes([LEFT])
    qtbot.waitUntil(lambda: window.model_loop.confidence is not None and len(window.canvas.faces) == 1, timeout=WAIT_MS)
    qtbot.wait(300)
    np.testing.assert_array_equal(session.document.label, before)
    assert boxes(kept(window)) == boxes([LEFT])


def test_rescan_takes_in_photos_copied_into_the_open_folder_and_keeps_the_image_and_labels(qtbot, tmp_path, monkeypatch):
    # The trial: photos copied into the folder of an open project showed up only after
    # File → Close project and a reopen.
    import shutil
    import threading

    import faceparse_app.project as project_module
    from tests.app.test_gui_canvas import make_window

    window = make_window(qtbot, tmp_path)
    session = window.session
    folder = session.project.root
    shown = session.current
    other = next(r for r in session.records() if r.id != shown.id)
    session.open_image(other.id)
    window.state.set_class(3)
    drag(window.canvas, [(10, 10), (30, 10)])
    assert session.save() and session.set_status("labeled")
    labeled = session.document.label.copy()
    session.open_image(shown.id)
    drag(window.canvas, [(10, 40), (30, 40)])  # unsaved edits on screen
    edited = session.document.label.copy()
    gone = next(r for r in session.records() if r.id not in (shown.id, other.id))

    shutil.copy(folder / shown.relpath, folder / "copied1.png")
    write_image(folder / "copied2.png", synthetic_face(64, seed=7)[0])
    (folder / other.relpath).rename(folder / "renamed.png")  # its label goes with it
    (folder / gone.relpath).unlink()
    threads = []
    real_scan = project_module.scan_images
    monkeypatch.setattr(project_module, "scan_images", lambda p: threads.append(threading.current_thread()) or real_scan(p))
    action = window.rescan_action
    assert "F5" in action.toolTip() and [k.toString() for k in action.shortcuts()] == ["F5"]
    key(window, Qt.Key.Key_F5)
    assert threads and threads[0] is not threading.main_thread()  # off the GUI thread
    text = window.message_bar.message
    assert "2 images added" in text and "1 image gone missing" in text and gone.relpath in text
    assert "1 image renamed" in text
    # Listed without a reopen; the image on screen and its edits stay.
    listed = {r.relpath: r for r in session.records()}
    assert {"copied1.png", "copied2.png", "renamed.png"} <= set(listed)
    assert listed[gone.relpath].missing
    assert len(window.image_list.model.visible_ids()) >= 4
    assert session.current.id == shown.id
    selected = window.image_list.list.selectionModel().currentIndex().row()
    assert selected == window.image_list.model.row_of(shown.id)  # still highlighted in the list
    np.testing.assert_array_equal(session.document.label, edited)
    # The renamed photo kept its label and status.
    renamed = listed["renamed.png"]
    assert renamed.id == other.id and renamed.status == "labeled"
    np.testing.assert_array_equal(session.project.load_label(renamed), labeled)
    # A second rescan finds nothing new.
    key(window, Qt.Key.Key_F5)
    assert "no new or missing images" in window.message_bar.message


def test_tab_and_shift_tab_step_from_face_to_face_of_a_group_photo_zooming_to_each(qtbot, tmp_path, monkeypatch):
    # The trial: a group photo had no key to go from one face to the next; the user zoomed
    # and panned by hand to each face.
    from faceparse_app.widgets.help_dialogs import shortcuts_html
    from trainer.faces import Face

    right = Face(box=(70.0, 4.0, 124.0, 60.0), score=0.9, box_framing=(0.5, 0.5, 1.0))
    use_finder(monkeypatch, [right, LEFT])  # the finder's order is not left to right
    folder = two_faces(tmp_path / "project")
    version = publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder)
    wait_prelabeled(qtbot, window, version)
    canvas = window.canvas
    qtbot.waitUntil(lambda: len(canvas.faces) == 2, timeout=WAIT_MS)
    fit_scale = canvas.scale

    def on_screen(face) -> tuple[float, float, float, float]:
        tl, br = canvas.image_to_widget(*face.box[:2]), canvas.image_to_widget(*face.box[2:])
        return tl.x(), tl.y(), br.x(), br.y()

    def shown_alone(face) -> bool:
        x0, y0, x1, y1 = on_screen(face)
        inside = x0 >= 0 and y0 >= 0 and x1 <= canvas.width() and y1 <= canvas.height()
        big = max(x1 - x0, y1 - y0) > 0.5 * min(canvas.width(), canvas.height())
        return inside and big

    key(window, Qt.Key.Key_Tab)
    assert canvas.faces[canvas.selected_face].box == LEFT.box  # left to right
    assert canvas.scale > fit_scale and shown_alone(LEFT)
    assert "Face 1 of 2" in window.statusBar().currentMessage()
    key(window, Qt.Key.Key_Tab)
    assert canvas.faces[canvas.selected_face].box == right.box and shown_alone(right)
    assert "Face 2 of 2" in window.statusBar().currentMessage()
    key(window, Qt.Key.Key_Tab)  # round again
    assert canvas.faces[canvas.selected_face].box == LEFT.box
    key(window, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert canvas.faces[canvas.selected_face].box == right.box
    # Named in the tooltips and in Help → Keyboard shortcuts.
    assert "Tab" in window.next_face_action.toolTip() and "Shift+Tab" in window.previous_face_action.toolTip()
    sheet = shortcuts_html(window)
    assert "Next face" in sheet and "Previous face" in sheet and "Shift+Tab" in sheet


def test_a_very_large_image_is_flagged_in_the_app_words_without_pillows_warning_at_scan(qtbot, tmp_path, recwarn, capfd, caplog):
    # The trial: a 12000×9000 PNG in the folder printed Pillow's DecompressionBombWarning
    # ("Image size (108000000 pixels) exceeds limit ... could be decompression bomb DOS
    # attack") to the terminal at scan; the list flags the image as too large, in the app's
    # own words, which is all the user needs. The limit is 250 MP since photos of 108 and
    # 200 MP are labeled (b57): the photo over it is now 300 MP.
    from PIL import Image

    from tests.app.test_gui_model_loop import project_with

    folder = project_with(tmp_path / "project", n=2)
    Image.new("1", (20000, 15000)).save(folder / "huge.png")  # small on disk, 300 megapixels
    publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder)
    huge = next(r.id for r in window.session.records() if r.relpath == "huge.png")
    table = window.image_list.model
    qtbot.waitUntil(lambda: "over the limit" in table.tooltip(huge), timeout=WAIT_MS)
    key(window, Qt.Key.Key_F5)  # a rescan reads the headers again (and tries it again)
    qtbot.wait(1500)
    bombs = [w for w in recwarn.list if "DecompressionBomb" in w.category.__name__]
    assert not bombs, [str(w.message) for w in bombs]
    assert "DecompressionBomb" not in capfd.readouterr().err
    # The log names it once (it printed one line per try: the look-ahead, the sweep, a rescan).
    said = [r for r in caplog.records if "huge.png" in r.getMessage()]
    assert len(said) == 1 and "over the limit" in said[0].getMessage()
