"""Defects left from the ninth trial and found in the tenth (t53): undo on a pre-label, the
image list's filter and sort across projects and restarts, the Unsure column after a restart,
empty image files, the edge-outline tool's closing point, and help texts."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from tests.app.test_gui_canvas import drag
from tests.app.test_gui_canvas import key as canvas_key
from tests.app.test_gui_model_loop import key, status, window_on_a_prelabel


def ctrl(window, k: Qt.Key) -> None:
    canvas_key(window, k, Qt.KeyboardModifier.ControlModifier)


def test_undo_stops_at_the_prelabel_an_unfinished_photo_started_from(qtbot, tmp_path):
    # Trial 9 left this: a new photo opened, the model's pre-label came, the annotator painted
    # a stroke and pressed Ctrl+Z once more than the strokes: the pre-label went too, and the
    # photo was autosaved as nothing but background. The pre-label is where the photo's work
    # starts (as in CVAT or Label Studio, whose predictions are the annotation's first state):
    # undo stops there and says so; redo still brings the strokes back.
    window, first, version = window_on_a_prelabel(qtbot, tmp_path, 2)
    session = window.session
    prelabel = session.document.label.copy()
    assert prelabel.any()
    window.state.set_class(4)
    drag(window.canvas, [(5, 5), (20, 5)])
    stroked = session.document.label.copy()
    assert not np.array_equal(stroked, prelabel)

    ctrl(window, Qt.Key.Key_Z)
    assert np.array_equal(session.document.label, prelabel)
    ctrl(window, Qt.Key.Key_Z)  # once more than the strokes
    assert np.array_equal(session.document.label, prelabel)  # the pre-label stays
    assert "pre-label" in window.message_bar.message and "Nothing" in window.message_bar.message
    assert session.save()
    rec = session.project.get(first)
    assert session.project.load_label(rec).any()  # never saved as all background

    ctrl(window, Qt.Key.Key_Y)
    assert np.array_equal(session.document.label, stroked)


def test_undo_after_accepting_a_prelabel_keeps_it_and_its_status(qtbot, tmp_path):
    # A on a pre-label, then Ctrl+Z: the photo keeps the pre-label it was accepted with. Trial
    # 9's fix sent the emptied photo back to in progress with "Ctrl+Y brings it back"; nothing
    # empties it now, so it stays labeled as accepted.
    window, first, version = window_on_a_prelabel(qtbot, tmp_path, 2)
    session = window.session
    prelabel = session.document.label.copy()
    key(window, "a")
    assert status(window, first)[0] == "labeled"
    ctrl(window, Qt.Key.Key_Z)
    assert np.array_equal(session.document.label, prelabel)
    assert status(window, first)[0] == "labeled"


def test_undo_stops_at_the_prelabel_after_a_trip_to_another_photo(qtbot, tmp_path):
    # The pre-label's step was kept in the photo's undo history across image switches: coming
    # back and pressing Ctrl+Z emptied a photo that had only been looked at.
    window, first, version = window_on_a_prelabel(qtbot, tmp_path, 2)
    session = window.session
    prelabel = session.document.label.copy()
    other = [i for i in window.image_list.visible_ids() if i != first][0]
    assert session.open_image(other)
    assert session.open_image(first)
    ctrl(window, Qt.Key.Key_Z)
    assert np.array_equal(session.document.label, prelabel)


def test_the_show_filter_starts_at_all_images_in_the_next_project_opened(qtbot, tmp_path):
    # Trial 9: "Show: labeled" chosen in one project stayed on when the next project opened:
    # its unlabeled photos were hidden, with nothing but the filter box to say why. A filter
    # is a look at one project's state for a moment; a project opens showing all its photos.
    from faceparse_app.widgets.image_list import ALL
    from tests.app.test_gui_canvas import make_project, make_window

    window = make_window(qtbot, tmp_path)
    window.image_list.set_status_filter("labeled")
    assert window.image_list.visible_ids() == []
    assert window.open_project(make_project(tmp_path / "second", n=4))
    assert window.image_list.status_filter == ALL
    assert len(window.image_list.visible_ids()) == 4


def test_the_sort_order_is_kept_across_restarts(qtbot, tmp_path):
    # Trial 9: "Least sure first" was back to "Name" at every launch.
    from faceparse_app.widgets.image_list import SORT_NAME, SORT_UNCERTAINTY
    from tests.app.test_gui_canvas import make_window
    from tests.app.test_gui_trial9 import reopen

    window = make_window(qtbot, tmp_path)
    assert window.image_list.sort_order == SORT_NAME
    box = window.image_list.sort_box
    box.setCurrentIndex(box.findData(SORT_UNCERTAINTY))
    folder = window.session.project.root
    window.close()

    again = reopen(qtbot, tmp_path, folder)
    assert again.image_list.sort_order == SORT_UNCERTAINTY
    assert again.image_list.sort_box.currentText() == "Least sure first"


def test_the_unsure_column_of_photos_labeled_in_an_earlier_session_is_filled(qtbot, tmp_path):
    # Trial 9: after a restart, photos labeled (or accepted) in an earlier session had a blank
    # Unsure cell whenever the store held no score of theirs for the model in use (labeled
    # before they were scored, a session killed before it kept its scores, another model
    # since): only unfinished photos are scored on open, so the cells stayed blank for good
    # and "Least sure first" put those photos anywhere. They are scored in the background too,
    # after the unfinished ones, as new photos are.
    from faceparse_app.widgets.image_table import Column
    from tests.app.test_gui_model_loop import WAIT_MS, open_window, project_with, publish_parser

    folder = project_with(tmp_path / "project", n=3, labeled=1)  # labeled in an earlier session
    publish_parser(folder, seed=1)
    window = open_window(qtbot, tmp_path, folder)
    records = window.session.records()
    labeled = [r.id for r in records if r.status == "labeled"]
    assert labeled

    def cell(image_id: int) -> str:
        return window.image_list.row_text(image_id, Column.UNSURE)

    qtbot.waitUntil(lambda: all(cell(r.id) for r in records if r.id not in labeled), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: all(cell(i) for i in labeled), timeout=WAIT_MS)
    score = float(cell(labeled[0]))
    assert 0.0 <= score <= 1.0


def test_an_empty_image_file_is_said_to_be_empty(qtbot, tmp_path):
    # Trial 9: a photo whose copy had failed (0 bytes) was reported "not an image or an
    # unsupported format", which sent the annotator looking at file types, not at the copy.
    from faceparse_app.widgets.image_list import PROBLEMS
    from tests.app.test_gui_canvas import make_project, make_window

    folder = make_project(tmp_path / "project", n=2)
    (folder / "copy failed.jpg").write_bytes(b"")
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    empty = window.session.project.find("copy failed.jpg")
    assert not window.session.open_image(empty.id)
    text = window.message_bar.message
    assert "copy failed.jpg" in text and "empty (0 bytes)" in text and "not an image" not in text
    window.image_list.set_status_filter(PROBLEMS)
    assert window.image_list.visible_ids() == [empty.id]
    assert "empty (0 bytes)" in window.image_list.row_tooltip(empty.id)


def test_an_empty_image_file_met_by_the_prelabel_sweep_is_said_to_be_empty(tmp_path):
    from faceparse_app.project_scan import read_photo
    from trainer.errors import ImageReadError

    (tmp_path / "a.png").write_bytes(b"")
    try:
        read_photo(tmp_path / "a.png")
    except ImageReadError as exc:
        assert "empty (0 bytes)" in str(exc) and str(tmp_path / "a.png") in str(exc)
    else:
        raise AssertionError("an empty file was read")


def test_the_edge_outline_leaves_no_spur_where_a_point_was_clicked_off_the_edge(qtbot, tmp_path):
    # Trial 9: points of an edge outline clicked a little off the part's edge (as a hand
    # does at fit zoom) each left a spur: the path ran from the edge out to the click and back,
    # and the fill painted that line, most visibly at the closing point. As GIMP's scissors
    # do, the outline keeps to the edge: nothing is painted that sticks out of the part.
    import cv2

    from tests.app.test_gui_assist import _disc, outline_window
    from tests.app.test_gui_canvas import click, key

    window = outline_window(qtbot, tmp_path)
    doc, canvas = window.session.document, window.canvas
    disc = _disc()
    rim = cv2.dilate(disc.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # ±1 px
    for clicks in ([(32, 14), (50, 32), (32, 50), (14, 32)], [(33, 14), (50, 33), (31, 50), (14, 31)]):
        for x, y in clicks:  # 3-4 px outside the rim (radius 14)
            click(canvas, x, y)
        key(window, Qt.Key.Key_Return)
        painted = doc.label == 6
        assert (painted & disc).sum() >= 0.9 * disc.sum()
        spurs = painted & ~rim
        assert not spurs.any(), f"painted outside the part at {np.argwhere(spurs)[:, ::-1].tolist()}"
        key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert not (doc.label == 6).any()


def test_the_apps_command_help_speaks_in_words_not_field_names(capsys):
    # Trial 9: faceparse-studio --help offered '--autosave-ms AUTOSAVE_MS' and 'export --help'
    # '--val-fraction VAL_FRACTION': the settings' field names where a user looks for what to
    # type, and "autosave interval" without its unit.
    import re

    from faceparse_app.__main__ import main

    texts = []
    for argv in (["--help"], ["export", "--help"]):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
        assert code == 0
        texts.append(capsys.readouterr().out)
    for text in texts:
        names = re.findall(r"\b[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+\b", text)
        assert names == [], f"field names in --help: {names}"
    assert "milliseconds" in texts[0]


_KILL_WHILE_WRITING = """
import os, signal, sys
import faceparse_app.export as export

