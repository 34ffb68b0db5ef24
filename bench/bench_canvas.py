"""Canvas speed: brush segment to repaint, undo of a wide stroke, switching image.

Runs the real main window offscreen on synthetic photos (JPEG) with saved labels, at 1024² and
4000², and times what the annotator waits for:

- segment: one mouse move of a brush stroke (radius 20 px) until the repaint is processed
  (document edit + overlay recolour of the changed box + viewport repaint), median;
- undo: Ctrl+Z of a 200-px-wide (radius 100) stroke across the image, to repaint processed;
- switch: opening the next image (JPEG decode, label PNG read + check, overlay, first paint),
  with nothing to save, and again when the previous image has unsaved edits (adds the save).

Writes bench/results/canvas/canvas.json (medians, targets, the machine with its CPU ISA) and a
screenshot of the main window with the demo astronaut labeled to
bench/out/canvas/screenshot_main_window.png.

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m bench.bench_canvas [--sizes 1024 4000] [--repeats 5]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from bench.harness import (
    add_common,
    argument_parser,
    command_line,
    machine,
    utc_now,
    write_json,
)
from faceparse_app.app import Settings, create_application
from faceparse_app.main_window import MainWindow
from faceparse_app.project import Project
from trainer.data.imageio import write_image

EXPERIMENT = "canvas"
TARGETS_MS = {"segment": 16.0, "undo": 30.0, "switch": 150.0}  # issue 3, at 1024²


def synthetic_photo(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth, noisy face-like photo (compresses like a photo) and a LaPa label for it."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    c, s = size // 2, size / 64
    cv2.ellipse(label, (c, int(24 * s)), (int(22 * s), int(16 * s)), 0, 0, 360, 10, -1)
    cv2.ellipse(label, (c, int(34 * s)), (int(17 * s), int(22 * s)), 0, 0, 360, 1, -1)
    for cls, x in ((4, 24), (5, 40)):
        cv2.ellipse(label, (int(x * s), int(29 * s)), (int(3 * s), int(2 * s)), 0, 0, 360, cls, -1)
    cv2.ellipse(label, (c, int(36 * s)), (int(3 * s), int(5 * s)), 0, 0, 360, 6, -1)
    cv2.ellipse(label, (c, int(45 * s)), (int(7 * s), int(2 * s)), 0, 0, 360, 7, -1)
    palette = rng.integers(40, 230, size=(11, 3)).astype(np.float32)
    small = palette[cv2.resize(label, (256, 256), interpolation=cv2.INTER_NEAREST)]
    image = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    image += rng.normal(0, 6, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_project(folder: Path, size: int, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _ = synthetic_photo(size, i)
        write_image(folder / f"face{i:02d}.jpg", image, quality=90)
    with Project.open(folder) as project:
        for i, rec in enumerate(project.images()):
            project.save_label(rec, synthetic_photo(size, i)[1])
    return folder


def app_without_models() -> QApplication:
    """The application, with no model to pre-label or score in the background (no starter
    models, the whole image as the one face): what a bench of the app's own work measures."""
    import faceparse_app.model_store as model_store
    from trainer import face_detect

    model_store.STARTER_PARSER = model_store.STARTER_BACKBONE = Path("/nonexistent.safetensors")
    face_detect.get_finder = lambda name=None: face_detect.WholeImageFinder()
    return create_application([])


def settle(app: QApplication) -> None:
    """Process pending events (the repaint) until none are left."""
    app.processEvents()
    app.sendPostedEvents()
    app.processEvents()


def point(canvas, x: float, y: float):
    return canvas.image_to_widget(x + 0.5, y + 0.5).toPoint()


def bench_size(
    app: QApplication, window: MainWindow, folder: Path, size: int, repeats: int
) -> dict:
    assert window.open_project(folder)
    session, canvas = window.session, window.canvas
    ids = [r.id for r in session.records()]
    session.open_image(ids[0])
    settle(app)
    window.state.set_class(3)
    window.state.set_radius(20)

    # Brush segments: a stroke of many short moves (about 6 image px apart) across the face.
    segment_ms = []
    for rep in range(repeats):
        y = size * (0.3 + 0.1 * rep)
        QTest.mousePress(
            canvas,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
            point(canvas, size * 0.1, y),
        )
        settle(app)
        for x in np.linspace(size * 0.1, size * 0.9, 80)[1:]:
            t0 = time.perf_counter()
            QTest.mouseMove(canvas, point(canvas, x, y + 10 * np.sin(x / 40)))
            settle(app)
            segment_ms.append((time.perf_counter() - t0) * 1000)
        QTest.mouseRelease(
            canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, x, y)
        )
        settle(app)

    # Undo of a 200-px-wide stroke (radius 100) across the image, then redo (not timed).
    undo_ms = []
    window.state.set_radius(100)
    window.state.set_class(8)
    for rep in range(repeats):
        y = size * (0.25 + 0.1 * rep)
        QTest.mousePress(
            canvas,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
            point(canvas, size * 0.05, y),
        )
        for x in np.linspace(size * 0.05, size * 0.95, 20)[1:]:
            QTest.mouseMove(canvas, point(canvas, x, y))
        QTest.mouseRelease(
            canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point(canvas, x, y)
        )
        settle(app)
        t0 = time.perf_counter()
        assert session.undo()
        settle(app)
        undo_ms.append((time.perf_counter() - t0) * 1000)
    session.save()

    # Switching to the next image, nothing to save.
    switch_ms = []
    for rep in range(repeats):
        t0 = time.perf_counter()
        assert session.open_image(ids[(rep + 1) % len(ids)])
        settle(app)
        switch_ms.append((time.perf_counter() - t0) * 1000)
    # Switching away from an edited image (the autosave on switch is part of the wait).
    switch_save_ms = []
    window.state.set_radius(20)
    for rep in range(repeats):
        QTest.mousePress(
            canvas,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
            point(canvas, size / 2, size / 2),
        )
        QTest.mouseRelease(
            canvas,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
            point(canvas, size / 2, size / 2),
        )
        t0 = time.perf_counter()
        assert session.open_image(ids[(rep + 2) % len(ids)])
        settle(app)
        switch_save_ms.append((time.perf_counter() - t0) * 1000)
    # Pan: every step repaints the whole view (zoomed to fit, and at 1:1 in the middle).
    pan_ms = {}
    for name, zoom in (("fit", canvas.zoom_fit), ("1to1", canvas.zoom_actual)):
        zoom()
        settle(app)
        times = []
        for step in range(30):
            t0 = time.perf_counter()
            canvas.pan_by(4 if step % 2 else -4, 3)
            canvas.repaint()
            times.append((time.perf_counter() - t0) * 1000)
        pan_ms[name] = statistics.median(times)
    window.close_project()
    return {
        "size": size,
        "segment_ms_median": statistics.median(segment_ms),
        "segment_ms_p95": float(np.percentile(segment_ms, 95)),
        "undo_ms_median": statistics.median(undo_ms),
        "switch_ms_median": statistics.median(switch_ms),
        "switch_with_save_ms_median": statistics.median(switch_save_ms),
        "pan_fit_ms_median": pan_ms["fit"],
        "pan_1to1_ms_median": pan_ms["1to1"],
        "segments": len(segment_ms),
        "repeats": repeats,
    }


