"""Bad input in the app: each gets a clear message, the rest of the project keeps working, and
no label file on disk is overwritten with garbage."""

from __future__ import annotations

import errno
import io

import numpy as np
import pytest
from PIL import Image

from faceparse_app.project import Project
from tests.app.test_gui_canvas import drag, make_project, make_window
from tests.app.test_gui_session import saved_label, select
from tests.conftest import synthetic_face

HEIC_BYTES = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)


def jpeg_bytes(seed: int = 5) -> bytes:
    image, _ = synthetic_face(64, seed)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def still_works(window) -> None:
    """A good image opens and takes paint after the bad one."""
    session = window.session
    good = next(r for r in session.records() if r.relpath == "f0.png")
    select(window, good.id)
    assert session.current.id == good.id and session.document is not None
    drag(window.canvas, [(20, 20), (24, 24)])
    assert session.document.label[22, 22] != 0


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("corrupt.jpg", b"this is not a JPEG at all" * 10, "not an image"),
        ("truncated.jpg", jpeg_bytes()[:400], "truncated"),
        ("photo.webp", HEIC_BYTES, "unsupported format"),
    ],
)
def test_unreadable_image_is_reported_and_marked(qtbot, tmp_path, name, data, words):
    folder = make_project(tmp_path / "project", n=2)
    (folder / name).write_bytes(data)
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    session = window.session
    bad = next(r for r in session.records() if r.relpath == name)
    select(window, bad.id)
    assert session.current.id == bad.id and session.document is None
    assert name in window.message_bar.message and words in window.message_bar.message
    assert window.message_bar.level == "error"
    assert name not in window.statusBar().currentMessage()  # said once, on the message bar
    # The list marks it; the "problems" filter shows just it.
    assert (
        "not" in window.image_list.row_tooltip(bad.id)
        or words in window.image_list.row_tooltip(bad.id)
    )
    window.image_list.set_status_filter("problems")
    assert window.image_list.visible_ids() == [bad.id]
    window.image_list.set_status_filter("all")
    still_works(window)
    assert not session.project.label_path(bad).exists()


@pytest.mark.parametrize(
    ("label", "words"),
    [
        (np.zeros((32, 32), np.uint8), "32"),
        (np.full((64, 64), 200, np.uint8), "200"),
    ],
    ids=["wrong-size", "values-above-10"],
)
def test_unusable_label_file_is_kept_until_edited(qtbot, tmp_path, label, words):
    folder = make_project(tmp_path / "project", n=2)
    with Project.open(folder) as project:
        rec = project.find("f1.png")
        path = project.label_path(rec)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(label, "L").save(path)
    original = path.read_bytes()
    window = make_window(qtbot, tmp_path, open_project=False)
    assert window.open_project(folder)
    session = window.session
    select(window, rec.id)
    assert session.document is not None and not session.document.label.any()
    text = window.message_bar.message
    assert "f1.png" in text and words in text and window.message_bar.level == "warning"
    # Looking is not editing: switching away leaves the file exactly as it was.
    still_works(window)
    assert path.read_bytes() == original
    # Editing replaces it, keeping the unusable file aside.
    select(window, rec.id)
    drag(window.canvas, [(5, 5), (9, 9)])
    assert session.save()
    assert saved_label(window, rec.id)[7, 7] != 0
    assert path.with_name(path.name + ".invalid").read_bytes() == original


def test_read_only_project_folder_is_refused_with_a_message(qtbot, tmp_path, monkeypatch):
    folder = make_project(tmp_path / "project", n=2)

    def read_only(_store):
        raise PermissionError(errno.EACCES, "Permission denied")

    # Tests may run as root, for whom chmod does not stop writes: fail the store's probe instead.
    monkeypatch.setattr("faceparse_app.project._probe_write", read_only)
    window = make_window(qtbot, tmp_path, open_project=False)
    assert not window.open_project(folder)
    assert "read-only" in window.message_bar.message and window.message_bar.level == "error"
    assert window.session is None and window.stack.currentWidget() is window.start_page
    monkeypatch.undo()
    assert window.open_project(folder)
    still_works(window)


