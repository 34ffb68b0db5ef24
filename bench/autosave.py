"""An autosave of a 4000×4000 label, as long as the window waits for it: written on the GUI
thread (as before issue 31) and handed to the background writer (the label is copied; encoding
and writing happen on the writer's thread).

Each repeat paints a new 200-px stroke with the brush, then calls the session's autosave and
times the call (medians in ms).

    QT_QPA_PLATFORM=offscreen python -m bench.autosave [--size 4000] [--repeats 5]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import add_common, argument_parser, command_line, machine, utc_now, write_json

EXPERIMENT = "autosave"


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    add_common(parser, EXPERIMENT, results="autosave.json")
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from bench.bench_canvas import app_without_models, make_project, point, settle
    from faceparse_app.app import Settings
    from faceparse_app.main_window import MainWindow

    app = app_without_models()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_project(Path(tmp) / "p", args.size, 1)
        settings = Settings(Path(tmp) / "settings.ini")
        settings.set_autosave_ms(600_000)
        window = MainWindow(settings)
        window.resize(1280, 800)
        window.show()
        settle(app)
        window.open_project(folder)
        settle(app)
        session, canvas = window.session, window.canvas
        window.state.set_radius(30)
        window.state.set_class(3)
        writer = session.annotation.writer
        for row, (mode, use) in enumerate((("background_ms", writer), ("gui_thread_ms", None))):
            session.annotation.writer = use
            times = []
            for i in range(args.repeats):
                y = args.size * (0.1 + 0.4 * row) + 60 * i
                x0, x1 = args.size * 0.1, args.size * 0.1 + 200
                left = Qt.MouseButton.LeftButton
                QTest.mousePress(canvas, left, Qt.KeyboardModifier.NoModifier, point(canvas, x0, y))
                QTest.mouseMove(canvas, point(canvas, x1, y))
                QTest.mouseRelease(canvas, left, Qt.KeyboardModifier.NoModifier, point(canvas, x1, y))
                settle(app)
                assert session.document.dirty
                t0 = time.perf_counter()
                session.autosave()
                times.append((time.perf_counter() - t0) * 1000)
                writer.settle()
            results[mode] = round(statistics.median(times), 1)
        session.annotation.writer = writer
        window.close()
    results["size"] = args.size
    print(results, "(ms per autosave call, medians)")
    command = command_line("bench.autosave", argv)
    payload = {"results": results, "date": utc_now(), "command": command, "machine": machine()}
    print(f"wrote {write_json(args.results, payload, command)}")


if __name__ == "__main__":
    main()
