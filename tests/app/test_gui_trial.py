"""Defects found in a user's trial of the real window (the h31 trial), each driven the way
the user met it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from faceparse_app.widgets.image_table import Column
from tests.app.test_gui_canvas import click, drag, key, make_project, make_window


def error_shown(window) -> bool:
    """An error is on the message bar."""
    bar = window.message_bar
    return bool(bar.message) and bar.level == "error"


def _two_faces_one_found(qtbot, tmp_path, monkeypatch):
    from tests.app.test_gui_faces import two_faces_one_found

    return two_faces_one_found(qtbot, tmp_path, monkeypatch)


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
    qtbot.waitUntil(
        lambda: recent.visualItemRect(recent.item(0)).bottom() < recent.viewport().height()
    )
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


def test_the_lists_time_and_edits_follow_every_save_not_only_status_changes(qtbot, tmp_path):
    # The trial: after the first save made the image "in progress", the Time and Edits
    # columns stayed at "3 s" and "1" through a fill, two undos, a redo and an autosave (the
    # store had 20.8 s and 5 edits).
    window = make_window(qtbot, tmp_path)
    session, image_list = window.session, window.image_list
    first = session.current.id
    drag(window.canvas, [(10, 10), (30, 10)])
    assert session.save()  # "new" -> "in progress": the row is read again
    assert image_list.row_text(first, Column.ACTIONS) == "1"
    drag(window.canvas, [(10, 30), (30, 30)])
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    session.autosave()  # the timer's save, on the background writer
    qtbot.waitUntil(lambda: session.project.get(first).actions == 3)
    qtbot.waitUntil(lambda: image_list.row_text(first, Column.ACTIONS) == "3")
    window._step(1)  # a switch saves too; the status stays "in progress"
    drag(window.canvas, [(10, 50), (30, 50)])
    window._step(-1)
    assert image_list.row_text(first, Column.ACTIONS) == "3"
    second = session.project.get(window.image_list.visible_ids()[1])
    assert image_list.row_text(second.id, Column.ACTIONS) == str(second.actions) == "1"


def test_a_face_change_keeps_the_strokes_made_in_its_crop(qtbot, tmp_path, monkeypatch):
    # The trial: a skin blob relabeled to background on a dress came back as hair when a face
    # box drawn beside it was parsed; the face's crop took the model's pixels over the edit.
    from tests.app.test_gui_faces import (
        face_tool,
        kept,
        mask_of,
        wait_parsed,
    )

    window, session, version = _two_faces_one_found(qtbot, tmp_path, monkeypatch)
    window.state.set_class(4)
    drag(window.canvas, [(80, 30), (110, 30)])  # where the face drawn next will be
    drag(window.canvas, [(80, 50), (110, 50)])
    window.undo_action.trigger()  # an undone stroke is no edit to keep
    stroke = session.document.label == 4
    steps = len(session.document.history)

    face_tool(window)
    drag(window.canvas, [(66, 2), (126, 62)])
    wait_parsed(qtbot, session)  # the face's step comes at once, its pixels later
    assert len(session.document.history) == steps + 1
    label = session.document.label
    drawn = mask_of(kept(window)[1], label.shape)
    assert (drawn & stroke).sum() > 20
    assert (label[stroke] == 4).all()  # the stroke is kept
    assert label[:, 64:][~stroke[:, 64:]].any()  # the new face is parsed around it
    assert "kept" in window.statusBar().currentMessage()
    # Removing the face again keeps the stroke too.
    click(window.canvas, 100, 10)
    key(window, Qt.Key.Key_Delete)
    wait_parsed(qtbot, session)  # the face's step comes at once, its pixels later
    assert len(session.document.history) == steps + 2
    assert (session.document.label[stroke] == 4).all()


def test_a_fine_tuning_that_cannot_start_does_not_say_it_stopped_with_an_error(qtbot, tmp_path):
    # The trial: "Start fine-tuning" with no labeled face said "Training stopped with an
    # error; no model was published and no label was changed" above the real reason.
    window = make_window(qtbot, tmp_path)
    progress = window.train_panel.progress
    QTest.mouseClick(window.train_panel.form.finetune_button, Qt.MouseButton.LeftButton)
    assert (
        "No labeled faces yet" in progress.error_label.text()
        and not progress.error_label.isHidden()
    )
    assert "error" not in progress.status_label.text()
    assert progress.status_label.text() == "Fine-tuning did not start."
    assert window.loop_state.running is None


def test_the_export_readme_counts_a_short_session_in_seconds_not_as_zero_hours():
    # The trial's export README said "0.00 h of active labeling in all" for 14 s of work.
    from faceparse_app.export_files import total_time

    assert total_time(14.3) == "14 s"
    assert total_time(360.0) == "6.0 min"
    assert total_time(3 * 3600 + 60) == "3.02 h"


def test_a_photo_without_a_face_says_how_to_finish_it_and_stops_asking_once_labeled(
    qtbot, tmp_path, monkeypatch
):
    # The trial: a photo of a face mask (no face) said only "draw a box around each face";
    # accepting it as all background (A) left that request up.
    from tests.app.test_gui_faces import no_face_found
    from tests.app.test_gui_model_loop import WAIT_MS

    window = no_face_found(qtbot, tmp_path, monkeypatch, n=2)
    bar = window.message_bar
    assert "press A if it has none" in bar.message
    key(window, Qt.Key.Key_A)
    assert window.session.current.status == "labeled"
    assert "No face found" not in bar.message and window.face_offer.isHidden()
    # Back on it later: a labeled photo asks for nothing.
    first = window.session.current.id
    window._step(1)
    qtbot.waitUntil(lambda: "No face found" in bar.message, timeout=WAIT_MS)
    window._step(-1)
    assert window.session.current.id == first
    qtbot.waitUntil(lambda: window.model_loop.confidence is not None, timeout=WAIT_MS)  # parsed
    assert "No face found" not in bar.message and window.face_offer.isHidden()


def test_the_hover_readout_follows_an_edit_and_a_zoom_under_a_resting_cursor(qtbot, tmp_path):
    # The trial: after a fill turned the background under the cursor into skin, the status
    # bar still said "0 background"; after a relabel, "1 skin" over what was background.
    from faceparse_app.widgets.tool_state import Tool
    from tests.app.test_gui_canvas import point

    window = make_window(qtbot, tmp_path)
    canvas, status = window.canvas, window.canvas_status
    QTest.mouseMove(canvas, point(canvas, 5, 5))
    assert status.cls.text() == "0 background"
    window.state.set_tool(Tool.FILL)
    window.state.set_class(6)
    click(canvas, 5, 5)
    assert status.cls.text() == "6 nose"
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert status.cls.text() == "0 background"
    # Zoomed about the view's centre, another pixel rests under the cursor: it is named.
    key(window, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    x, y = canvas.widget_to_image(canvas.cursor_pos)
    assert status.position.text() == f"x {int(x)}, y {int(y)}"


def test_a_photo_with_several_faces_exports_the_landmarks_of_its_largest_face(tmp_path):
    # The trial: the selfie with six faces exported one set of 106 points spread over
    # everyone (the eye centres on two different people, the mouth corners on a third).
    import cv2
    import numpy as np

    from faceparse_app.export import export_project
    from faceparse_app.project import Project
    from tests.app.test_export import _assert_key_points
    from tests.conftest import synthetic_face
    from trainer.data.imageio import write_image
    from trainer.data.lapa import read_landmarks
    from trainer.faces import Face

    small_image, small_label = synthetic_face(64, seed=0)
    big_image, big_label = synthetic_face(64, seed=1)
    big_image = cv2.resize(big_image, (96, 96), interpolation=cv2.INTER_LINEAR)
    big_label = cv2.resize(big_label, (96, 96), interpolation=cv2.INTER_NEAREST)
    image = np.zeros((96, 160, 3), np.uint8)
    label = np.zeros((96, 160), np.uint8)
    image[16:80, :64], label[16:80, :64] = small_image, small_label
    image[:, 64:], label[:, 64:] = big_image, big_label
    root = tmp_path / "project"
    root.mkdir()
    write_image(root / "two.png", image)
    with Project.open(root) as project:
        rec = project.images()[0]
        project.set_faces(rec, [
            Face(box=(0.0, 16.0, 64.0, 80.0), score=0.9),
            Face(box=(64.0, 0.0, 160.0, 96.0), score=0.9),
        ])  # fmt: skip
        project.save_label(project.get(rec.id), label, status="labeled")
    export_project(root, tmp_path / "lapa", val_fraction=0, test_fraction=0)
    points = read_landmarks(tmp_path / "lapa" / "train" / "landmarks" / "two.txt")
    assert (points[:, 0] >= 63).all()  # every point on the big face
    only_big = label.copy()
    only_big[:, :64] = 0
    _assert_key_points(points, only_big)
    assert "largest face" in (tmp_path / "lapa" / "README.txt").read_text()


def test_an_export_says_which_edited_images_it_left_out_and_how_to_include_them(qtbot, tmp_path):
    # The trial: an image edited for minutes but not marked labeled was left out of the export
    # without a word ("Exported to ...: train 0, val 0, test 0, skipped 0.").
    window = make_window(qtbot, tmp_path)
    session = window.session
    drag(window.canvas, [(10, 10), (30, 10)])
    session.step(1)  # saved: in progress
    drag(window.canvas, [(10, 20), (30, 20)])
    session.set_status("labeled")
    counts = window.export_lapa(tmp_path / "lapa")
    assert counts is not None and counts["train"] + counts["val"] + counts["test"] == 1
    text = window.message_bar.message
    assert text.startswith(f"Exported to {tmp_path / 'lapa'}")
    assert "1 in progress" in text and "not exported" in text and "Ctrl+Return" in text


def test_a_long_recent_project_path_keeps_its_folder_name_in_view(qtbot, tmp_path):
    # The trial: the demo project's path was cut at the right ("/root/.local/share/FaceParse/
    # FaceParse St"), with a horizontal scroll bar, so its folder name never showed.
    window = make_window(qtbot, tmp_path, open_project=False)
    deep = tmp_path / ("a-very-long-folder-name-" * 6) / "faces"
    page = window.start_page
    page.set_recent([str(make_project(deep, n=1))])
    recent = page.recent
    assert recent.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert recent.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    assert recent.item(0).toolTip() == str(deep)


def test_a_face_drawn_counts_as_one_edit(qtbot, tmp_path, monkeypatch):
    # The trial: deleting one false face put 2 in the Edits column (the box change and its
    # re-parse were each counted); it is one undo step.
    from tests.app.test_gui_faces import face_tool, wait_parsed

    window, session, version = _two_faces_one_found(qtbot, tmp_path, monkeypatch)
    image_id, steps = session.current.id, len(session.document.history)
    face_tool(window)
    drag(window.canvas, [(66, 2), (126, 62)])
    wait_parsed(qtbot, session)  # the face's step comes at once, its pixels later
    assert len(session.document.history) == steps + 1
    assert session.save()
    assert session.project.get(image_id).actions == 1
    assert window.image_list.row_text(image_id, Column.ACTIONS) == "1"


def test_a_first_version_that_scored_below_the_starter_is_not_used(tmp_path):
    # The trial: the first fine-tuning scored 98.0% against the starter's 100.0%; the panel said
    # "starter stays in use" while the status bar said "model v0001" and pre-labels came from
    # it (with no active pointer yet, the store took the newest version as the active one).
    from faceparse_app.model_store import STARTER_ID, ModelStore
    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model, get_preset

    model = build_model(get_preset("tiny"), heads=("parsing",))
    starter = save_checkpoint(tmp_path / "starter.safetensors", model, "finetune")
    ckpt = save_checkpoint(tmp_path / "run.safetensors", model, "finetune")
    store = ModelStore(tmp_path / "models", starter_parser=starter)
    assert store.parser_for_prelabel() == (starter, STARTER_ID)
    v1 = store.publish(ckpt, "parser", {"activated": False}, activate=False)
    assert store.active("parser") is None
    assert store.parser_for_prelabel() == (starter, STARTER_ID)
    # Activated by hand, it is used; a second one kept aside leaves it in use.
    store.activate(v1.id)
    store.publish(ckpt, "parser", {}, activate=False)
    assert store.active("parser").id == v1.id


def test_an_accepted_prelabel_stays_the_models_label(qtbot, tmp_path):
    # The trial: two pre-labels accepted with A were recorded as labeled by hand; fine-tuning
    # then held one out as a "hand-labeled face" (the starter scored 100% on its own output, so
    # the new model was refused) and effort.csv said label_source "hand".
    import csv

    from faceparse_app.training import split_by_hand
    from tests.app.test_gui_model_loop import WAIT_MS, status, window_on_a_prelabel

    window, accepted, version = window_on_a_prelabel(qtbot, tmp_path, n=3)
    session = window.session
    key(window, Qt.Key.Key_A)
    assert session.project.get(accepted).status == "labeled"
    assert session.project.get(accepted).label_source == "model"
    # A corrected one is the annotator's.
    session.step(1)
    corrected = session.current.id
    qtbot.waitUntil(lambda: status(window, corrected) == ("pre-labeled", version), timeout=WAIT_MS)
    drag(window.canvas, [(10, 10), (30, 10)])
    key(window, Qt.Key.Key_A)
    assert session.project.get(corrected).label_source == "hand"
    files = window.model_loop.training.labeled_files()
    assert {f.name: f.by_hand for f in files} == {"f0.png": False, "f1.png": True}
    assert split_by_hand(files, 0.5, 0)[1] == []  # one hand-labeled face: nothing held out
    window.export_lapa(tmp_path / "lapa")
    with open(tmp_path / "lapa" / "effort.csv", encoding="utf-8", newline="") as f:
        sources = {r["original"]: r["label_source"] for r in csv.DictReader(f)}
    assert sources == {"f0.png": "model", "f1.png": "hand"}


def test_a_late_prelabel_fills_around_strokes_and_never_overwrites_them(qtbot, tmp_path):
    # A stroke made before the first pre-label arrived used to drop that pre-label entirely
    # (the h31 trial: a 12-megapixel photo painted at once kept one stroke and no face labels).
    import numpy as np

    from tests.app.test_gui_model_loop import (
        WAIT_MS,
        prediction,
        status,
        window_with_a_held_prelabel,
    )
    from trainer.data.imageio import read_label

    # The model is "still predicting" until the test opens the gate.
    window, gate, image_id, version = window_with_a_held_prelabel(qtbot, tmp_path)
    session = window.session
    # The canvas is usable while the prediction runs: the annotator paints.
    window.state.set_class(5)
    drag(window.canvas, [(30, 30), (40, 30)])
    stroke = session.document.label == 5
    gate.set()
    qtbot.waitUntil(lambda: window.model_loop.confidence is not None, timeout=WAIT_MS)
    label = session.document.label
    assert (label[stroke] == 5).all() and label[30, 35] == 5  # the stroke is kept
    predicted = prediction(window, version, image_id)
    np.testing.assert_array_equal(label[~stroke], predicted[~stroke])  # the model's, around it
    assert status(window, image_id)[0] != "pre-labeled"
    # One undo step takes the model's part back and leaves the stroke.
    window.undo_action.trigger()
    assert label[30, 35] == 5 and np.count_nonzero(label) == np.count_nonzero(label == 5)
    window.redo_action.trigger()
    assert session.save()
    assert status(window, image_id) == ("in_progress", None)
    np.testing.assert_array_equal(read_label(session.project.label_path(session.current)), label)
