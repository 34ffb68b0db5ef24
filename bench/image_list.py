"""The image list with 10,000 images: opening the project, scrolling, switching, a status change
and a batch of uncertainty scores, in the real main window (offscreen).

Times what the annotator waits for, each until the resulting repaint is processed:

- open: File → Open of a project whose store already lists every image (the daily case: the
  folder scan finds nothing new), until the first image is shown; and the first open, which
  scans and adds every file (measured once, when the project is made);
- scroll: one page down in the list (median and 95th percentile over the whole list);
- switch: Page Down to the next image (tiny images, so the list's share shows);
- status: marking the image labeled (the list shows the new status);
- scores: a batch of 10,000 uncertainty scores arriving, with the list sorted by name and by
  uncertainty (least sure first).

No model runs (no starter models, one whole face per image), so only the app's own work is timed.

    QT_QPA_PLATFORM=offscreen python -m bench.image_list [--images 10000] [--repeats 20]

Against another checkout's app (the "before" of BENCHMARKS): from that checkout,
``PYTHONPATH=. python PATH/TO/THIS/bench/image_list.py --results ...``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import add_common, argument_parser, command_line, machine, utc_now, write_json

EXPERIMENT = "image_list"


def make_folder(folder: Path, n: int, side: int = 48) -> Path:
    """`n` distinct JPEGs, ``side`` pixels square (smooth, so a few KB each), with long
    hash-like names (their content is not what is timed)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(48, 48, 3), dtype=np.uint8)
    if side != 48:
        base = cv2.resize(base, (side, side), interpolation=cv2.INTER_LINEAR)
    for i in range(n):
        path = folder / f"{i:05d}_{rng.bytes(12).hex()}.jpg"
        image = base.copy()
        image[i % 48, (i // 48) % 48] = (i % 251, 7, 9)  # every file its own hash
        cv2.imwrite(str(path), image)
    return folder


def bench_window(app, tmp: Path):
    """The main window the benches drive: settings in ``tmp``, autosave out of the way (10 min),
    1600×1000, shown and settled."""
    from faceparse_app.app import Settings
    from faceparse_app.main_window import MainWindow

    settings = Settings(tmp / "settings.ini")
    settings.set_autosave_ms(600_000)
    window = MainWindow(settings)
    window.resize(1600, 1000)
    window.show()
    settle(app)
    return window


def settle(app) -> None:
    app.processEvents()
    app.sendPostedEvents()
    app.processEvents()


def timed(app, fn) -> float:
    t0 = time.perf_counter()
    fn()
    settle(app)
    return (time.perf_counter() - t0) * 1000


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "n": len(ordered),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    add_common(parser, EXPERIMENT, out=True, results="image_list.json")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from bench.bench_canvas import app_without_models
    from faceparse_app.project import Project

    # Only the app's own work: no model pre-labels or scores in the background.
    app = app_without_models()
    results: dict[str, object] = {"images": args.images}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "project", args.images)
        t0 = time.perf_counter()
        Project.open(folder).close()  # the first open: scan and add every file
        results["first_open_scan_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        window = bench_window(app, Path(tmp))
        results["open_ms"] = round(timed(app, lambda: window.open_project(folder)), 1)
        session, image_list = window.session, window.image_list
        bar = image_list.list.verticalScrollBar()
        pages = []
        while bar.value() < bar.maximum():
            pages.append(timed(app, lambda: bar.setValue(bar.value() + bar.pageStep())))
        results["scroll_page_ms"] = summary(pages)
        results["scroll_to_top_ms"] = round(timed(app, lambda: bar.setValue(0)), 2)
        step = window._step  # Page Down: the next row of the list
        results["switch_ms"] = summary([timed(app, lambda: step(1)) for _ in range(args.repeats)])
        status = []
        for _ in range(args.repeats):
            status.append(timed(app, lambda: session.set_status("labeled")))
            step(1)
            settle(app)
        results["status_ms"] = summary(status)
        rng = np.random.default_rng(1)
        ids = [r.id for r in session.records()]
        batches = [{i: float(s) for i, s in zip(ids, rng.random(len(ids)), strict=True)} for _ in range(5)]
        results["scores_by_name_ms"] = summary([timed(app, lambda b=b: image_list.set_scores(b)) for b in batches])
        image_list.sort_box.setCurrentIndex(image_list.sort_box.findData("uncertainty"))
        settle(app)
        results["scores_least_sure_first_ms"] = summary(
            [timed(app, lambda b=b: image_list.set_scores(b)) for b in batches]
        )
        window.close()
    for key, value in results.items():
        print(f"{key:>28}: {value}")
    command = command_line("bench.image_list", argv)
    payload = {
        "results": results,
        "date": utc_now(),
        "command": command,
        "machine": machine(),
        "qt_platform": os.environ.get("QT_QPA_PLATFORM"),
        "app": str(Path(sys.modules["faceparse_app"].__file__).parent),
        "window": [1600, 1000],
    }
    print(f"wrote {write_json(args.results, payload, command)}")


if __name__ == "__main__":
    main()
