"""Defects found in the review of session 6's changes (the t42 trial's fixes: the shared undo
budget, the folder named once, the kept opacity): each test asserts what a user would lose or
see."""

from __future__ import annotations

import sqlite3

import numpy as np

from faceparse_app.history import TOTAL_HISTORY_BYTES, Delta, HistoryShelf


def whole_image_step(shape: tuple[int, int]) -> Delta:
    """A step that changes every pixel of an image of ``shape`` (a fill, a pre-label), counted at
    its full size; broadcast views, so a 48-megapixel step costs the test no memory."""
    view = np.broadcast_to(np.uint8(0), shape)
    return Delta(y0=0, x0=0, before=view, after=view)


def test_the_undo_of_a_large_photo_survives_a_look_at_the_next_one():
    # A 48-megapixel phone photo: filled eight times, then the next photo (pre-labeled on
    # opening) looked at, then back: Ctrl+Z did nothing. One photo's budget (8 whole-image steps,
    # 768 MB) was over the 512 MB all kept histories share, so the shelf dropped all of its undo
    # at the first switch; and it alone held 768 MB, over the total the commit promised.
    shelf, big = HistoryShelf(), (6000, 8000)
    first = shelf.for_image(1, big)
    for _ in range(8):
        first.push(whole_image_step(big))
    second = shelf.for_image(2, big)
    second.push(whole_image_step(big))  # its pre-label
    assert shelf.for_image(1, big) is first and first.can_undo
    for _ in range(8):
        first.push(whole_image_step(big))
    assert shelf.for_image(2, big) is second and second.can_undo  # and back again
    assert shelf.nbytes <= TOTAL_HISTORY_BYTES


def test_a_project_a_newer_app_wrote_is_named_once_and_readably(qtbot, tmp_path):
    # "Cannot open /x: the folder/.faceparse/project.sqlite was written by a newer FaceParse
    # Studio": the folder's path inside the store's path was replaced too.
    from faceparse_app.project import Project
    from tests.app.test_gui_canvas import make_window

    root = tmp_path / "newer"
    root.mkdir()
    Project.open(root).close()
    with sqlite3.connect(root / ".faceparse" / "project.sqlite") as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.close()
    window = make_window(qtbot, tmp_path, open_project=False)
    assert not window.open_project(root)
    text = window.message_bar.message
    assert text.startswith(f"Cannot open {root}: ") and text.count(str(root)) == 1
    assert "the folder/" not in text and ".faceparse/project.sqlite was written by a newer" in text


def test_a_folder_given_by_a_relative_path_is_named_once_and_readably(qtbot, tmp_path, monkeypatch):
    # faceparse-studio photos (a folder since deleted): "Cannot open photos: /home/u/the
    # folder: folder not found", the folder's name replaced inside its own path.
    from tests.app.test_gui_canvas import make_window

    window = make_window(qtbot, tmp_path, open_project=False)
    monkeypatch.chdir(tmp_path)
    assert not window.open_project("photos")
    assert window.message_bar.message == f"Cannot open {tmp_path / 'photos'}: folder not found"


def test_a_launch_never_starts_with_the_labels_unseen(qtbot, tmp_path):
    # The opacity slider goes down to 0 (to look at the photo); kept between sessions since
    # the t42 trial, the next launch showed no labels at all with "Show labels" (H) on, and
    # a stroke painted unseen (the edit-shows-the-labels rule never fires: H is not off).
    from tests.app.test_gui_canvas import drag, make_window, pixel_colour, pixel_colour_hidden

    window = make_window(qtbot, tmp_path)
    window.tool_bar.opacity_slider.setValue(0)
    window.close()
    again = make_window(qtbot, tmp_path)  # the same settings file
    again.state.set_radius(4)
    again.state.set_class(4)
    drag(again.canvas, [(20, 30), (40, 30)])
    assert again.session.document.label[30, 30] == 4
    assert again.state.overlay_visible
    assert pixel_colour(again.canvas, 30, 30) != pixel_colour_hidden(again, 30, 30)  # on screen
    assert 0 < again.tool_bar.opacity_slider.value() <= 100


def test_an_edit_with_the_opacity_at_zero_shows_the_labels(qtbot, tmp_path):
    # The slider at 0 hides the labels as H does (the way to look at the photo for whoever
    # does not know H); a stroke then painted unseen, which the t42 fix stops for H only.
    from tests.app.test_gui_canvas import drag, make_window, pixel_colour, pixel_colour_hidden

    window = make_window(qtbot, tmp_path)
    window.state.set_radius(4)
    window.state.set_class(4)
    window.tool_bar.opacity_slider.setValue(0)
    drag(window.canvas, [(20, 30), (40, 30)])
    assert window.session.document.label[30, 30] == 4
    assert pixel_colour(window.canvas, 30, 30) != pixel_colour_hidden(window, 30, 30)  # on screen
    assert window.tool_bar.opacity_slider.value() > 0
