"""File → Import labels… in the window: the photo on screen shows its imported label at once,
one message says what was imported, kept and skipped; a LaPa tree opened as a project offers
its labels. Real HELEN faces, copied into a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from faceparse_app.widgets.label_import import import_labels_in_window
from tests.app.test_gui_canvas import make_window
from trainer.data.imageio import read_label

HELEN = "lapa-format-helen/test"


def helen_window(qtbot, tmp_path: Path, shared_data: Path):
    """A window open on a project of the HELEN photos (the first one on screen, its label still
    empty) and a copy of their labels folder: (window, labels folder)."""
    photos, labels = tmp_path / "proj", tmp_path / "labels"
    shutil.copytree(shared_data / HELEN / "images", photos)
    shutil.copytree(shared_data / HELEN / "labels", labels)
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(photos)
    assert window.session.current is not None and not window.session.document.label.any()
    return window, labels


def test_import_shows_the_label_on_screen_and_one_summary(qtbot, tmp_path: Path, shared_data: Path) -> None:
    window, labels = helen_window(qtbot, tmp_path, shared_data)
    session = window.session
    shown = session.current
    by_name = {r.relpath: r for r in session.records()}
    other = next(p for p in sorted(by_name) if p != shown.relpath)
    session.open_image(by_name[other].id)
    session.document.begin_stroke(4)
    session.document.stroke_to(10, 10, 4)
    session.document.end_stroke()
    session.note_edit()
    session.open_image(shown.id)  # the edit on `other` is saved on the way: a hand label
    report = import_labels_in_window(window, labels)
    assert report is not None and report.kept == [other] and len(report.imported) == 5
    assert np.array_equal(session.document.label, read_label(labels / shown.relpath))
    assert np.array_equal(window.canvas.document.label, read_label(labels / shown.relpath))
    text = window.message_bar.message
    assert "5 imported" in text and "needs review" in text and other in text
    assert not session.document.history.can_undo  # nothing to undo back to a label that is gone
    rows = {r.relpath: r for r in session.records()}
    assert rows[shown.relpath].status == "labeled" and rows[shown.relpath].needs_review
    assert rows[other].status == "in_progress"


def test_a_lapa_tree_opens_with_its_images_and_offers_its_labels(qtbot, tmp_path: Path, shared_data: Path) -> None:
    tree = tmp_path / "helen"
    shutil.copytree(shared_data / "lapa-format-helen", tree)
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(tree)
    assert all(r.relpath.startswith("test/images/") for r in window.session.records())
    text = window.message_bar.message
    assert "test/labels" in text and "Import labels" in text
    assert window.import_offer.isVisible()
    report = import_labels_in_window(window, tree)
    assert report is not None and len(report.imported) == 6
    assert not window.import_offer.isVisible()


def test_a_stroke_painted_on_the_photo_on_screen_while_the_import_runs_is_kept(
    qtbot, tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    """The window takes input while the import runs off the GUI thread (the busy dialog comes
    after a moment): a stroke painted then on the photo on screen is the annotator's, and must
    neither vanish from the canvas nor be replaced on disk by the imported label."""
    import threading

    from PySide6.QtCore import QTimer

    import faceparse_app.widgets.label_import as label_import

    window, labels = helen_window(qtbot, tmp_path, shared_data)
    session = window.session
    shown = session.current
    painted = threading.Event()
    real = label_import.import_labels

    def after_the_stroke(*args, **kwargs):  # the import's work starts once the stroke is in
        assert painted.wait(10)
        return real(*args, **kwargs)

    def paint() -> None:
        session.document.begin_stroke(4)
        session.document.stroke_to(10, 10, 4)
        session.document.end_stroke()
        session.note_edit()
        painted.set()

    monkeypatch.setattr(label_import, "import_labels", after_the_stroke)
    QTimer.singleShot(0, paint)
    report = import_labels_in_window(window, labels)
    assert report is not None and painted.is_set()
    assert shown.relpath in report.kept and shown.relpath not in report.imported
    assert len(report.imported) == 5
    assert window.canvas.document.label[10, 10] == 4  # the stroke is still on screen
    assert session.save_all()
    on_disk = read_label(session.project.label_path(shown))
    assert on_disk[10, 10] == 4 and not np.array_equal(on_disk, read_label(labels / shown.relpath))
    assert shown.relpath in window.message_bar.message  # named among the kept
