"""A photo deleted, and its name then given to another known photo (the gap closed by renumbering,
or ``mv 3.jpg 2.jpg`` over it): every label must stay with the picture it was made for.

Before, the deleted photo's row kept its name, so the picture moved onto that name showed the
deleted photo's label ("replaced", for review), every photo after it along the renumbering kept
the label of the one before, and the last one's label sat on a missing row."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from faceparse_app.project import Project
from tests.app.test_review_r72 import _killed_scan
from tests.conftest import synthetic_face
from trainer.data.imageio import write_image


@pytest.fixture
def four_labeled(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """1.jpg … 4.jpg, four pictures, each labeled by hand with a label of its own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    labels = {}
    for n in (1, 2, 3, 4):
        image, label = synthetic_face(64, seed=n)
        write_image(folder / f"{n}.jpg", image)
        label[:, : 10 * n] = n  # each label told apart at a glance
        labels[f"{n}.jpg"] = label
    with Project.open(folder) as project:
        for name, label in labels.items():
            project.save_label(project.find(name), label, status="labeled", add_seconds=5)
    return folder, labels


def _delete_and_close_the_gap(folder: Path) -> None:
    (folder / "2.jpg").unlink()
    os.replace(folder / "3.jpg", folder / "2.jpg")
    os.replace(folder / "4.jpg", folder / "3.jpg")


def _assert_followed(project: Project, labels: dict[str, np.ndarray]) -> None:
    for old, new in (("3.jpg", "2.jpg"), ("4.jpg", "3.jpg"), ("1.jpg", "1.jpg")):
        rec = project.find(new)
        assert (rec.status, rec.needs_review, rec.missing) == ("labeled", False, False), new
        np.testing.assert_array_equal(project.load_label(rec), labels[old])
    gone = [r for r in project.images() if r.missing]
    assert len(gone) == 1 and gone[0].status == "labeled"
    np.testing.assert_array_equal(project.load_label(gone[0]), labels["2.jpg"])


def test_a_photo_deleted_and_the_gap_closed_keeps_every_label_on_its_picture(four_labeled):
    folder, labels = four_labeled
    _delete_and_close_the_gap(folder)
    with Project.open(folder) as project:
        report = project.last_scan
        _assert_followed(project, labels)
        assert sorted(report.moved) == [("3.jpg", "2.jpg"), ("4.jpg", "3.jpg")]
        assert report.missing == ["2.jpg"] and report.gone == ["2.jpg"]  # said by its own name
        assert report.replaced == []
        assert [r.shown_name for r in project.images() if r.missing] == ["2.jpg"]
    # Nothing changes at the next open.
    with Project.open(folder) as project:
        _assert_followed(project, labels)
        assert project.last_scan.moved == [] and project.last_scan.missing == ["2.jpg"]


def test_a_photo_moved_over_another_takes_its_own_label_there(four_labeled):
    # mv 1.jpg 2.jpg: 2.jpg holds 1's picture now, so it shows 1's label; 2's label waits on its
    # missing row.
    folder, labels = four_labeled
    os.replace(folder / "1.jpg", folder / "2.jpg")
    with Project.open(folder) as project:
        rec = project.find("2.jpg")
        assert (rec.status, rec.needs_review) == ("labeled", False)
        np.testing.assert_array_equal(project.load_label(rec), labels["1.jpg"])
        gone = [r for r in project.images() if r.missing]
        assert [r.shown_name for r in gone] == ["2.jpg"]
        np.testing.assert_array_equal(project.load_label(gone[0]), labels["2.jpg"])
        assert project.find("1.jpg") is None


def test_the_deleted_photo_brought_back_under_a_new_name_gets_its_label_back(four_labeled):
    folder, labels = four_labeled
    kept = (folder / "2.jpg").read_bytes()
    _delete_and_close_the_gap(folder)
    with Project.open(folder):
        pass
    (folder / "2 (restored).jpg").write_bytes(kept)
    with Project.open(folder) as project:
        rec = project.find("2 (restored).jpg")
        assert (rec.status, rec.missing) == ("labeled", False)
        np.testing.assert_array_equal(project.load_label(rec), labels["2.jpg"])
        assert not any(r.missing for r in project.images())
        files = sorted(p.name for p in project.labels_dir.rglob("*") if p.is_file())
        assert files == ["1.jpg.png", "2 (restored).jpg.png", "2.jpg.png", "3.jpg.png"]


def test_a_scan_killed_before_its_transaction_still_puts_every_label_right(
    four_labeled, monkeypatch
):
    folder, labels = four_labeled
    _delete_and_close_the_gap(folder)
    _killed_scan(folder, monkeypatch)
    with Project.open(folder) as project:
        _assert_followed(project, labels)


