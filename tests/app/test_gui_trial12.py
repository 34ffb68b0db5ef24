"""Lost-work trial 12 (t56): files changed under a running app. The project store, its labels
folder or one label file deleted, the store replaced by an older copy, a photo replaced by another
picture under its name; and two items left from earlier trials (a stroke undone back to the
pre-label, recovery marks). Real photos, copied into a temporary folder."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.app.test_gui_canvas import drag, make_window

PHOTOS = ("deepface_img10.jpg", "deepface_img12.jpg", "deepface_img14.jpg")
EYE = 4


@pytest.fixture
def photos(tmp_path, shared_data) -> Path:
    """A folder of three real photos (copies; ../shared is never changed)."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(shared_data / "faces-unlabeled" / name, folder / name)
    return folder


def open_on(qtbot, tmp_path: Path, folder: Path):
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    return window


def stroke(window, y: int, cls: int = EYE) -> None:
    window.state.set_class(cls)
    window.state.set_radius(6)
    drag(window.canvas, [(50, y), (150, y)])


def ids(window) -> dict[str, int]:
    return {r.relpath: r.id for r in window.session.project.images()}


def rows_on_disk(folder: Path) -> dict[str, tuple]:
    """What the store file on disk says now (what a kill would leave): relpath -> (status,
    label_source), read as another process would."""
    conn = sqlite3.connect(f"file:{folder / '.faceparse' / 'project.sqlite'}?mode=ro", uri=True)
    try:
        return {r[0]: r[1:] for r in conn.execute("SELECT relpath, status, label_source FROM images")}
    finally:
        conn.close()


def label_gone_and_back(window) -> None:
    window.session.autosave()  # the autosave tick (every 3 s)
    window.session.annotation.writer.settle()


# ------------------------------------------------------------------ 1. the store deleted


def test_a_store_folder_deleted_while_labeling_is_put_back_and_the_lost_labels_named(
    qtbot, tmp_path, photos
):
    # A cleanup script deleted .faceparse/ while the annotator worked. The app went on saving
    # into the deleted store (SQLite writes to the file it opened): nothing was said, a kill
    # then lost every row written since (who wrote which label), and on reopen the photos whose
    # label files went with the folder still said "labeled" with nothing to export.
    window = open_on(qtbot, tmp_path, photos)
    session, by_name = window.session, ids(window)
    a, b, c = PHOTOS
    session.open_image(by_name[a])
    stroke(window, 50)
    assert session.set_status("labeled")
    session.open_image(by_name[b])
    stroke(window, 60)
    assert session.save()
    session.open_image(by_name[c])
    stroke(window, 70)
    shutil.rmtree(photos / ".faceparse")
    stroke(window, 90)
    label_gone_and_back(window)

    message = window.message_bar.message
    assert "deleted" in message and "another program" in message
    assert a in message and b in message  # the labels that went with the folder, by name
    on_disk = rows_on_disk(photos)  # a kill now loses nothing more: the store is on disk again
    assert on_disk[c] == ("in_progress", "hand")
    assert on_disk[a][0] != "labeled"  # nothing left to export: not finished any more
    assert (photos / ".faceparse" / "lock").exists()
    window.close()

    again = open_on(qtbot, tmp_path, photos)
    rec = again.session.project.find(c)
    label = again.session.project.load_label(rec)
    assert label[70, 100] == EYE and label[90, 100] == EYE  # before and after the deletion


def test_a_store_deleted_while_open_is_written_back_at_once(qtbot, tmp_path, photos):
    # Only project.sqlite deleted (a sync client): written back from the open store at the next
    # autosave tick, so a kill after it loses no row; the user is told.
    window = open_on(qtbot, tmp_path, photos)
    session, by_name = window.session, ids(window)
    session.open_image(by_name[PHOTOS[0]])
    stroke(window, 50)
    assert session.set_status("labeled")
    for side in ("", "-wal", "-shm"):
        (photos / ".faceparse" / f"project.sqlite{side}").unlink(missing_ok=True)
    session.open_image(by_name[PHOTOS[1]])  # a switch looks too
    stroke(window, 60)
    label_gone_and_back(window)
    assert "project.sqlite" in window.message_bar.message and "deleted" in window.message_bar.message
    on_disk = rows_on_disk(photos)
    assert on_disk[PHOTOS[0]] == ("labeled", "hand")
    assert on_disk[PHOTOS[1]] == ("in_progress", "hand")


def test_a_reopen_after_labels_went_with_the_store_does_not_say_nothing_is_lost(
    qtbot, tmp_path, photos
):
    # The store and a label file deleted between sessions: the store came back from its backup
    # with "no label was saved after it, so no labelling work is lost", and the photo whose
    # label file was gone stayed "labeled" with an empty canvas.
    window = open_on(qtbot, tmp_path, photos)
    session, by_name = window.session, ids(window)
    session.open_image(by_name[PHOTOS[0]])
    stroke(window, 50)
    assert session.set_status("labeled")
    window.close()
    store = photos / ".faceparse"
    for side in ("", "-wal", "-shm"):
        (store / f"project.sqlite{side}").unlink(missing_ok=True)
    (store / "labels" / f"{PHOTOS[0]}.png").unlink()

    again = open_on(qtbot, tmp_path, photos)
    message = again.message_bar.message
    assert "restored from its backup" in message
    assert "no labelling work is lost" not in message
    assert PHOTOS[0] in message and "gone" in message
    assert again.session.project.find(PHOTOS[0]).status == "in_progress"
