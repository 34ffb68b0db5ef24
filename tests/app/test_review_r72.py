"""Defects found reviewing the session's relinking of renumbered and swapped photos (r72):
labels that crossed or got lost when a scan moving them was cut short."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from faceparse_app.project import Project
from tests.conftest import synthetic_face
from trainer.data.imageio import write_image


@pytest.fixture
def two_labeled(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """1.jpg, 2.jpg and 3.jpg, pictures each labeled by hand with a label of its own."""
    labels = {}
    for n in (1, 2, 3):
        image, label = synthetic_face(64, seed=n)
        write_image(tmp_path / f"{n}.jpg", image)
        label[:, : 10 * n] = n  # each label told apart at a glance
        labels[f"{n}.jpg"] = label
    with Project.open(tmp_path) as project:
        for name, label in labels.items():
            project.save_label(project.find(name), label, status="labeled", add_seconds=5)
    return tmp_path, labels


def _killed_scan(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan killed after it moved the label files and before its transaction (power lost)."""
    import faceparse_app.project_scan as scan_mod

    real = scan_mod.move_files
    with Project.open(folder, scan=False) as project:
        def killed(*_a, **_k):
            raise KeyboardInterrupt  # nothing after this point of the scan ran
        monkeypatch.setattr(project, "transaction", killed)
        monkeypatch.setattr(scan_mod, "move_files", lambda pairs, tag, *a: [] if tag == "undo" else real(pairs, tag, *a))
        with pytest.raises(KeyboardInterrupt):
            project.scan()
    monkeypatch.setattr(scan_mod, "move_files", real)


def _rename(folder: Path, moves: list[tuple[str, str]]) -> None:
    for src, dst in moves:
        os.replace(folder / src, folder / dst)


@pytest.mark.parametrize(
    ("renames", "followed"),
    [
        # Two names swapped in the file manager: the next open moved the labels back again, each
        # picture showed the other's label, for good.
        (
            [("1.jpg", "t.jpg"), ("2.jpg", "1.jpg"), ("t.jpg", "2.jpg")],
            [("1.jpg", "2.jpg"), ("2.jpg", "1.jpg")],
        ),
        # 3 → 4, 2 → 3, 1 → 2: the next open shifted the labels a second time (3's on 4, 2's
        # on 3... and 3's own lost under 4's).
        (
            [("3.jpg", "4.jpg"), ("2.jpg", "3.jpg"), ("1.jpg", "2.jpg")],
            [("2.jpg", "1.jpg"), ("3.jpg", "2.jpg"), ("4.jpg", "3.jpg")],
        ),
    ],
    ids=["swapped", "renumbered"],
)
def test_photos_renamed_keep_their_labels_after_a_scan_killed_before_its_transaction(
    two_labeled, monkeypatch, renames, followed
):
    # The app opening the folder was killed (power lost) between moving the labels after their
    # pictures and recording it.
    folder, labels = two_labeled
    _rename(folder, renames)
    _killed_scan(folder, monkeypatch)
    with Project.open(folder) as project:
        for name, was in followed:
            rec = project.find(name)
            np.testing.assert_array_equal(project.load_label(rec), labels[was])
            assert rec.status == "labeled"


@pytest.mark.parametrize("renames", [1, 2, 3])
def test_photos_swapped_keep_their_labels_after_a_scan_killed_while_moving_them(
    two_labeled, monkeypatch, renames
):
    # The kill came while the labels were on their way, some under a temporary name: the next
    # open found none of those (the photo said its label was deleted) or put one on the other.
    import faceparse_app.project_moves as moves_mod

    folder, labels = two_labeled
    _rename(folder, [("1.jpg", "t.jpg"), ("2.jpg", "1.jpg"), ("t.jpg", "2.jpg")])
    real, done = os.replace, []

    def replace(src, dst):
        if len(done) == renames:
            raise KeyboardInterrupt  # killed
        done.append(src)
        real(src, dst)

    with Project.open(folder, scan=False) as project:
        monkeypatch.setattr(moves_mod.os, "replace", replace)
        with pytest.raises(KeyboardInterrupt):
            project.scan()
        monkeypatch.setattr(moves_mod.os, "replace", real)
    with Project.open(folder) as project:
        for name, was in (("1.jpg", "2.jpg"), ("2.jpg", "1.jpg")):
            rec = project.find(name)
            np.testing.assert_array_equal(project.load_label(rec), labels[was])
            assert rec.status == "labeled"