def test_a_new_picture_put_under_a_deleted_photos_name_still_waits_for_review(four_labeled):
    # Not a known picture: nothing tells whose it is, so the old label stays, marked for review.
    folder, labels = four_labeled
    image, _ = synthetic_face(64, seed=9)
    (folder / "2.jpg").unlink()
    write_image(folder / "2.jpg", image)
    with Project.open(folder) as project:
        rec = project.find("2.jpg")
        assert (rec.status, rec.needs_review) == ("in_progress", True)
        np.testing.assert_array_equal(project.load_label(rec), labels["2.jpg"])
        assert project.last_scan.replaced == ["2.jpg"]


def _reencode(folder: Path, src: str, dst: str, size: int | None = None) -> None:
    from PIL import Image

    with Image.open(folder / src) as im:
        im = im.convert("RGB")
        if size is not None:
            im = im.resize((size, size))
        im.save(folder / dst, quality=90)
    (folder / src).unlink()


@pytest.mark.parametrize("status", ["labeled", "in_progress"])
def test_a_photo_saved_in_another_format_keeps_its_label_for_review(tmp_path, status):
    # The folder's PNGs converted to JPEG (and the PNGs deleted) between sessions: each new JPEG
    # was a new photo with a fresh pre-label, the hand labels sat on missing rows, lost to the
    # annotator. Same name, same size, another format: the label follows, marked for review.
    image, label = synthetic_face(64, seed=3)
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "b.png", synthetic_face(64, seed=4)[0])
    with Project.open(tmp_path) as project:
        project.save_label(project.find("a.png"), label, status=status, add_seconds=5)
    _reencode(tmp_path, "a.png", "a.jpg")
    _reencode(tmp_path, "b.png", "b.jpg")
    with Project.open(tmp_path) as project:
        rec = project.find("a.jpg")
        assert (rec.status, rec.needs_review, rec.missing) == ("in_progress", True, False)
        np.testing.assert_array_equal(project.load_label(rec), label)
        assert project.find("a.png") is None and project.find("b.jpg").status == "new"
        assert not any(r.missing for r in project.images())
        assert project.last_scan.reencoded == [("a.png", "a.jpg"), ("b.png", "b.jpg")]
        assert project.recovery.startswith(
            "2 photo(s) were saved in another format under the same name (a.png → a.jpg, b.png → b.jpg): "
            "each label followed its photo; a label you made is marked for review"
        )


def test_a_photo_of_another_size_under_the_name_in_another_format_is_a_new_photo(tmp_path):
    image, label = synthetic_face(64, seed=3)
    write_image(tmp_path / "a.png", image)
    with Project.open(tmp_path) as project:
        project.save_label(project.find("a.png"), label, status="labeled", add_seconds=5)
    _reencode(tmp_path, "a.png", "a.jpg", size=48)  # the label cannot fit it
    with Project.open(tmp_path) as project:
        assert project.find("a.jpg").status == "new"
        gone = project.find("a.png")
        assert gone.missing and gone.status == "labeled"
        np.testing.assert_array_equal(project.load_label(gone), label)


def test_a_photo_saved_in_another_format_while_open_is_said_on_rescan(qtbot, tmp_path, numbered):
    from tests.app.test_gui_trial14 import open_on, work_on

    window = open_on(qtbot, tmp_path, numbered)
    first = work_on(window, "1.jpg", 60, 4, "labeled")
    window.session.open_image(window.session.project.find("3.jpg").id)
    _reencode(numbered, "1.jpg", "1.png")
    window.rescan_action.trigger()
    message = window.message_bar.message
    assert message.startswith(
        "Rescanned project: nothing added or missing. 1 photo(s) were saved in another format under "
        "the same name (1.jpg → 1.png): each label followed its photo"
    )
    project = window.session.project
    rec = project.find("1.png")
    assert (rec.status, rec.needs_review) == ("in_progress", True)
    np.testing.assert_array_equal(project.load_label(rec), first)


def test_a_label_kept_aside_by_an_earlier_store_is_never_written_over(four_labeled):
    # A store rebuilt without its backups numbers its rows again: the name a row gives up
    # (.gone/<id>/2.jpg) may hold the label an earlier row left there, not to be written over.
    folder, labels = four_labeled
    with Project.open(folder) as project:
        row_id = project.find("2.jpg").id
        earlier = project.label_file(f".gone/{row_id}/2.jpg")
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"an earlier row's label")
    _delete_and_close_the_gap(folder)
    with Project.open(folder) as project:
        _assert_followed(project, labels)
        assert earlier.read_bytes() == b"an earlier row's label"
