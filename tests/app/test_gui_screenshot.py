"""A person should be able to look at the tool: label the demo face with the real tools, save a
screenshot of the main window under bench/out/ (not committed), and check it shows the labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from faceparse_app.widgets.label_colours import display_palette
from tests.app.test_gui_canvas import click, key, make_window
from trainer.labels import LAPA

SCREENSHOT = Path(__file__).resolve().parents[2] / "bench" / "out" / "screenshot_main_window.png"

# Rough parts of the demo astronaut's face in the 512×512 photo: (class, centre, half-axes).
FACE_PARTS = [
    (10, (226, 82), (72, 66)),
    (1, (222, 116), (40, 56)),
    (2, (205, 92), (13, 4)),
    (3, (246, 92), (13, 4)),
    (4, (207, 103), (8, 4)),
    (5, (245, 103), (8, 4)),
    (6, (226, 118), (9, 14)),
    (7, (226, 140), (19, 4)),
    (8, (226, 145), (16, 2)),
    (9, (226, 150), (17, 4)),
]


def test_demo_face_labeled_with_the_polygon_tool_and_a_screenshot_saved(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, open_project=False)
    window.resize(1280, 800)
    assert window.open_demo()
    session = window.session
    rec = next(r for r in session.records() if r.relpath == "astronaut.jpg")
    session.open_image(rec.id)
    window.canvas.zoom_fit()
    # Zoom in on the face, as an annotator does for small parts such as the eyes.
    window.canvas.zoom_by(3.0, window.canvas.image_to_widget(226, 116))
    key(window, Qt.Key.Key_P)  # polygon tool
    for cls, centre, axes in FACE_PARTS:
        window.state.set_class(cls)
        for x, y in cv2.ellipse2Poly(centre, axes, 0, 0, 360, 20)[:-1]:
            click(window.canvas, float(x), float(y))
        key(window, Qt.Key.Key_Return)
    label = session.document.label
    assert label[125, 200] == 1 and label[103, 207] == 4 and label[103, 245] == 5
    assert label[60, 226] == 10 and label[400, 100] == 0
    key(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # mark labeled
    assert session.project.get(rec.id).status == "labeled"

    window.canvas.zoom_fit()
    QTest.qWait(50)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(SCREENSHOT))
    shot = np.asarray(Image.open(SCREENSHOT).convert("RGB")).astype(int)
    # The skin overlay tints the face: the window shows the skin colour blended over the photo.
    centre = window.canvas.mapTo(window, window.canvas.image_to_widget(200.5, 125.5).toPoint())
    photo = session.image[125, 200].astype(int)
    shown = shot[centre.y(), centre.x()]
    skin = display_palette(LAPA)[1].astype(int)
    assert np.abs(shown - skin).sum() < np.abs(photo - skin).sum()
