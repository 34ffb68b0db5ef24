"""Issue 28 in the window: a lost or damaged store and a second window never cost a label."""

from __future__ import annotations

import os

import numpy as np

from tests.app.test_gui_canvas import drag, make_project, make_window
from tests.app.test_gui_session import select


def _paint_and_close(qtbot, tmp_path, folder):
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    session = window.session
    painted = {}
    for image_id in window.image_list.visible_ids()[:2]:
        select(window, image_id)
        drag(window.canvas, [(10, 10), (40, 40)])
        assert session.save()
        painted[image_id] = session.project.label_path(session.current).read_bytes()
    window.close_project()
    return window, painted


def test_after_a_lost_store_the_window_keeps_every_hand_label(qtbot, tmp_path):
    folder = make_project(tmp_path / "project", n=3)
    window, painted = _paint_and_close(qtbot, tmp_path, folder)
    for f in (folder / ".faceparse" / "backups").glob("*"):
        f.unlink()
    for side in ("", "-wal", "-shm"):
        (folder / ".faceparse" / f"project.sqlite{side}").unlink(missing_ok=True)
    assert window.open_project(folder)
    session = window.session
    assert window.message_bar.level == "warning" and "2 hand-made" in window.message_bar.message
    for image_id in window.image_list.visible_ids():
        select(window, image_id)
        # What the model loop does when a prediction arrives for an image that "has none".
        session.apply_prelabel(image_id, np.zeros((64, 64), np.uint8), "starter")
    by_path = {r.relpath: r for r in session.records()}
    labeled = [r for r in by_path.values() if r.needs_review]
    assert len(labeled) == 2 and all(r.status == "labeled" for r in labeled)
    for rec in labeled:
        assert session.project.label_path(rec).read_bytes() in painted.values()


def test_a_damaged_store_offers_a_recovery_that_keeps_the_labels(qtbot, tmp_path):
    folder = make_project(tmp_path / "project", n=40)
    window, painted = _paint_and_close(qtbot, tmp_path, folder)
    store = folder / ".faceparse" / "project.sqlite"
    data = bytearray(store.read_bytes())
    data[4096 : 3 * 4096] = os.urandom(2 * 4096)
    store.write_bytes(bytes(data))
    asked = []
    window.confirm_recover = lambda text: asked.append(text) or False
    assert not window.open_project(folder)
    assert asked and "damaged" in asked[0] and window.session is None
    assert "damaged" in window.message_bar.message
    window.confirm_recover = lambda text: True
    assert window.open_project(folder)
    assert "damaged" in window.message_bar.message
    session = window.session
    for image_id, data in painted.items():
        assert session.project.label_path(session.project.get(image_id)).read_bytes() == data


def test_a_second_window_on_the_same_folder_is_refused(qtbot, tmp_path):
    folder = make_project(tmp_path / "project", n=2)
    first = make_window(qtbot, tmp_path, open_project=False)
    assert first.open_project(folder)
    second = make_window(qtbot, tmp_path / "other", open_project=False)
    assert not second.open_project(folder)
    assert second.message_bar.level == "error" and "already open" in second.message_bar.message
    first.close_project()  # releases the folder
    assert second.open_project(folder)