real, done = export._export_one, []
def export_one(*args, **kwargs):
    how = real(*args, **kwargs)
    done.append(how)
    if len(done) == 2:  # killed while writing the faces, before the manifest
        os.kill(os.getpid(), signal.SIGKILL)
    return how
export._export_one = export_one
export.export_project(sys.argv[1], sys.argv[2], val_fraction=0.0, test_fraction=0.0)
"""


def test_exports_killed_while_writing_leave_no_hidden_copies_beside_the_folder(tmp_path, caplog):
    # The tenth trial: 12 exports killed at random moments (kill -9, as a crash or a closed
    # laptop does) left 9 hidden '.NAME.partial-*' folders beside the export, each a copy of
    # the faces written so far (a copy of the whole dataset for a large export), and every
    # later export logged, for each, "its manifest cannot be read: kept as it is; look in it
    # for files of yours". Killed before its manifest, an export has carried none of the
    # user's files into it (the manifest is on disk before the first is moved): nothing to
    # look for, and the next export removes it.
    import subprocess
    import sys
    from pathlib import Path

    from faceparse_app.export import export_project
    from tests.app.test_gui_trial2 import _labeled_project, _tree

    folder = _labeled_project(tmp_path)
    out = tmp_path / "lapa"
    export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
    (out / "notes.txt").write_text("my notes")
    before = _tree(out)
    for _ in range(2):
        child = subprocess.run([sys.executable, "-c", _KILL_WHILE_WRITING, str(folder), str(out)],
                               cwd=Path(__file__).parents[2], capture_output=True, text=True)  # fmt: skip
        assert child.returncode == -9, child.stderr
    assert [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # as the last kill left it
    export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    assert "look in it" not in caplog.text
    assert _tree(out) == before


def test_closing_with_labels_that_could_not_be_saved_names_them_and_defaults_to_staying(
    qtbot, tmp_path, monkeypatch
):
    # The tenth trial: with the labels folder made read-only, Ctrl+Q asked "Some labels could
    # not be saved (see the message). Close anyway and lose them?" with Yes as the default
    # button: Enter, the key an annotator presses to get a question out of the way, closed the
    # window and lost the edits of every photo the message bar no longer named. The question
    # names the photos and the reason, and Enter keeps the window open.
    import errno

    from PySide6.QtWidgets import QMessageBox

    from tests.app.test_gui_canvas import make_window

    window = make_window(qtbot, tmp_path)
    session = window.session
    ids = window.image_list.visible_ids()

    def fail(path, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("faceparse_app.project.atomic_write_bytes", fail)
    window.state.set_class(4)
    drag(window.canvas, [(10, 10), (30, 30)])
    assert session.open_image(ids[1])  # its save fails: kept in memory
    drag(window.canvas, [(10, 40), (30, 40)])
    shown = []

    def answer(box):
        shown.append((box.text() + " " + box.informativeText(), box.defaultButton()))
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "exec", answer)
    window.close()
    assert window.isVisible() and window.session is session  # stayed, edits kept
    (text, default), = shown
    names = [session.project.get(i).relpath for i in ids[:2]]
    assert all(name in text for name in names), text
    assert "read-only" in text
    assert default is not None and default.text().replace("&", "") in ("No", "Cancel")
    monkeypatch.undo()
    window.close()  # writable again: saves and closes without asking
    assert not window.isVisible()


def test_a_save_that_succeeds_on_retry_takes_the_not_saved_error_back(qtbot, tmp_path, monkeypatch):
    # The tenth trial: the labels folder was read-only for a while; once writable again the
    # next autosave wrote the kept edits, but "Not saved: ... Your edits are kept in memory"
    # stayed on the message bar, red, telling the annotator the work was still at risk.
    import errno

    from tests.app.test_gui_canvas import make_window

    window = make_window(qtbot, tmp_path)
    session = window.session

    def fail(path, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("faceparse_app.project.atomic_write_bytes", fail)
    window.state.set_class(4)
    drag(window.canvas, [(10, 10), (30, 30)])
    assert not session.save()
    assert window.message_bar.message.startswith("Not saved") and window.message_bar.level == "error"
    monkeypatch.undo()
    session.autosave()
    session.save()  # the background write lands
    assert window.message_bar.level != "error", window.message_bar.message
    assert "Saved" in window.message_bar.message and session.current.relpath in window.message_bar.message


def test_a_re_export_refused_over_one_edited_file_speaks_of_it_not_them(tmp_path):
    # The tenth trial: "train/labels/x.png changed since the last export wrote them; move them
    # elsewhere" for a single file.
    import pytest

    from faceparse_app.export import export_project
    from faceparse_app.project import ProjectError
    from tests.app.test_gui_trial2 import _labeled_project

    folder = _labeled_project(tmp_path)
    out = tmp_path / "lapa"
    export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
    (edited,) = sorted((out / "train" / "labels").iterdir())[:1]
    edited.write_bytes(edited.read_bytes() + b"\0")
    with pytest.raises(ProjectError, match="wrote it; move it elsewhere"):
        export_project(folder, out, val_fraction=0.0, test_fraction=0.0)
