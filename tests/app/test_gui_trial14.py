"""Defects found in the fourteenth user trial of the real window (t70): a team lead's day of work
in one project across sessions (photos renamed, renumbered, moved and replaced in the file manager
between sessions), two windows on one folder, exports and imports over earlier work. Real photos,
copied into a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceparse_app.widgets.image_table import Column
from tests.app.conftest import PORTRAITS
from tests.app.test_gui_canvas import drag, make_window

EYE, BROW = 4, 2


def open_on(qtbot, tmp_path: Path, folder: Path):
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    return window


def stroke(window, y: int, cls: int) -> None:
    window.state.set_class(cls)
    window.state.set_radius(6)
    drag(window.canvas, [(50, y), (150, y)])


def work_on(window, name: str, y: int, cls: int, status: str | None = None) -> np.ndarray:
    """Open photo ``name``, paint a stroke of ``cls`` at row ``y``, mark it ``status`` if given;
    the label saved."""
    session = window.session
    session.open_image(session.project.find(name).id)
    stroke(window, y, cls)
    if status is not None:
        assert session.set_status(status)
    assert session.save()
    return session.document.label.copy()


def test_photos_renumbered_between_sessions_keep_their_own_labels(qtbot, tmp_path, numbered, shared_data):
    # The trial: 1.jpg labeled, 2.jpg started; between sessions a photo was put in front and the
    # files renumbered in the file manager (3 → 4, 2 → 3, 1 → 2, the new one is 1). Reopened,
    # 2.jpg showed the label of 1.jpg's old picture on another face ("replaced by another
    # picture"), the new 1.jpg held 1's finished label, and 3.jpg, the started photo, had no label
    # at all: a day's labels were on the wrong faces, and editing them there overwrote them.
    window = open_on(qtbot, tmp_path, numbered)
    first = work_on(window, "1.jpg", 60, EYE, "labeled")
    second = work_on(window, "2.jpg", 120, BROW)
    window.close()
    for old, new in (("3.jpg", "4.jpg"), ("2.jpg", "3.jpg"), ("1.jpg", "2.jpg")):
        (numbered / old).rename(numbered / new)
    shutil.copy(shared_data / "faces-unlabeled" / PORTRAITS[3], numbered / "1.jpg")

    again = open_on(qtbot, tmp_path, numbered)
    project = again.session.project
    moved_first, moved_second = project.find("2.jpg"), project.find("3.jpg")
    assert (moved_first.status, moved_first.needs_review) == ("labeled", False)
    np.testing.assert_array_equal(project.load_label(moved_first), first)
    assert (moved_second.status, moved_second.needs_review) == ("in_progress", False)
    np.testing.assert_array_equal(project.load_label(moved_second), second)
    newcomer = project.find("1.jpg")
    assert newcomer.status in ("new", "pre-labeled") and not newcomer.needs_review
    assert again.session.current.relpath == "3.jpg"  # the photo it was left on, under its new name
    message = again.message_bar.message
    assert "replaced" not in message
    assert "3 photos were renamed or moved" in message and "1.jpg → 2.jpg" in message


def test_two_photos_swapped_while_open_swap_their_labels_on_rescan(qtbot, tmp_path, numbered):
    # Two photos' names swapped in the file manager while the app ran, then File → Rescan: each
    # label must follow its picture, not stay with the name.
    window = open_on(qtbot, tmp_path, numbered)
    first = work_on(window, "1.jpg", 60, EYE, "labeled")
    second = work_on(window, "2.jpg", 120, BROW)
    (numbered / "1.jpg").rename(numbered / "swap.tmp")
    (numbered / "2.jpg").rename(numbered / "1.jpg")
    (numbered / "swap.tmp").rename(numbered / "2.jpg")
    window.rescan_action.trigger()

    project = window.session.project
    now_first, now_second = project.find("2.jpg"), project.find("1.jpg")
    assert now_first.status == "labeled" and now_second.status == "in_progress"
    np.testing.assert_array_equal(project.load_label(now_first), first)
    np.testing.assert_array_equal(project.load_label(now_second), second)
    assert "2 images renamed (labels followed)" in window.message_bar.message
    # The photo on screen (2.jpg's picture, now 1.jpg) keeps its label and its name follows it.
    assert window.session.current.relpath == "1.jpg"
    np.testing.assert_array_equal(window.session.document.label, second)


def test_a_photo_moved_over_another_takes_its_label_there_and_the_other_label_waits(
    qtbot, tmp_path, numbered
):
    # mv 1.jpg 2.jpg: 2.jpg holds 1's picture now, and 2's own picture is nowhere. Before, the
    # name kept its row: 1's picture showed 2's label ("replaced", for review) and 1's label sat
    # on a missing row. Now each label stays with its picture; 2's waits on a missing row, told
    # apart from the 2.jpg in the folder.
    window = open_on(qtbot, tmp_path, numbered)
    first = work_on(window, "1.jpg", 60, EYE, "labeled")
    second = work_on(window, "2.jpg", 120, BROW, "labeled")
    window.close()
    (numbered / "1.jpg").replace(numbered / "2.jpg")

    again = open_on(qtbot, tmp_path, numbered)
    project = again.session.project
    moved = project.find("2.jpg")
    assert (moved.status, moved.needs_review) == ("labeled", False)
    np.testing.assert_array_equal(project.load_label(moved), first)
    (gone,) = [r for r in project.images() if r.missing]
    assert gone.status == "labeled" and project.find("1.jpg") is None
    np.testing.assert_array_equal(project.load_label(gone), second)
    table = again.image_list.model
    assert table.text(gone.id, Column.NAME) == "2.jpg (gone, name reused)"
    assert table.text(moved.id, Column.NAME) == "2.jpg"
    order = [table.text(i, Column.NAME) for i in table.visible_ids()]
    assert order == ["2.jpg", "2.jpg (gone, name reused)", "3.jpg"]  # beside the photo of its name
    assert "2.jpg is missing from the project folder; its name now holds another photo" in table.tooltip(gone.id)
    message = again.message_bar.message
    assert "1.jpg → 2.jpg" in message and "gone from the folder" in message and ".gone" not in message
    assert not again.session.open_image(gone.id)
    assert again.message_bar.message.startswith(  # it said "file not found", and of .gone/2/2.jpg
        "Cannot open 2.jpg: the photo is gone from the folder (deleted, renamed or moved away); what "
        "was labeled on it is kept and comes back with it, under any name"
    )


def test_two_photos_swapped_while_open_keep_their_labels_when_one_is_opened_before_a_rescan(
    qtbot, tmp_path, numbered
):
    # The trial: names swapped in the file manager while the app ran, then 1.jpg clicked in the
    # list (no F5): it opened "replaced by another picture" with its label on 2.jpg's old picture,
    # and a rescan after that could no longer tell the two apart: both labels stayed crossed.
    window = open_on(qtbot, tmp_path, numbered)
    first = work_on(window, "1.jpg", 60, EYE, "labeled")
    work_on(window, "2.jpg", 120, BROW)
    stroke(window, 150, BROW)  # on screen, not saved yet
    second = window.session.document.label.copy()
    (numbered / "1.jpg").rename(numbered / "swap.tmp")
    (numbered / "2.jpg").rename(numbered / "1.jpg")
    (numbered / "swap.tmp").rename(numbered / "2.jpg")
    session, project = window.session, window.session.project
    assert session.open_image(project.find("1.jpg").id)

    np.testing.assert_array_equal(session.document.label, second)  # the label of this picture
    assert session.current.status == "in_progress" and not session.current.needs_review
    assert "replaced" not in window.message_bar.message and "renamed" in window.message_bar.message
    model = window.image_list.model  # the list names each photo once, as it is on disk now
    shown = sorted(model.text(i, Column.NAME) for i in model.visible_ids())
    assert shown == ["1.jpg", "2.jpg", "3.jpg"]
    window.rescan_action.trigger()
    now_first, now_second = project.find("2.jpg"), project.find("1.jpg")
    assert (now_first.status, now_first.needs_review) == ("labeled", False)
    np.testing.assert_array_equal(project.load_label(now_first), first)
    np.testing.assert_array_equal(project.load_label(now_second), second)


def test_a_photo_moved_over_another_while_open_shows_its_own_label_when_opened(qtbot, tmp_path, numbered):
    # mv 1.jpg 2.jpg while the app runs, then 2.jpg clicked: it holds 1's picture, so it opens on
    # 1's label (it opened on 2's, "replaced", before); 2's label is kept on a missing row.
    window = open_on(qtbot, tmp_path, numbered)
    first = work_on(window, "1.jpg", 60, EYE, "labeled")
    second = work_on(window, "2.jpg", 120, BROW, "labeled")
    window.session.open_image(window.session.project.find("3.jpg").id)
    (numbered / "1.jpg").replace(numbered / "2.jpg")
    session = window.session
    assert session.open_image(session.project.find("2.jpg").id)
    assert session.current.relpath == "2.jpg"
    assert (session.current.status, session.current.needs_review) == ("labeled", False)
    np.testing.assert_array_equal(session.document.label, first)
    message = window.message_bar.message
    assert "replaced" not in message and "1.jpg → 2.jpg" in message
    assert "1 labeled or started image is gone from the folder now (2.jpg): its label is kept" in message
    (gone,) = [r for r in session.project.images() if r.missing]
    np.testing.assert_array_equal(session.project.load_label(gone), second)


def test_the_export_forms_refusal_of_a_folder_is_shown_whole(qtbot, tmp_path):
    # The trial: Export into a folder of other files: the form said why in two lines of which
    # only the middle showed, the first and last cut by the form's edge and the buttons.
    from PySide6.QtWidgets import QApplication

    from faceparse_app.widgets.export_dialog import ExportDialog

    foreign = tmp_path / "exports"
    (foreign / "train" / "images").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    dialog = ExportDialog(tmp_path / "faces", False, counts={"labeled": 5, "reviewed": 0})
    qtbot.addWidget(dialog)
    dialog.folder_edit.setText(str(foreign))
    dialog.show()
    dialog.accept()
    QApplication.processEvents()
    label = dialog.problem_label
    assert dialog.isVisible() and label.isVisible() and "not empty" in label.text()
    assert label.height() >= label.heightForWidth(label.width())  # every line of it shows
    assert label.geometry().bottom() < dialog.export_button.mapTo(dialog, dialog.export_button.rect().topLeft()).y()


def test_accepting_the_empty_start_of_a_photo_whose_label_no_longer_fits_is_refused(
    qtbot, tmp_path, numbered
):
    # The trial: a labeled photo cropped in an editor between sessions opens on an empty label
    # (the old one no longer fits) and no pre-label came (it does now: test_replaced_other_size.py). A, "accept
    # the pre-label", marked that empty label labeled: a photo with two faces found went into
    # the export all background, and the old label was put aside as .invalid.
    from PIL import Image

    from trainer.faces import Face

    window = open_on(qtbot, tmp_path, numbered)
    work_on(window, "1.jpg", 60, EYE, "labeled")
    window.close()
    with Image.open(numbered / "1.jpg") as im:
        cropped = im.crop((0, 0, 900, 900))
    cropped.save(numbered / "1.jpg", quality=95)
    label = numbered / ".faceparse" / "labels" / "1.jpg.png"
    before = label.read_bytes()

    again = open_on(qtbot, tmp_path, numbered)
    session, project = again.session, again.session.project
    rec = project.find("1.jpg")
    project.set_faces(rec, [Face(box=(200.0, 150.0, 700.0, 800.0), score=0.95)])
    assert session.open_image(rec.id)
    assert not session.document.label.any()  # an empty start
    again.accept_action.trigger()
    rec = project.find("1.jpg")
    assert rec.status == "new"  # as it opened: its old label kept aside, a pre-label to come
    message = again.message_bar.message
    assert "all background" in message and "1 face" in message and "Ctrl+Return" in message
    assert label.with_name(label.name + ".invalid").read_bytes() == before  # the old label, kept


def test_a_folder_inside_an_open_project_is_not_made_a_second_project_of_its_photos(
    qtbot, tmp_path, numbered
):
    # The trial: the project open in one window, its subfolder sub/ opened in a second: the
    # second window made sub/ a project of its own and showed the photo labeled in the first
    # as a fresh pre-label; strokes made there went to sub/.faceparse, out of the project's
    # exports, and nothing said so.
    window = open_on(qtbot, tmp_path, numbered)
    (numbered / "sub").mkdir()
    (numbered / "3.jpg").rename(numbered / "sub" / "3.jpg")
    window.rescan_action.trigger()
    work_on(window, "sub/3.jpg", 60, EYE, "labeled")

    second = make_window(qtbot, tmp_path / "second", open_project=False)
    assert not second.open_project(numbered / "sub")
    message = second.message_bar.message
    assert f"inside the project {numbered}" in message and "Open" in message
    assert not (numbered / "sub" / ".faceparse").exists()
    window.close()
    # Nor does the folder above a project become one that lists its photos without its labels.
    third = make_window(qtbot, tmp_path / "third", open_project=False)
    assert not third.open_project(tmp_path)
    assert f"holds the project {numbered}" in third.message_bar.message
    assert not (tmp_path / ".faceparse").exists()


def test_an_export_of_another_project_is_not_replaced_by_this_ones(qtbot, tmp_path, numbered, shared_data):
    # The trial: the celebrity project exported into the folder that held the in-the-wild
    # project's export; every image of that export went without a word (its manifest listed them
    # as the export's own), and with them the splits a model had been trained on.
    from faceparse_app.export import export_folder_problem, export_project
    from faceparse_app.project import Project, ProjectError

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(shared_data / "faces-unlabeled" / PORTRAITS[3], other / "x.jpg")
    window = open_on(qtbot, tmp_path, other)
    work_on(window, "x.jpg", 60, EYE, "labeled")
    window.close()
    out = tmp_path / "dataset"
    assert export_project(other, out)["train"] == 1
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    again = open_on(qtbot, tmp_path, numbered)
    work_on(again, "1.jpg", 60, EYE, "labeled")
    problem = export_folder_problem(out, numbered)
    assert f"export of another project ({other})" in problem
    with pytest.raises(ProjectError, match="another project"):
        export_project(again.session.project, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    # Its own earlier export is exported into again, also once the project folder has moved.
    assert export_project(other, out)["train"] == 1
    again.close()
    moved = tmp_path / "moved"
    other.rename(moved)
    assert export_folder_problem(out, moved) == ""
    with Project.open(moved) as project:
        assert export_project(project, out)["train"] == 1


def test_the_rescan_made_on_opening_a_photo_also_names_the_photos_replaced_meanwhile(
    qtbot, tmp_path, numbered
):
    from PIL import Image

    window = open_on(qtbot, tmp_path, numbered)
    work_on(window, "1.jpg", 60, EYE, "labeled")
    work_on(window, "2.jpg", 120, BROW, "labeled")
    work_on(window, "3.jpg", 90, EYE, "labeled")
    (numbered / "1.jpg").rename(numbered / "swap.tmp")
    (numbered / "2.jpg").rename(numbered / "1.jpg")
    (numbered / "swap.tmp").rename(numbered / "2.jpg")
    with Image.open(numbered / "3.jpg") as im:
        mirrored = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirrored.save(numbered / "3.jpg", quality=90)
    session = window.session
    assert session.open_image(session.project.find("1.jpg").id)
    message = window.message_bar.message
    assert "renamed" in message and "replaced on disk by another picture (3.jpg)" in message
    rec = session.project.find("3.jpg")
    assert (rec.status, rec.needs_review) == ("in_progress", True)


def test_a_reopen_after_the_photo_on_screen_was_renamed_and_rescanned_opens_on_it(qtbot, tmp_path, numbered):
    # The trial: sub/ renamed batch2/ while its photo was on screen, F5 (labels followed), then
    # the app closed: the next open did not find the photo it was on and opened another one.
    window = open_on(qtbot, tmp_path, numbered)
    work_on(window, "2.jpg", 60, EYE)
    (numbered / "batch2").mkdir()
    (numbered / "2.jpg").rename(numbered / "batch2" / "2.jpg")
    window.rescan_action.trigger()
    assert window.session.current.relpath == "batch2/2.jpg"
    window.close()

    again = open_on(qtbot, tmp_path, numbered)
    assert again.session.current.relpath == "batch2/2.jpg"