def screenshot(app: QApplication, window: MainWindow, path: Path) -> None:
    """The demo astronaut with a rough hand label (polygon fills), as a person would see it."""
    assert window.open_demo()
    session = window.session
    rec = next(r for r in session.records() if r.relpath == "astronaut.jpg")
    session.open_image(rec.id)
    doc = session.document
    # Rough parts of Eileen Collins' face in the 512×512 photo (x, y, half-width, half-height).
    parts = [
        (10, (226, 82), (72, 66)),  # hair
        (1, (222, 116), (40, 56)),  # skin
        (2, (205, 92), (13, 4)),  # left eyebrow (viewer's left)
        (3, (246, 92), (13, 4)),  # right eyebrow
        (4, (207, 103), (8, 4)),  # left eye
        (5, (245, 103), (8, 4)),  # right eye
        (6, (226, 118), (9, 14)),  # nose
        (7, (226, 140), (19, 4)),  # upper lip
        (8, (226, 145), (16, 2)),  # inner mouth
        (9, (226, 150), (17, 4)),  # lower lip
    ]
    for cls, centre, axes in parts:
        points = cv2.ellipse2Poly(centre, axes, 0, 0, 360, 8)
        doc.fill_polygon([tuple(map(int, p)) for p in points], cls)
    session.set_status("labeled")  # saves, and the list shows the labeled icon
    window.state.set_opacity(0.55)
    window.state.set_class(1)
    window.canvas.zoom_fit()
    QTest.mouseMove(window.canvas, point(window.canvas, 300, 200))
    settle(app)
    path.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(path))
    window.close_project()


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    add_common(parser, EXPERIMENT, out=True, results="canvas.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before the application starts
    out = Path(args.out)
    app = create_application([])
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(Path(tmp) / "settings.ini")
        settings.set_autosave_ms(600_000)  # no timer saves in the middle of a measurement
        settings.set_demo_dir(Path(tmp) / "demo")
        window = MainWindow(settings)
        window.resize(1280, 800)
        window.show()
        QTest.qWaitForWindowExposed(window)
        results = []
        for size in args.sizes:
            folder = make_project(Path(tmp) / f"p{size}", size, args.images)
            results.append(bench_size(app, window, folder, size, args.repeats))
        screenshot(app, window, out / "screenshot_main_window.png")
        window.close()
    print(
        f"{'size':>6} {'segment med':>12} {'seg p95':>9} {'undo 200px':>11} {'switch':>8} "
        f"{'switch+save':>12} {'pan fit':>8} {'pan 1:1':>8}  (ms, medians)"
    )
    for r in results:
        print(
            f"{r['size']:>6} {r['segment_ms_median']:>12.2f} {r['segment_ms_p95']:>9.2f} "
            f"{r['undo_ms_median']:>11.2f} {r['switch_ms_median']:>8.1f} "
            f"{r['switch_with_save_ms_median']:>12.1f} {r['pan_fit_ms_median']:>8.2f} {r['pan_1to1_ms_median']:>8.2f}"
        )
    print(
        f"targets at 1024²: segment < {TARGETS_MS['segment']} ms, undo < {TARGETS_MS['undo']} ms, "
        f"switch < {TARGETS_MS['switch']} ms"
    )
    command = command_line(__spec__.name, argv)
    info = {
        "date": utc_now(),
        "command": command,
        "machine": machine(),  # its load average: other work on the machine skews timings
        "qt_platform": os.environ.get("QT_QPA_PLATFORM"),
        "window": [1280, 800],
    }
    payload = {"results": results, "targets_ms_1024": TARGETS_MS, **info}
    written = write_json(args.results, payload, command)
    print(f"wrote {written} and {out / 'screenshot_main_window.png'}")


if __name__ == "__main__":
    main()
