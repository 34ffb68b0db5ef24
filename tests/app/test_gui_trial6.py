"""Defects found in the sixth user trial of the real window (d45): a team's review pass over
finished photos, long edge outlines on camera photos, reopens, and a read-only share; each
driven the way the user met it."""

from __future__ import annotations

import pytest

from tests.app.test_gui_canvas import drag
from tests.app.test_gui_faces import LEFT, face_tool, two_faces_one_found, wait_parsed
from tests.app.test_gui_model_loop import status


@pytest.mark.parametrize("finished", ["labeled", "reviewed"])
def test_a_face_added_to_a_finished_photo_sends_it_back_to_in_progress(qtbot, tmp_path, monkeypatch, finished):
    # The trial: a photo marked labeled (or reviewed) had a missed face; a box drawn around it
    # put the model's parse of that face into the label, and the photo stayed labeled: the
    # export shipped the model's pixels as hand labels.
    window, session, _version = two_faces_one_found(qtbot, tmp_path, monkeypatch)
    assert session.set_status(finished)
    image_id = session.current.id
    face_tool(window)
    drag(window.canvas, [(66, 2), (126, 62)])
    wait_parsed(qtbot, session)
    assert status(window, image_id)[0] == "in_progress"
    text = window.message_bar.message
    assert f"was {finished}" in text and "in progress" in text and "model" in text
    # The next-unfinished walk leads back to it, and the export leaves it out.
    assert session.save()
    counts = window.export_lapa(tmp_path / "out")
    assert counts is not None and sum(counts.get(k, 0) for k in ("train", "val", "test")) == 0


def test_removing_a_face_from_a_finished_photo_sends_it_back_to_in_progress(qtbot, tmp_path, monkeypatch):
    window, session, _version = two_faces_one_found(qtbot, tmp_path, monkeypatch)
    assert session.set_status("labeled")
    assert window.model_loop.faces.remove_face(LEFT)
    wait_parsed(qtbot, session)
    assert status(window, session.current.id)[0] == "in_progress"
