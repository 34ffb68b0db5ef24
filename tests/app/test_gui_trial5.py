"""Defects found in the fifth user trial of the real window (t42): a keyboard-first session on a
large photo, group and in-the-wild photos, crash and recovery, the export; each driven the way
the user met it."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.app.test_gui_canvas import click, drag, key, make_window
from trainer.data.imageio import write_image

CTRL = Qt.KeyboardModifier.ControlModifier
HAIR, SKIN, NOSE = 10, 1, 6


def large_photo_window(qtbot, tmp_path, size=(3000, 4000)):
    """The window on a folder with one 4000×3000 photo (a camera's 12 megapixels)."""
    folder = tmp_path / "large"
    folder.mkdir()
    image = np.full((*size, 3), 90, np.uint8)
    image[800:2200, 1500:2500] = 200
    write_image(folder / "camera.png", image)
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    return window


def test_a_fill_of_a_large_photo_can_still_be_undone_after_the_next_stroke(qtbot, tmp_path):
    # The trial: on a 4000×3000 photo, F filled the background with hair by mistake, then a
    # brush stroke fixed an eye; two Ctrl+Z took the stroke back but not the fill: the fill's
    # step (24 MB) was over the undo budget of 16 MB per image and was dropped at the stroke.
    window = large_photo_window(qtbot, tmp_path)
    doc = window.session.document
    before = doc.label.copy()
    key(window, Qt.Key.Key_F)
    key(window, Qt.Key.Key_Minus)  # hair
    drag(window.canvas, [(10, 10), (10, 10)])
    assert (doc.label == HAIR).mean() > 0.9
    key(window, Qt.Key.Key_B)
    key(window, Qt.Key.Key_1)
    drag(window.canvas, [(2000, 1500), (2100, 1500)])
    key(window, Qt.Key.Key_Z, CTRL)
    key(window, Qt.Key.Key_Z, CTRL)
    np.testing.assert_array_equal(doc.label, before)
    key(window, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert (doc.label == HAIR).mean() > 0.9


def test_a_fill_or_relabel_click_on_a_protected_class_says_why_nothing_changed(qtbot, tmp_path):
    # The trial: skin protected (to paint hair over a face safely), later R on a wrong skin blob
    # and F on the skin did nothing, without a word: the annotator thought the tool was broken.
    window = make_window(qtbot, tmp_path)
    doc, canvas = window.session.document, window.canvas
    window.state.set_radius(4)
    key(window, Qt.Key.Key_1)
    drag(canvas, [(10, 30), (50, 30)])
    window.palette.protect_boxes[SKIN].click()
    painted = doc.label.copy()
    for tool in (Qt.Key.Key_F, Qt.Key.Key_R):
        window.message_bar.hide()
        key(window, tool)
        key(window, Qt.Key.Key_6)
        click(canvas, 30, 30)
        np.testing.assert_array_equal(doc.label, painted)
        text = window.message_bar.text.text()
        assert window.message_bar.isVisible() and "skin is protected" in text and "Protect" in text


def test_a_photo_without_a_face_is_exported_without_made_up_landmarks(tmp_path):
    # The trial: a photo of a face mask (no face: accepted all background) was exported with a
    # landmarks file of 106 points, all of them the template's guess, listed as "derived" like
    # a face's; a landmark model trained on the export would learn a face where there is none.
    from faceparse_app.export import export_project
    from faceparse_app.project import Project
    from tests.conftest import synthetic_face

    root = tmp_path / "project"
    root.mkdir()
    face, face_label = synthetic_face(64, seed=0)
    write_image(root / "face.png", face)
    write_image(root / "mask.png", np.full((64, 96, 3), 170, np.uint8))
    with Project.open(root) as project:
        for rec in project.images():
            label = face_label if rec.relpath == "face.png" else np.zeros((64, 96), np.uint8)
            project.save_label(rec, label, status="labeled")
    export_project(root, tmp_path / "lapa", val_fraction=0, test_fraction=0)
    landmarks = tmp_path / "lapa" / "train" / "landmarks"
    assert (landmarks / "face.txt").is_file()
    assert not (landmarks / "mask.txt").exists()
    readme = (tmp_path / "lapa" / "README.txt").read_text()
    assert "train/landmarks/mask.txt" not in readme
    assert "no face" in readme and "train/images/mask.jpg" in readme


def test_the_export_form_stays_open_and_says_why_a_folder_of_other_files_is_refused(qtbot, tmp_path):
    # The trial: typed a folder holding the user's notes into the export form and pressed
    # Export; the form closed, the export failed on the message bar, and the form (the folder,
    # the shares) had to be opened and filled again.
    from faceparse_app.widgets.export_dialog import ExportDialog

    project = tmp_path / "project"
    project.mkdir()
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    dialog = ExportDialog(project)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.folder_edit.setText(str(folder))
    dialog.export_button.click()
    assert dialog.isVisible() and dialog.result() != dialog.DialogCode.Accepted
    assert dialog.problem_label.isVisible() and "not empty" in dialog.problem_label.text()
    dialog.folder_edit.setText(str(tmp_path / "new"))  # a new folder: accepted
    assert not dialog.problem_label.isVisible()
    dialog.export_button.click()
    assert dialog.result() == dialog.DialogCode.Accepted
    assert (folder / "notes.txt").read_text() == "mine"


def test_relabel_in_a_face_drawn_by_hand_uses_that_faces_parse(qtbot, tmp_path, monkeypatch):
    # The trial: on a group photo the finder missed a face; with R chosen the annotator drew a
    # box round it (W), then R-clicked a wrong blob in it. The click used the probabilities
    # computed before the box (no crop there: background, sure), so the blob, or the whole
    # connected part, turned to background instead of the model's next class.
    from faceparse_app.assist import ClassProbabilities, Relabeler
    from faceparse_app.document import LabelDocument
    from tests.app.test_gui_faces import face_tool, kept, two_faces_one_found, wait_parsed
    from trainer.data.imageio import read_image
    from trainer.predict import Predictor

    window, session, version = two_faces_one_found(qtbot, tmp_path, monkeypatch)
    key(window, Qt.Key.Key_R)
    assert window.canvas.assist.probabilities() is not None  # computed with the left face only
    face_tool(window)
    drag(window.canvas, [(66, 2), (126, 62)])
    wait_parsed(qtbot, session)
    before = session.document.label.copy()
    ys, xs = np.nonzero(before[:, 64:] > 0)
    x, y = int(xs[len(xs) // 2]) + 64, int(ys[len(ys) // 2])  # a labeled pixel of the drawn face
    key(window, Qt.Key.Key_R)
    click(window.canvas, x, y)

    predictor = Predictor.from_checkpoint(window.model_loop.store.get(version).path, device="cpu")
    image = read_image(session.project.image_path(session.current))
    probs = ClassProbabilities.from_predictor(predictor, image, kept(window))
    expected = LabelDocument(before.copy(), num_classes=11)
    Relabeler().click(expected, probs, x, y)
    np.testing.assert_array_equal(session.document.label, expected.label)


def test_the_relabel_probabilities_follow_the_faces_found_with_their_landmarks():
    # The finder's faces carry landmark arrays: the faces are compared by value, once per set.
    from faceparse_app.assist import AssistContext
    from trainer.faces import Face

    points = np.arange(10, dtype=np.float32).reshape(5, 2)
    found = [Face(box=(0.0, 0.0, 32.0, 32.0), score=0.9, landmarks=points)]
    image = np.zeros((32, 64, 3), np.uint8)
    context = AssistContext(image=lambda: image, model=lambda: ("model", "v1"), faces=lambda: found)
    context._compute = lambda *args: args[-1]  # the faces it was asked to parse
    first = context.prefetch()
    found = [Face(box=(0.0, 0.0, 32.0, 32.0), score=0.9, landmarks=points.copy())]  # the same
    assert context.prefetch() is first
    found = [*found, Face(box=(32.0, 0.0, 64.0, 32.0), source="user")]  # a box drawn
    assert len(context.probabilities()) == 2


def test_the_relabel_probabilities_are_never_the_last_images():
    # The next photo of a folder of aligned crops (same size, the same whole-photo face) is
    # often given the freed array's id: keyed by id(image), R used the last photo's parse there.
    from faceparse_app.assist import AssistContext

    shown: dict[str, np.ndarray | None] = {"image": np.zeros((32, 32, 3), np.uint8)}
    context = AssistContext(image=lambda: shown["image"], model=lambda: ("model", "v1"), faces=lambda: None)
    context._compute = lambda source, version, image, faces: int(image[0, 0, 0])  # which image
    assert context.probabilities() == 0
    shown["image"] = None  # the session lets the photo go before it reads the next one
    shown["image"] = np.full((32, 32, 3), 5, np.uint8)
    assert context.probabilities() == 5


def test_the_brush_size_and_overlay_opacity_are_as_the_last_session_left_them(qtbot, tmp_path):
    # The trial: every launch began at an 8 px brush and the default opacity, though the
    # annotator works at 24 px on a 12-megapixel photo with the labels at a third.
    window = make_window(qtbot, tmp_path)
    for _ in range(8):
        key(window, Qt.Key.Key_BracketRight)
    window.tool_bar.opacity_slider.setValue(33)
    radius = window.state.radius
    assert radius > 8
    window.close()
    again = make_window(qtbot, tmp_path)  # the same settings file
    assert again.state.radius == radius
    assert again.tool_bar.opacity_slider.value() == 33 and abs(again.state.opacity - 0.33) < 1e-6


def test_an_edit_with_the_labels_hidden_shows_them_again(qtbot, tmp_path):
    # The trial: H hid the labels to look at the photo; the next brush stroke painted the coat
    # "left eye" unseen (the edit count went up, nothing on screen changed).
    from tests.app.test_gui_canvas import pixel_colour

    window = make_window(qtbot, tmp_path)
    canvas = window.canvas
    window.state.set_radius(4)
    photo = pixel_colour(canvas, 30, 30)
    key(window, Qt.Key.Key_H)
    assert not window.state.overlay_visible
    key(window, Qt.Key.Key_E)  # looking does not show them: choosing a tool is no edit
    key(window, Qt.Key.Key_I)
    click(canvas, 30, 30)  # nor a pick
    assert not window.state.overlay_visible
    key(window, Qt.Key.Key_B)
    key(window, Qt.Key.Key_4)
    drag(canvas, [(20, 30), (40, 30)])
    assert window.session.document.label[30, 30] == 4
    assert window.state.overlay_visible and window.tool_bar.overlay_action.isChecked()
    assert pixel_colour(canvas, 30, 30) != photo  # the stroke is on screen


def test_a_folder_that_cannot_be_opened_is_named_once(qtbot, tmp_path):
    # The trial: a read-only folder said "Cannot open /tmp/ro: /tmp/ro is read-only; ...", and a
    # recent project deleted since "Cannot open /x/gone: /x/gone: folder not found".
    window = make_window(qtbot, tmp_path, open_project=False)
    gone = tmp_path / "gone"
    assert not window.open_project(gone)
    text = window.message_bar.message
    assert text.count(str(gone)) == 1 and text.startswith("Cannot open") and "folder not found" in text


def test_a_reexport_says_which_files_of_yours_it_kept_where_lapa_loaders_read(tmp_path):
    # The trial: a photo of the user's own left in train/images/ of an earlier export was kept
    # there by the next export without a word; training on the export then stopped with
    # "train/images/zz_mine.jpg: no label".
    from faceparse_app.export import export_message, export_project
    from faceparse_app.project import Project
    from tests.conftest import synthetic_face
    from trainer.data.lapa import LapaDataset
    from trainer.errors import LabelMapError

    root = tmp_path / "project"
    root.mkdir()
    for i in range(3):
        image, label = synthetic_face(64, seed=i)
        write_image(root / f"f{i}.png", image)
    with Project.open(root) as project:
        for rec in project.images():
            project.save_label(rec, synthetic_face(64, seed=int(rec.relpath[1]))[1], status="labeled")
    out = tmp_path / "lapa"
    assert "stray" not in export_project(root, out, val_fraction=0, test_fraction=0)
    (out / "train" / "images" / "zz_mine.jpg").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")  # beside the layout: harmless, nothing to say
    counts = export_project(root, out, val_fraction=0, test_fraction=0)
    assert (out / "train" / "images" / "zz_mine.jpg").read_bytes() == b"mine"  # still kept
    with pytest.raises(LabelMapError):
        LapaDataset(out, "train")[3]  # what a loader makes of it
    assert counts["stray"] == 1
    text = export_message(out, counts, {})
    assert "1 file of yours is in images/" in text and "README names it" in text
    readme = (out / "README.txt").read_text()
    assert "train/images/zz_mine.jpg" in readme and "notes.txt" not in readme


def test_the_parsing_note_of_a_face_drawn_in_a_photo_without_one_says_when_it_is_done(qtbot, tmp_path, monkeypatch):
    # The trial: on the photo with no face found, a box drawn by hand put up "Parsing the face
    # you drew in noface_wall.jpg; ..." and it stayed so after the face's pixels had come.
    from tests.app.test_gui_faces import face_tool, no_face_found, wait_parsed

    window = no_face_found(qtbot, tmp_path, monkeypatch)
    bar = window.message_bar
    face_tool(window)
    drag(window.canvas, [(4, 2), (60, 62)])
    wait_parsed(qtbot, window.session)
    assert bar.message.startswith("Parsing the face you drew in f0.png: done")
    assert "draw a box around each other face" in bar.message
