"""Soak: kill -9 the real main window at random moments while it paints and autosaves.

Each round starts FaceParse Studio (offscreen) on the same project folder, paints strokes with
the real canvas through Qt's own mouse events (a small disc of a new class per stroke, one grid
cell each, switching image every few strokes), and is killed with SIGKILL after a random delay.
The parent then opens the project as the next launch would and checks, for every stroke the
round painted, whether the label file on disk has it.

Recorded per round: strokes painted, strokes lost, the age of the oldest lost stroke at the kill
(target: never more than the autosave interval plus one stroke), and corruption (target: none):
a store that does not open, a label file that does not read back at its image's size, a
leftover temp file, a lock that outlived its process.

    python -m bench.soak_kill --rounds 100 --autosave-ms 1000
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from bench import harness

EXPERIMENT = "soak_kill"

DRIVER = textwrap.dedent(
    """
    import json, os, random, sys, time
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QPoint, Qt, QTimer
    from PySide6.QtTest import QTest
    from faceparse_app.app import Settings, create_application
    from faceparse_app.main_window import MainWindow

    folder, settings_path, journal_path = sys.argv[1:4]
    autosave_ms, seed, cell = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    rng = random.Random(seed)
    app = create_application([])
    settings = Settings(settings_path)
    settings.set_autosave_ms(autosave_ms)
    window = MainWindow(settings)
    window.show()
    QTest.qWaitForWindowExposed(window)
    if not window.open_project(folder):
        print("error", window.message_bar.message, flush=True)
        sys.exit(3)
    session, canvas = window.session, window.canvas
    journal = open(journal_path, "a", encoding="utf-8")
    state = {"n": 0}

    def at(x, y):
        return canvas.image_to_widget(x + 0.5, y + 0.5).toPoint()

    def stroke():
        doc = session.document
        if doc is None:
            session.step(1)
            return
        h, w = doc.label.shape
        cols = w // cell
        k = rng.randrange((h // cell) * cols)
        cx, cy = (k % cols) * cell + cell // 2, (k // cols) * cell + cell // 2
        old = int(doc.label[cy, cx])
        cls = 1 + old % 10  # never the value already there
        window.state.set_class(cls)
        window.state.set_radius(cell // 4)
        left = Qt.MouseButton.LeftButton
        QTest.mousePress(canvas, left, Qt.KeyboardModifier.NoModifier, at(cx - 1, cy))
        QTest.mouseMove(canvas, at(cx + 1, cy))
        QTest.mouseRelease(canvas, left, Qt.KeyboardModifier.NoModifier, at(cx + 1, cy))
        if int(doc.label[cy, cx]) != cls:
            return  # e.g. a protected class: nothing painted, nothing to expect
        record = {"t": time.time(), "image": session.current.relpath, "x": cx, "y": cy, "cls": cls}
        journal.write(json.dumps(record) + "\\n")
        journal.flush()
        state["n"] += 1
        if state["n"] % 8 == 0:
            session.step(1)  # the switch saves too

    timer = QTimer()
    timer.timeout.connect(stroke)
    timer.start(120)
    print("ready", flush=True)
    sys.exit(app.exec())
    """
)


def _make_project(folder: Path, n: int, size: int) -> None:
    from tests.conftest import synthetic_face
    from trainer.data.imageio import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _ = synthetic_face(size, seed=i)
        write_image(folder / f"face{i:02d}.png", image)


def _check(folder: Path, strokes: list[dict], killed_at: float) -> dict:
    """Open the project as the next launch would and score the round's strokes."""
    from faceparse_app.project import Project, ProjectError
    from trainer.errors import LabelMapError

    out: dict = {"painted": len(strokes), "lost": 0, "oldest_lost_s": 0.0, "corrupt": []}
    try:
        project = Project.open(folder)
    except ProjectError as exc:
        out["corrupt"].append(f"open: {exc}")
        return out
    try:
        labels: dict[str, np.ndarray | None] = {}
        for rec in project.images():
            try:
                labels[rec.relpath] = project.load_label(rec)
            except LabelMapError as exc:
                out["corrupt"].append(f"label: {exc}")
        leftovers = [p.name for p in project.labels_dir.rglob("*.tmp")]
        if leftovers:
            out["corrupt"].append(f"temp files left: {leftovers}")
        if project.recovery:
            out["recovery"] = project.recovery
    finally:
        project.close()
    # The last stroke at a cell is the one that counts (a later one may repaint it).
    last: dict[tuple[str, int, int], dict] = {}
    for s in strokes:
        last[(s["image"], s["x"], s["y"])] = s
    lost = [
        s
        for s in last.values()
        if labels.get(s["image"]) is None or int(labels[s["image"]][s["y"], s["x"]]) != s["cls"]
    ]
    out["lost"] = len(lost)
    if lost:
        out["oldest_lost_s"] = round(killed_at - min(s["t"] for s in lost), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(
        __doc__, experiment=EXPERIMENT, out=True, results="soak_kill.json", seed=0
    )
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--autosave-ms", type=int, default=1000)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--min-s", type=float, default=0.3, help="earliest kill after start")
    parser.add_argument("--max-s", type=float, default=5.0, help="latest kill after start")
    args = parser.parse_args(argv)
    work = Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "project"
    _make_project(folder, args.images, args.size)
    script = work / "driver.py"
    script.write_text(DRIVER)
    rng = random.Random(args.seed)
    env = harness.child_env(QT_QPA_PLATFORM="offscreen")
    rounds = []
    for r in range(args.rounds):
        journal = work / f"journal-{r:03d}.jsonl"
        child = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(folder),
                str(work / "settings.ini"),
                str(journal),
                str(args.autosave_ms),
                str(args.seed * 1000 + r),
                "32",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = child.stdout.readline().strip()
        if line != "ready":
            child.kill()
            _out, err = child.communicate()
            rounds.append({"round": r, "corrupt": [f"did not start: {line} {err[-500:]}"]})
            print(json.dumps(rounds[-1]), flush=True)
            continue
        time.sleep(rng.uniform(args.min_s, args.max_s))
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        strokes = (
            [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
            if journal.exists()
            else []
        )
        result = {"round": r, **_check(folder, strokes, killed_at)}
        rounds.append(result)
        print(json.dumps(result), flush=True)
    painted = sum(r.get("painted", 0) for r in rounds)
    lost = sum(r.get("lost", 0) for r in rounds)
    worst = max((r.get("oldest_lost_s", 0.0) for r in rounds), default=0.0)
    corrupt = [c for r in rounds for c in r.get("corrupt", [])]
    limit = args.autosave_ms / 1000 + 0.5  # the interval plus one stroke and the save itself
    summary = {
        "rounds": len(rounds),
        "autosave_ms": args.autosave_ms,
        "strokes_painted": painted,
        "strokes_lost": lost,
        "oldest_lost_s": worst,
        "target_oldest_lost_s": limit,
        "rounds_over_target": sum(1 for r in rounds if r.get("oldest_lost_s", 0.0) > limit),
        "corruptions": corrupt,
    }
    print(json.dumps(summary, indent=1))
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        harness.write_json(args.results, {"summary": summary, "rounds": rounds})
    return 0 if not corrupt and summary["rounds_over_target"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
