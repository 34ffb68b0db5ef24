"""Label issues in the window: the image list's Show filter "label issues" lists the photo whose
saved label has a finding (checked in the background) and not the good ones; opening it says
what is wrong in one message; fixing and saving it takes it off the list."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from faceparse_app.widgets.image_table import ISSUE_ICON, LABEL_ISSUES, cached_icon
from tests.app.test_gui_canvas import make_window
from tests.app.test_label_issues import SWAP, helen_project


def test_the_show_filter_lists_the_swapped_label_and_opening_it_says_why(
    qtbot, tmp_path: Path, shared_data: Path
) -> None:
    project, name = helen_project(tmp_path, shared_data)
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(project)
    session, listing = window.session, window.image_list
    swapped = next(r for r in session.records() if r.relpath == name)
    listing.set_status_filter(LABEL_ISSUES)
    qtbot.waitUntil(lambda: listing.visible_ids() == [swapped.id], timeout=20_000)
    good = next(r for r in session.records() if r.relpath != name)
    session.open_image(good.id)
    assert "left/right swapped" not in window.message_bar.message
    session.open_image(swapped.id)
    text = window.message_bar.message
    assert name in text and "left/right swapped (eyebrows, eyes)" in text
    assert "left/right swapped" in listing.row_tooltip(swapped.id)
    # Its row shows the issue icon, over the flag every imported label has (needs review).
    icon = listing.model.data(listing.model.index(0, 0), Qt.ItemDataRole.DecorationRole)
    assert icon.cacheKey() == cached_icon(*ISSUE_ICON[:2]).cacheKey()
    # Fixed and saved: off the list.
    session.document.label[:] = SWAP[session.document.label]
    session.note_edit()
    assert session.save(force=True)
    qtbot.waitUntil(lambda: listing.visible_ids() == [], timeout=20_000)