@pytest.mark.parametrize(
    ("code", "words"), [(errno.ENOSPC, "disk full"), (errno.EROFS, "read-only")]
)
def test_failed_save_keeps_old_file_and_edits_then_retries(
    qtbot, tmp_path, monkeypatch, code, words
):
    window = make_window(qtbot, tmp_path)
    session = window.session
    first = session.current.id
    drag(window.canvas, [(10, 10), (12, 12)])
    assert session.save()
    before_bytes = session.project.label_path(session.current).read_bytes()

    def fail(path, data):
        raise OSError(code, "simulated")

    monkeypatch.setattr("faceparse_app.project.atomic_write_bytes", fail)
    drag(window.canvas, [(40, 40), (50, 50)])
    edited = session.document.label.copy()
    ids = window.image_list.visible_ids()
    select(window, ids[1])  # the save on switch fails
    assert words in window.message_bar.message and window.message_bar.level == "error"
    assert "kept in memory" in window.message_bar.message
    assert session.project.label_path(session.project.get(first)).read_bytes() == before_bytes
    # The project keeps working, and the unsaved edits are still there.
    drag(window.canvas, [(30, 30), (31, 31)])
    select(window, first)
    assert np.array_equal(session.document.label, edited)
    # Once the disk is back, the next autosave writes them.
    monkeypatch.undo()
    session.autosave()
    session.annotation.writer.settle()  # the image on screen is written in the background
    assert np.array_equal(saved_label(window, first), edited)
    assert saved_label(window, ids[1])[30, 30] != 0


def test_close_with_unsaved_labels_asks_and_can_stay(qtbot, tmp_path, monkeypatch):
    window = make_window(qtbot, tmp_path)
    session = window.session
    image_id = session.current.id

    def fail(path, data):
        raise OSError(errno.ENOSPC, "simulated")

    monkeypatch.setattr("faceparse_app.project.atomic_write_bytes", fail)
    drag(window.canvas, [(10, 10), (30, 30)])
    edited = session.document.label.copy()
    asked = []
    window.confirm_discard = lambda: asked.append(1) or False
    window.close()
    assert asked and window.isVisible() and window.session is session  # stayed, edits kept
    assert np.array_equal(session.document.label, edited)
    monkeypatch.undo()
    window.close()  # the disk is back: saves and closes without asking
    assert len(asked) == 1 and not window.isVisible()
    with Project.open(tmp_path / "project") as project:
        assert np.array_equal(project.load_label(project.get(image_id)), edited)


@pytest.mark.parametrize("failure", ["bomb", "memory"])
def test_an_image_that_cannot_be_decoded_never_takes_strokes_it_cannot_save(
    qtbot, tmp_path, monkeypatch, failure
):
    """Issue 28 §4: a photo over Pillow's pixel limit (or one too big for memory) left the
    previous document on the canvas; strokes went into it and were never saved."""
    window = make_window(qtbot, tmp_path)
    session = window.session
    ids = window.image_list.visible_ids()
    select(window, ids[0])
    drag(window.canvas, [(10, 10), (14, 14)])
    assert session.save()
    bad = session.project.get(ids[1])
    if failure == "bomb":
        # 64 × 64 = 4,096 pixels: over twice this limit, which is what Pillow refuses outright.
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    else:
        import faceparse_app.project as project_mod

        real = project_mod.read_image

        def huge(path):
            if path.name == bad.relpath:
                raise MemoryError("cannot allocate 1.6 GB")
            return real(path)

        monkeypatch.setattr(project_mod, "read_image", huge)
    select(window, bad.id)
    assert session.current.id == bad.id
    assert window.canvas.document is None and session.document is None
    assert window.message_bar.level == "error" and bad.relpath in window.message_bar.message
    before = {i: session.project.label_path(session.project.get(i)).exists() for i in ids}
    drag(window.canvas, [(20, 20), (40, 40)])  # paints nothing: there is no label to paint
    assert session.save_all()
    after = {i: session.project.label_path(session.project.get(i)).exists() for i in ids}
    assert after == before
    monkeypatch.undo()
    still_works(window)
