"""Defects found in the third user trial of the real window (t36): an ML engineer's round trip
through the export and the trainer CLI, bad files in an open folder, multi-face photos, window
sizes and scale, the model versions panel; each driven the way the user met it."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.app.test_gui_canvas import key
from tests.app.test_gui_model_loop import WAIT_MS, open_window, project_with, publish_parser


def test_accepting_when_the_model_cannot_be_loaded_says_so_not_still_being_predicted(qtbot, tmp_path):
    # The last review: with a damaged model file in the project, A on an image without a
    # pre-label said "still being predicted", and kept saying it: no pre-label would ever come.
    folder = project_with(tmp_path / "project", n=2)
    version = publish_parser(folder, seed=1)
    store = folder / ".faceparse" / "models"
    damaged = next(store.rglob("*.safetensors"))
    data = bytearray(damaged.read_bytes())  # the size kept: damaged inside, as by a bad disk
    data[-4096:] = bytes(4096)
    damaged.write_bytes(bytes(data))
    window = open_window(qtbot, tmp_path, folder)
    bar = window.message_bar
    qtbot.waitUntil(lambda: "could not be loaded" in bar.message, timeout=WAIT_MS)
    image_id = window.session.current.id
    key(window, Qt.Key.Key_A)
    assert "still being predicted" not in bar.message
    assert "could not be loaded" in bar.message and version in bar.message
    assert "Ctrl+Return" in bar.message  # what to do: label it by hand ...
    assert "Training" in bar.message  # ... or pick another version
    assert window.session.project.get(image_id).status not in ("labeled", "reviewed")
    # The next image says the same, not "still being predicted" either.
    key(window, Qt.Key.Key_N)
    key(window, Qt.Key.Key_A)
    assert "still being predicted" not in bar.message and "could not be loaded" in bar.message
