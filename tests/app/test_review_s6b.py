"""Defects found by the s6b review of the d45 work (a finished photo's face boxes, long edge
outlines, kept Unsure scores, the floating message bar, read-only folders); each reproduced the
way a user would meet it."""

from __future__ import annotations

import errno

import pytest

from faceparse_app.project import Project, ProjectLockedError
from tests.app.test_gui_canvas import make_project, make_window


def _read_only(monkeypatch) -> None:
    def refuse(_store):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("faceparse_app.project._probe_write", refuse)  # root ignores chmod


def test_a_look_at_a_folder_another_window_edits_is_refused_not_shown_stale(qtbot, tmp_path, monkeypatch):
    # A lead without write access opens the share a labeler has open in FaceParse Studio: the
    # look read the store as immutable (no locks), so the labeler's statuses never showed, and
    # an export from the look shipped the statuses of the moment it opened.
    folder = make_project(tmp_path / "share", n=3)
    writer = Project.open(folder)
    window = make_window(qtbot, tmp_path, open_project=False)
    _read_only(monkeypatch)
    try:
        assert not window.open_project(folder)
        assert window.session is None
        assert "open in another FaceParse Studio" in window.message_bar.message
    finally:
        writer.close()
    assert window.open_project(folder) and window.session.project.read_only


def test_a_writable_open_waits_for_a_look_to_close(qtbot, tmp_path, monkeypatch):
    # The other way round: while a look reads the store as immutable, a window that can write
    # must not change it underneath (the look would show a mix of old and new pages).
    folder = make_project(tmp_path / "share", n=3)
    Project.open(folder).close()  # its store, made while it was writable
    window = make_window(qtbot, tmp_path, open_project=False)
    _read_only(monkeypatch)
    assert window.open_project(folder) and window.session.project.read_only
    monkeypatch.undo()
    with pytest.raises(ProjectLockedError, match="looking"):
        Project.open(folder)
    window.close_project()
    Project.open(folder).close()


def test_a_fitted_photo_is_not_under_the_message_bar(qtbot, tmp_path):
    # The bar floats over the canvas's top edge (d45) so nothing jumps when it appears; but a
    # tall photo fitted (a new image, Fit) while a message shows had its top (the hair, a
    # class to label) under the bar until the message was closed.
    import numpy as np

    from trainer.data.imageio import write_image

    folder = tmp_path / "tall"
    folder.mkdir()
    write_image(folder / "tall.png", np.full((300, 120, 3), 128, np.uint8))
    window = make_window(qtbot, tmp_path, open_project=False)
    window.resize(900, 700)
    assert window.open_project(folder)
    window.show_message("A message long enough to be read while the photo is fitted under it.", "warning")
    bar, canvas = window.message_bar, window.canvas
    canvas.zoom_fit()
    image_top = canvas.mapTo(window.stack, canvas.rect().topLeft()).y() + canvas.offset.y()
    assert bar.isVisible() and image_top >= bar.geometry().bottom() + 1
    # The whole photo still shows, and the bar appearing over a fitted view moves nothing.
    assert canvas.offset.y() + 300 * canvas.scale <= canvas.height()
    bar.hide()
    canvas.zoom_fit()
    offset = canvas.offset
    window.show_message("Another message.", "info")
    assert canvas.offset == offset


@pytest.mark.parametrize("finished", ["labeled", "reviewed"])
def test_undoing_the_face_box_that_reopened_a_finished_photo_finishes_it_again(
    qtbot, tmp_path, monkeypatch, finished
):
    # d45: a face box drawn on a finished photo sends it back to in progress (the model's
    # pixels came in). Ctrl+Z took the box and its pixels back, the label was the hand-finished
    # one again, yet the photo stayed in progress: silently out of the export, its review lost.
    from PySide6.QtCore import Qt

    from tests.app.test_gui_canvas import drag, key
    from tests.app.test_gui_faces import face_tool, two_faces_one_found, wait_parsed
    from tests.app.test_gui_model_loop import status

    window, session, _version = two_faces_one_found(qtbot, tmp_path, monkeypatch)
    assert session.set_status(finished)
    image_id, finished_label = session.current.id, session.document.label.copy()
    face_tool(window)
    drag(window.canvas, [(66, 2), (126, 62)])
    wait_parsed(qtbot, session)
    assert status(window, image_id)[0] == "in_progress"
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (session.document.label == finished_label).all()
    assert status(window, image_id)[0] == finished
    assert session.save()
    counts = window.export_lapa(tmp_path / "out")
    assert counts is not None and sum(counts.get(k, 0) for k in ("train", "val", "test")) == 1
    # Redone: the model's pixels are back, so is the photo's reopening.
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert status(window, image_id)[0] == "in_progress"


def test_kept_unsure_scores_are_not_taken_for_another_starter_parser(qtbot, tmp_path):
    # d45 keeps the Unsure scores across reopens, by model version name. The shipped starter
    # parser is always named 'starter': after an upgrade brought a new one, the labeled photos
    # (never scored again on open) showed the old parser's scores for good.
    import os

    import torch

    from tests.app.test_gui_model_loop import WAIT_MS, project_with
    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model, get_preset

    def starter(seed: int):
        torch.manual_seed(seed)
        model = build_model(get_preset("tiny"), heads=("parsing",))
        return save_checkpoint(tmp_path / "starter_parser.safetensors", model, "finetune")

    folder = project_with(tmp_path / "project", n=2, labeled=1)
    path = starter(1)
    window = make_window(qtbot, tmp_path, open_project=False)
    loop = window.model_loop
    loop.starter_backbone, loop.starter_parser = tmp_path / "no-starter.safetensors", path
    assert window.open_project(folder)
    labeled = next(r.id for r in window.session.records() if r.status == "labeled")
    loop.queue.score_all([(labeled, window.session.project.image_path(window.session.project.get(labeled)))])
    qtbot.waitUntil(lambda: loop.queue.score(labeled) is not None, timeout=WAIT_MS)
    window.close_project()
    assert window.open_project(folder)  # the same starter: its scores are taken back
    assert loop.queue.score(labeled) is not None
    window.close_project()
    starter(2)  # the upgrade's starter parser, in its place
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert window.open_project(folder)
    assert loop.queue.score(labeled) is None


def test_a_message_with_an_offer_button_shows_whole(qtbot, tmp_path):
    # Floating (d45), the bar takes its height when the message is set, before the window
    # shows its offer button ('Use the face tool (W)', 'Train a model…'): the button then took
    # width from the text, whose last lines were cut off.
    window = make_window(qtbot, tmp_path, open_project=False)
    window.resize(900, 700)
    bar = window.message_bar
    text = (
        "No face was found in a_long_photo_name.jpg: draw a box around each face with the "
        "face tool (W), or mark it labeled if it has none."
    )
    for offer, button in ((window._offer_face_tool, window.face_offer), (window._offer_training, window.train_offer)):
        offer(text)
        qtbot.waitUntil(lambda b=button: b.isVisible())
        qtbot.wait(10)  # the bar's layout settles
        label = bar.text
        assert label.height() >= label.heightForWidth(label.width()), "the message's end is cut off"
        assert bar.geometry().bottom() < window.stack.height()
