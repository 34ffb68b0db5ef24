"""A labeled photo replaced under its name by a picture of another size (cropped, resized, or
another photo): its label cannot fit. Before, the photo opened on an empty label with no
pre-label ever coming (it was "in progress"), so the annotator redrew it from nothing; the old
label file stayed under the name, and a later unusable label kept aside overwrote an earlier one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceparse_app.project import Project
from tests.conftest import synthetic_face
from trainer.data.imageio import read_label, write_image


def _labeled(folder: Path, status: str = "labeled") -> np.ndarray:
    image, label = synthetic_face(64, seed=3)
    write_image(folder / "1.jpg", image)
    label[:, :10] = 2
    with Project.open(folder) as project:
        project.save_label(project.find("1.jpg"), label, status=status, add_seconds=5)
    return label


def _replace(folder: Path, side: int, seed: int = 7) -> None:
    write_image(folder / "1.jpg", synthetic_face(side, seed=seed)[0])


def test_a_photo_replaced_by_one_of_another_size_starts_again_from_a_prelabel(tmp_path):
    label = _labeled(tmp_path)
    _replace(tmp_path, 48)
    with Project.open(tmp_path) as project:
        rec = project.find("1.jpg")
        assert (rec.status, rec.label_source, rec.needs_review) == ("new", None, False)
        assert project.may_prelabel(rec)  # the model's pre-label comes
        assert project.load_label(rec) is None
        kept = project.labels_dir / "1.jpg.png.invalid"
        np.testing.assert_array_equal(read_label(kept), label)  # the old label, kept
        assert project.last_scan.set_aside == [("1.jpg", kept)]
        assert "1.jpg.png.invalid" in project.recovery and "pre-label" in project.recovery
        assert project.last_scan.replaced == []


def test_a_photo_replaced_twice_keeps_both_old_labels(tmp_path):
    first = _labeled(tmp_path)
    _replace(tmp_path, 48)
    with Project.open(tmp_path) as project:
        second = np.full((48, 48), 4, np.uint8)
        project.save_label(project.find("1.jpg"), second, status="labeled", add_seconds=5)
    _replace(tmp_path, 40, seed=8)
    with Project.open(tmp_path) as project:
        kept = sorted(p.name for p in project.labels_dir.iterdir())
        assert kept == ["1.jpg.png.invalid", "1.jpg.png.invalid-2"]
        np.testing.assert_array_equal(read_label(project.labels_dir / kept[0]), first)
        np.testing.assert_array_equal(read_label(project.labels_dir / kept[1]), second)


def test_a_photo_replaced_by_one_of_the_same_size_keeps_its_label_for_review(tmp_path):
    label = _labeled(tmp_path)
    _replace(tmp_path, 64)
    with Project.open(tmp_path) as project:
        rec = project.find("1.jpg")
        assert (rec.status, rec.needs_review) == ("in_progress", True)
        np.testing.assert_array_equal(project.load_label(rec), label)
        assert project.last_scan.set_aside == []


def test_a_photo_replaced_by_another_size_while_open_gets_a_prelabel_when_clicked(qtbot, tmp_path):
    from tests.app.test_gui_canvas import make_window

    folder = tmp_path / "p"
    folder.mkdir()
    label = _labeled(folder)
    write_image(folder / "2.jpg", synthetic_face(64, seed=5)[0])
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    session = window.session
    session.open_image(session.project.find("2.jpg").id)
    _replace(folder, 48)
    assert session.open_image(session.project.find("1.jpg").id)
    rec = session.current
    assert rec.status == "new" and session.project.may_prelabel(rec)
    assert session.document.label.shape == (48, 48)
    message = window.message_bar.message
    assert "1.jpg was replaced on disk by another picture" in message
    assert "kept as" in message and "1.jpg.png.invalid" in message and "pre-label" in message
    np.testing.assert_array_equal(read_label(session.project.labels_dir / "1.jpg.png.invalid"), label)
