"""The label checks' load on the window of a large project: every checked label is checked on a
background thread when the project opens (``faceparse_app.label_issue_watch``).

A project of N 512x512 photos (smooth JPEGs), each with the same synthetic one-face label (every tenth,
or every Nth, drawn the person's way, so it is flagged left/right swapped), all "labeled", opened in the real
main window (offscreen). Measured:

- ``jobs_ms``: listing what to check from the store (the opening pass does it on its own thread;
  it was on the GUI thread as the project opened until the review of 2026-12-07);
- ``open_ms``: File → Open until the first photo is shown (the watch's start included);
- ``pass_labels_per_s``: how fast the opening pass goes (extrapolated to the whole project);
- ``gui_gap_ms``: how late a 5 ms timer on the GUI thread fires while the pass runs, against
  the same window idle before the open (the worker holds the GIL in Python code);
- ``list_update_ms``: each update of the image list with what was found (GUI thread);
- with ``--reopen``: the project closed, the cache file a finished pass leaves written
  (``label_checks.json``), and opened again: ``reopen_ms_all_known``, File → Open until every
  label's issue is known, ``reopen_checks``, how many labels were checked again (0 expected), and
  ``reopen_gui_round_max_ms``, the longest round of the GUI thread's events meanwhile (the open
  itself excluded).

No model runs (no starter models, one whole face per image), so only the checks are timed.

    QT_QPA_PLATFORM=offscreen python -m bench.label_issue_load [--images 10000] [--seconds 20] [--swapped-every 10] [--reopen]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import add_common, argument_parser, command_line, machine, utc_now, write_json
from bench.image_list import bench_window, make_folder, settle, summary

EXPERIMENT = "label_issue_load"


LABEL_SIDE = 512  # the photos' and labels' side: a label must fit its photo to be checked


def synthetic_label(size: int = LABEL_SIDE, swapped: bool = False) -> np.ndarray:
    """(size, size) uint8 LaPa classes: hair, skin, brows, eyes, nose, lips, inner mouth of one
    upright face; the person's left/right when ``swapped``."""
    import cv2

    s = size / 512
    label = np.zeros((size, size), np.uint8)

    def ellipse(cx, cy, ax, ay, value):
        cv2.ellipse(label, (int(cx * s), int(cy * s)), (int(ax * s), int(ay * s)), 0, 0, 360, int(value), -1)

    ellipse(256, 230, 170, 200, 10)
    ellipse(256, 280, 130, 170, 1)
    left, right = (3, 2) if swapped else (2, 3)
    ellipse(200, 220, 35, 8, left)
    ellipse(312, 220, 35, 8, right)
    left, right = (5, 4) if swapped else (4, 5)
    ellipse(200, 250, 25, 12, left)
    ellipse(312, 250, 25, 12, right)
    ellipse(256, 310, 18, 35, 6)
    ellipse(256, 370, 45, 10, 7)
    ellipse(256, 382, 40, 5, 8)
    ellipse(256, 394, 45, 10, 9)
    return label


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    add_common(parser, EXPERIMENT, out=True, results="label_issue_load.json")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the pass is watched")
    parser.add_argument("--swapped-every", type=int, default=10, help="every Nth label is drawn swapped")
    parser.add_argument("--reopen", action="store_true", help="also time a second open (findings cached)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QTimer

    from bench.bench_canvas import app_without_models
    from faceparse_app import label_review
    from faceparse_app.label_issue_watch import LabelIssueWatch
    from faceparse_app.project import Project
    from faceparse_app.widgets.image_list import ImageList
    from trainer.data.imageio import write_label

    app = app_without_models()
    results: dict[str, object] = {"images": args.images, "swapped_every": args.swapped_every}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "project", args.images, side=LABEL_SIDE)  # labels fit
        good, bad = Path(tmp) / "good.png", Path(tmp) / "bad.png"
        write_label(good, synthetic_label())
        write_label(bad, synthetic_label(swapped=True))
        project = Project.open(folder)
        small = np.ones((LABEL_SIDE, LABEL_SIDE), np.uint8)
        for k, rec in enumerate(project.images()):
            project.save_label(rec, small, status="labeled")
            shutil.copyfile(bad if k % args.swapped_every == 0 else good, project.label_path(rec))
        t0 = time.perf_counter()
        jobs = label_review.jobs(project)
        results["jobs_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        t0 = time.perf_counter()
        for job in jobs[:50]:
            label_review.run(job)
        results["check_ms_per_label_alone"] = round((time.perf_counter() - t0) * 1000 / 50, 1)
        project.close()

        window = bench_window(app, Path(tmp))

        updates: list[float] = []
        real_update = ImageList.set_label_issue

        def timed_update(self, image_id, issue):
            t = time.perf_counter()
            real_update(self, image_id, issue)
            updates.append((time.perf_counter() - t) * 1000)

        ImageList.set_label_issue = timed_update  # type: ignore[method-assign]

        def gaps(seconds: float) -> list[float]:
            out: list[float] = []
            last = [time.perf_counter()]

            def tick() -> None:
                now = time.perf_counter()
                out.append((now - last[0]) * 1000 - 5)
                last[0] = now

            timer = QTimer()
            timer.setInterval(5)
            timer.timeout.connect(tick)
            timer.start()
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                app.processEvents()
                time.sleep(0.0005)
            timer.stop()
            return out

        idle = gaps(min(5.0, args.seconds))
        results["gui_gap_ms_idle"] = {**summary(idle), "max": round(max(idle), 1)}
        t0 = time.perf_counter()
        window.open_project(folder)
        settle(app)
        results["open_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        watch = window.session.findChild(LabelIssueWatch)
        start_left = watch._jobs.qsize()
        t0 = time.perf_counter()
        busy = gaps(args.seconds)
        results["gui_gap_ms_during_pass"] = {**summary(busy), "max": round(max(busy), 1)}
        done = start_left - watch._jobs.qsize()
        rate = done / (time.perf_counter() - t0)
        results["pass_labels_per_s"] = round(rate, 1)
        results["pass_minutes_whole_project"] = round(len(jobs) / max(rate, 1e-9) / 60, 1)
        results["list_update_ms"] = summary(updates) if updates else None
        results["list_update_max_ms"] = round(max(updates), 2) if updates else None
        results["flagged_so_far"] = len(watch.findings)
        # The end of a pass that flagged every label (a folder of the person's left/right
        # imported): each check's list update then carries every photo's summary.
        watch.stop()
        example = next(iter(watch.findings.values()), None)
        if example is not None:
            ids = [r.id for r in window.session.records()]
            watch.findings = {i: example for i in ids}
            last: list[float] = []
            for i in ids[:20]:
                t = time.perf_counter()
                watch._set(i, example)
                last.append((time.perf_counter() - t) * 1000)
            results["list_update_ms_all_flagged"] = summary(last)
        if args.reopen:
            results.update(reopen(app, window, folder))
        window.close()
        ImageList.set_label_issue = real_update  # type: ignore[method-assign]
    for key, value in results.items():
        print(f"{key:>28}: {value}")
    command = command_line("bench.label_issue_load", argv)
    payload = {"results": results, "date": utc_now(), "command": command, "machine": machine(),
               "qt_platform": os.environ.get("QT_QPA_PLATFORM"),
               "app": str(Path(sys.modules["faceparse_app"].__file__).parent)}  # fmt: skip
    if args.results:
        print(f"wrote {write_json(args.results, payload, command)}")


def reopen(app, window, folder: Path) -> dict[str, object]:
    """Close the project, leave the cache a finished pass writes, open it again and time it until
    every label's issue is known."""
    import hashlib

    from faceparse_app import label_issue_watch, label_review
    from faceparse_app.label_check_cache import LabelCheckCache, job_key
    from faceparse_app.label_issue_watch import LabelIssueWatch
    from faceparse_app.project import Project

    window.close_project()
    project = Project.open(folder, read_only=True)
    jobs = label_review.jobs(project)
    cache = LabelCheckCache(project.store_dir, writable=True)
    project.close()
    cache.load()
    by_bytes: dict[str, list] = {}  # every label is one of two files: each is checked once
    for job in jobs:
        digest = hashlib.sha1(job.label_path.read_bytes()).hexdigest()
        if digest not in by_bytes:
            by_bytes[digest] = label_review.run(job)
        cache.store(job, job_key(job), by_bytes[digest])
    cache.flush()
    checks = [0]
    real_run = label_issue_watch.label_review.run

    def counted(job):
        checks[0] += 1
        return real_run(job)

    label_issue_watch.label_review.run = counted
    try:
        t0 = time.perf_counter()
        window.open_project(folder)
        watch = window.session.findChild(LabelIssueWatch)
        stalls, last = [], time.perf_counter()
        while not (watch.idle() and len(watch._checked) >= len(jobs)):
            app.processEvents()  # the GUI thread: how long one round of its events takes
            now = time.perf_counter()
            stalls.append((now - last) * 1000)
            last = now
            time.sleep(0.001)
        elapsed = (time.perf_counter() - t0) * 1000
    finally:
        label_issue_watch.label_review.run = real_run
    return {"reopen_labels": len(jobs), "reopen_ms_all_known": round(elapsed, 1),
            "reopen_checks": checks[0], "reopen_flagged": len(watch.findings),
            "reopen_gui_round_max_ms": round(max(stalls[1:], default=0.0), 1)}  # fmt: skip


if __name__ == "__main__":
    main()