def test_a_photo_moved_into_a_subfolder_keeps_its_label_when_moving_it_fails(two_labeled, monkeypatch):
    # 1.jpg moved into sub/ and 2.jpg renamed 1.jpg, opened on a full disk: the label folder
    # sub/ could not be made, so 1's label stayed under a temporary name while its row moved on.
    # The photo came back "label deleted", in progress, its finished label out of sight for good.
    import errno

    import faceparse_app.project_moves as moves_mod
    from faceparse_app.project import ProjectError

    folder, labels = two_labeled
    (folder / "sub").mkdir()
    _rename(folder, [("1.jpg", "sub/1.jpg"), ("2.jpg", "1.jpg")])
    real = os.replace

    def replace(src, dst):
        if Path(dst).parent.name == "sub":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(moves_mod.os, "replace", replace)
    with pytest.raises(ProjectError, match="disk full"):
        Project.open(folder)
    monkeypatch.setattr(moves_mod.os, "replace", real)  # space freed
    with Project.open(folder) as project:
        for name, was in (("sub/1.jpg", "1.jpg"), ("1.jpg", "2.jpg"), ("3.jpg", "3.jpg")):
            rec = project.find(name)
            np.testing.assert_array_equal(project.load_label(rec), labels[was])
            assert rec.status == "labeled"


def test_a_folder_under_a_hidden_folder_of_a_project_opens_as_its_own(two_labeled):
    # A folder in a project's hidden folder (where the project's export may go) holds none of the
    # project's photos (hidden folders are not scanned), yet opening it was refused as "inside
    # the project".
    from faceparse_app.export import export_project
    from faceparse_app.project import ProjectError

    folder, _ = two_labeled
    out = folder / ".exports" / "v1"
    export_project(folder, out, val_fraction=0, test_fraction=0)
    with Project.open(out) as project:
        assert project.find("train/images/1.jpg") is not None
    with pytest.raises(ProjectError, match="inside the project"):  # its store's own folder stays refused
        Project.open(folder / ".faceparse" / "labels")


def test_a_link_to_a_folder_inside_a_project_is_not_made_a_second_project(two_labeled, tmp_path):
    # The same folder opened through a link (a shortcut on the desktop) was made a project of its
    # own: its photos shown without the labels made in the first, fresh pre-labels over them.
    from faceparse_app.project import ProjectError

    folder, _ = two_labeled
    (folder / "sub").mkdir()
    image, _ = synthetic_face(64, seed=7)
    write_image(folder / "sub" / "7.jpg", image)
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(folder / "sub", target_is_directory=True)
    with pytest.raises(ProjectError, match="inside the project"):
        Project.open(link)
    assert not (folder / "sub" / ".faceparse").exists()


def test_a_labeled_photo_swapped_with_a_new_one_keeps_its_label_after_a_killed_scan(
    two_labeled, monkeypatch
):
    # 1.jpg labeled, 4.jpg new (never labeled); their names swapped, the open killed after moving
    # the label. The next open took the label, now under 4.jpg's name, for the new photo's and
    # moved it onto it: 1's finished work on the other picture, 1 itself "label deleted".
    folder, labels = two_labeled
    image, _ = synthetic_face(64, seed=4)
    write_image(folder / "4.jpg", image)
    with Project.open(folder):
        pass
    _rename(folder, [("1.jpg", "t.jpg"), ("4.jpg", "1.jpg"), ("t.jpg", "4.jpg")])
    _killed_scan(folder, monkeypatch)
    with Project.open(folder) as project:
        rec = project.find("4.jpg")
        np.testing.assert_array_equal(project.load_label(rec), labels["1.jpg"])
        assert rec.status == "labeled"
        new = project.find("1.jpg")
        assert project.load_label(new) is None and new.status == "new"


def test_strokes_on_a_swapped_photo_do_not_land_on_the_other_when_its_rescan_fails(
    qtbot, tmp_path, numbered, monkeypatch
):
    # 1.jpg and 2.jpg swapped in the file manager while the app ran, on a full disk: clicking 1.jpg
    # could not rescan, said so, and opened it "as it was": 2.jpg's old picture under 1's label.
    # The annotator's strokes on that picture were saved into 1's label, and the rescan once space
    # was freed carried them (and the label) onto 1's own picture, now 2.jpg.
    import faceparse_app.project_scan as scan_mod
    from faceparse_app.project import ProjectError
    from tests.app.test_gui_trial14 import BROW, EYE, open_on, stroke, work_on

    window = open_on(qtbot, tmp_path, numbered)
    first = work_on(window, "1.jpg", 60, EYE, "labeled")
    second = work_on(window, "2.jpg", 120, BROW, "labeled")
    session, project = window.session, window.session.project
    session.open_image(project.find("3.jpg").id)
    _rename(numbered, [("1.jpg", "t.jpg"), ("2.jpg", "1.jpg"), ("t.jpg", "2.jpg")])

    def full(*_a, **_k):
        raise ProjectError("disk full: could not move the labels of photos renamed in the folder")

    monkeypatch.setattr(scan_mod, "move_files", full)
    session.open_image(project.find("1.jpg").id)
    message = window.message_bar.message
    assert "disk full" in message and "Rescan (F5)" in message
    stroke(window, 200, EYE)  # painted on what the canvas shows
    session.save()
    monkeypatch.undo()  # space freed
    window.rescan_action.trigger()
    np.testing.assert_array_equal(project.load_label(project.find("2.jpg")), first)
    np.testing.assert_array_equal(project.load_label(project.find("1.jpg")), second)
