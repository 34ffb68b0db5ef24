"""Defects found in review r73 of a photo deleted and its name given to another known picture
(bf43a28: the row whose picture is gone gives the name up and waits, missing, under a hidden
name). Real photos, copied into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceparse_app.project import Project
from tests.app.test_gui_trial14 import BROW, EYE, open_on, stroke, work_on


def _delete_and_close_the_gap(folder: Path) -> None:
    (folder / "2.jpg").unlink()
    (folder / "3.jpg").replace(folder / "2.jpg")


def test_a_second_photo_gone_under_a_name_given_up_before_is_said_gone_on_rescan(qtbot, tmp_path, numbered):
    # 2.jpg deleted and 3.jpg renamed into its place, F5; then that photo deleted too and 1.jpg
    # renamed into the place, F5. The second rescan said only "1 image renamed (labels
    # followed)", as information: nothing told that a labeled photo had gone, because its name
    # was the name of the photo gone before it.
    window = open_on(qtbot, tmp_path, numbered)
    for name, y in (("1.jpg", 60), ("2.jpg", 120), ("3.jpg", 90)):
        work_on(window, name, y, EYE, "labeled")
    _delete_and_close_the_gap(numbered)
    window.rescan_action.trigger()
    (numbered / "2.jpg").unlink()
    (numbered / "1.jpg").replace(numbered / "2.jpg")
    window.rescan_action.trigger()
    message = window.message_bar.message
    assert "1 image gone missing (2.jpg" in message and "1 image renamed" in message
    assert window.message_bar.level == "warning"


def test_a_gone_photo_back_under_its_own_name_is_said_back_not_renamed(qtbot, tmp_path, numbered):
    # The gap closed and F5; then undone in the file manager (2.jpg → 3.jpg, the deleted photo
    # restored as 2.jpg), F5: "2 images renamed (labels followed)", the photo back counted as a
    # rename of 2.jpg to 2.jpg and not said back.
    window = open_on(qtbot, tmp_path, numbered)
    for name, y in (("1.jpg", 60), ("2.jpg", 120), ("3.jpg", 90)):
        work_on(window, name, y, EYE, "labeled")
    kept = (numbered / "2.jpg").read_bytes()
    _delete_and_close_the_gap(numbered)
    window.rescan_action.trigger()
    (numbered / "2.jpg").replace(numbered / "3.jpg")
    (numbered / "2.jpg").write_bytes(kept)
    window.rescan_action.trigger()
    message = window.message_bar.message
    assert "1 image back (2.jpg)" in message and "1 image renamed" in message


def test_opening_says_no_rename_of_a_gone_photo_back_under_its_own_name(qtbot, tmp_path, numbered):
    # Reopened after the same undo: "2 photos were renamed or moved ... (2.jpg → 2.jpg,
    # 2.jpg → 3.jpg)".
    window = open_on(qtbot, tmp_path, numbered)
    for name, y in (("1.jpg", 60), ("2.jpg", 120), ("3.jpg", 90)):
        work_on(window, name, y, EYE, "labeled")
    window.close()
    kept = (numbered / "2.jpg").read_bytes()
    _delete_and_close_the_gap(numbered)
    with Project.open(numbered):
        pass
    (numbered / "2.jpg").replace(numbered / "3.jpg")
    (numbered / "2.jpg").write_bytes(kept)
    again = open_on(qtbot, tmp_path, numbered)
    message = again.message_bar.message
    assert "1 photo was renamed or moved" in message and "2.jpg → 3.jpg" in message
    assert "2.jpg → 2.jpg" not in message


def test_reopened_on_the_photo_left_on_though_a_gone_photo_with_its_name_came_back(qtbot, tmp_path, numbered):
    # Left on 2.jpg (3's picture, moved there when 2.jpg was deleted); then 2.jpg renamed back
    # to 3.jpg and the deleted photo restored as 7.jpg. Reopened on 7.jpg, the deleted photo,
    # for both renames were told from "2.jpg".
    window = open_on(qtbot, tmp_path, numbered)
    for name, y in (("1.jpg", 60), ("2.jpg", 120), ("3.jpg", 90)):
        work_on(window, name, y, EYE, "labeled")
    kept = (numbered / "2.jpg").read_bytes()
    _delete_and_close_the_gap(numbered)
    window.rescan_action.trigger()
    work_on(window, "2.jpg", 150, BROW)
    window.close()
    (numbered / "2.jpg").replace(numbered / "3.jpg")
    (numbered / "7.jpg").write_bytes(kept)
    again = open_on(qtbot, tmp_path, numbered)
    assert again.session.current.relpath == "3.jpg"


def test_strokes_on_a_photo_gone_while_on_screen_are_said_unsaved_by_its_own_name(qtbot, tmp_path, numbered):
    # The photo on screen deleted and another renamed into its place, F5, then a stroke: "Not
    # saved: /…/project/.gone/2/2.jpg is missing from the folder": a path the user never made.
    window = open_on(qtbot, tmp_path, numbered)
    window.confirm_discard = lambda: True  # the strokes cannot be saved: no question left open
    work_on(window, "2.jpg", 120, BROW, "labeled")
    _delete_and_close_the_gap(numbered)
    window.rescan_action.trigger()
    stroke(window, 30, EYE)
    assert not window.session.save()
    message = window.message_bar.message
    assert f"{numbered / '2.jpg'} is missing from the folder" in message and ".gone" not in message
    project = window.session.project
    assert project.load_label(project.find("2.jpg")) is None or not np.any(
        project.load_label(project.find("2.jpg"))[25:35]
    )
