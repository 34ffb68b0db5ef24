"""A simulated annotator: what a face costs to label, from an empty canvas or from a pre-label,
with the app's plain tools or with its assisted ones (issue 32 §1).

It turns a starting label map into the truth with the app's own Qt-free editing code
(:class:`faceparse_app.document.LabelDocument`, the brush, fill and polygon maths the canvas
uses, and ``faceparse_app.assist``), with a fixed policy:

1. take the largest wrong region (8-connected pixels whose truth is one class; a region no tool
   fixes 30% of, net, is passed over);
2. of the tools allowed, price each one's edit for it (``bench.effort_policy``: fill at its inner
   point; a polygon around it at 1, 2 or 4 px tolerance or along its own pixels; brush strokes along its skeleton with the
   smallest of 1, 2, 3, 5, 8, 12 px radius that covers its width; relabel clicks; anchors of the
   edge-snapping boundary tool; a zoom re-predict box; a GrabCut box), cheapest first, including
   the keys to switch tool, class and brush size, and make the one that fixes the most pixels
   (net: pixels it breaks count against it) per second;
3. until the face's mIoU (over the classes in the truth or the label) reaches 95%, or CAP actions.

Seconds come from the Keystroke-Level Model's operator times (Card, Moran & Newell 1980: K 0.28 s,
P 1.1 s, B 0.1 s, M 1.35 s; H 0.4 s not charged), as ``bench.effort_policy`` prices them.

Per face it records actions, seconds, whether 95% was reached, the tools used and the curve of
mIoU against actions and seconds (the NoC@90-style measure). Faces: the 6 HELEN faces (never
trained on by the starter parser) and the study's validation faces (the starter parser trained
on all 700 dev faces, these included: its pre-labels there are better than on new faces).

    .venv/bin/python -m bench.annotator_sim                       # every arm, HELEN + 10 val faces
    .venv/bin/python -m bench.annotator_sim --arms pre-basic,pre-all --faces helen
    .venv/bin/python -m bench.annotator_sim --probe               # 1 face, 2 arms, a small cap
    .venv/bin/python -m bench.annotator_sim --summary
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness
from bench.effort_policy import (
    ASSISTED,
    BASIC,
    M,
    Move,
    brush_moves,
    fill_move,
    polygon_moves,
    switch_seconds,
    wrong_regions,
)

EXPERIMENT = "annotator_sim"
TARGET = 0.95
CAP = 1500  # actions
MIN_SHARE = 0.3  # a move must fix this share of its region's pixels (net), or the region is passed
NUM_CLASSES = 11
ARMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "empty-basic": ("empty", BASIC),
    "pre-basic": ("pre", BASIC),
    "pre-all": ("pre", BASIC + ASSISTED),
    **{f"pre-basic+{t}": ("pre", (*BASIC, t)) for t in ASSISTED},
}
# The same arms with regions taken in order of what fixing them adds to the mIoU (not the
# issue's policy; run to see what the order costs): "<arm>@impact".
ORDERS = ("largest", "impact")


def miou(label: np.ndarray, truth: np.ndarray, n: int = NUM_CLASSES) -> float:
    """Mean IoU over the classes present in the truth or the label."""
    cm = np.bincount(truth.ravel().astype(np.int64) * n + label.ravel(), minlength=n * n).reshape(n, n)
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean())


class Face:
    """One face to label: image, truth, and (for pre-label arms) the parser's view of it."""

    def __init__(self, name: str, image: np.ndarray, truth: np.ndarray, predictor: Any = None) -> None:
        from faceparse_app.assist import ClassProbabilities, EdgeSnapper

        self.name, self.image, self.truth = name, image, truth
        self.predictor = predictor
        self.prelabel = predictor(image).label if predictor is not None else None
        self.probs = ClassProbabilities.from_predictor(predictor, image) if predictor is not None else None
        self.snapper = EdgeSnapper(image)
        self.zoom_cache: dict[Any, np.ndarray] = {}


def moves_for(region: Any, doc: Any, face: Face, tools: Sequence[str]) -> list[Move]:
    from bench.effort_assisted import grabcut_move, relabel_move, scissors_move, zoom_move

    moves: list[Move] = []
    if "fill" in tools:
        moves.append(fill_move(region))
    if "polygon" in tools:
        moves += polygon_moves(region, doc.label)
    if "brush" in tools:
        moves += brush_moves(region, doc.label)
    if "relabel" in tools and face.probs is not None:
        m = relabel_move(region, doc, face.probs)
        moves += [m] if m is not None else []
    if "scissors" in tools:
        m = scissors_move(region, doc.label, face.snapper)
        moves += [m] if m is not None else []
    if "zoom" in tools and face.predictor is not None:
        moves.append(zoom_move(region, face.image, face.predictor, face.zoom_cache))
    if "grabcut" in tools:
        moves.append(grabcut_move(region, face.image))
    return moves


def impact_order(regions: list[Any], label: np.ndarray, truth: np.ndarray) -> list[Any]:
    """Regions by the mIoU they would add if fixed: area over the union of its true class and
    over that of the class it now has (a sliver of skin counts little, of an eye much)."""
    n = NUM_CLASSES
    cm = np.bincount(truth.ravel().astype(np.int64) * n + label.ravel(), minlength=n * n).reshape(n, n)
    union = np.maximum(1, cm.sum(0) + cm.sum(1) - np.diag(cm))

    def impact(r: Any) -> float:
        x0, y0, x1, y1 = r.box
        now = np.bincount(label[y0:y1, x0:x1][r.mask], minlength=n).argmax()
        return r.area / union[r.cls] + r.area / union[now]

    return sorted(regions, key=lambda r: -impact(r))


def correct(
    face: Face, start: np.ndarray, tools: Sequence[str], cap: int = CAP, order: str = "largest"
) -> dict[str, Any]:
    """Correct ``start`` to the face's truth with ``tools``; the effort and its curve.

    Args:
        order: "largest" (the issue's policy: the largest wrong region first) or "impact"
            (the region whose fix adds most to the mIoU first).
    """
    from faceparse_app.document import LabelDocument

    doc = LabelDocument(start.copy(), num_classes=NUM_CLASSES)
    truth = face.truth
    tool, cls, radius = None, None, 3
    actions, seconds = 0, 0.0
    score = miou(doc.label, truth)
    curve = [[0, 0.0, round(score, 4)]]
    used: dict[str, int] = {}
    passed: set[Any] = set()
    while score < TARGET and actions < cap:
        regions = wrong_regions(doc.label, truth, NUM_CLASSES)
        if order == "impact":
            regions = impact_order(regions, doc.label, truth)
        region = next((r for r in regions if r.key not in passed), None)
        if region is None:
            break
        best: tuple[float, Move, int, float] | None = None
        correct_now = int(np.count_nonzero(doc.label == truth))
        priced = sorted(
            ((m.seconds + switch_seconds(m, tool, cls, radius)[1], m) for m in moves_for(region, doc, face, tools)),
            key=lambda t: t[0],
        )
        for cost, move in priced:
            mark = len(doc.history)
            move.apply(doc)
            gain = int(np.count_nonzero(doc.label == truth)) - correct_now
            while len(doc.history) > mark:
                doc.undo()
            # Of the moves that fix enough of the region, the one fixing most pixels per second
            # (on a tie the cheaper: priced is cheapest first).
            rate = gain / cost
            if gain > 0 and gain >= MIN_SHARE * region.area and (best is None or rate > best[3]):
                best = (cost, move, gain, rate)
        if best is None:
            passed.add(region.key)  # no tool fixes enough of it to be worth a move
            continue
        cost, move, _, _ = best
        keys, _ = switch_seconds(move, tool, cls, radius)
        move.apply(doc)
        actions += move.actions + keys
        seconds += M + cost
        used[move.tool] = used.get(move.tool, 0) + 1
        tool = move.tool
        if move.tool not in ("eraser", "zoom", "relabel"):
            cls = move.cls
        radius = move.radius if move.radius is not None else radius
        score = miou(doc.label, truth)
        curve.append([actions, round(seconds, 1), round(score, 4)])
    return {
        "actions": actions,
        "seconds": round(seconds, 1),
        "reached": score >= TARGET,
        "start_miou": curve[0][2],
        "final_miou": round(score, 4),
        "tools": used,
        "curve": curve,
    }


def load_faces(which: str, data: Path, limit: int, predictor: Any) -> list[Face]:
    """HELEN's 6 test faces and/or the first ``limit`` of the study's validation faces."""
    from trainer.data.lapa import LapaDataset

    sets = []
    if which in ("helen", "both"):
        sets.append(("helen", LapaDataset(harness.require(harness.SHARED / "lapa-format-helen", "HELEN"), split="test")))
    if which in ("val", "both"):
        sets.append(("val", LapaDataset(harness.require(data, "the study's data stage"), split="val")))
    faces = []
    for tag, ds in sets:
        for i in range(min(limit, len(ds)) if tag == "val" else len(ds)):
            s = ds[i]
            faces.append(Face(f"{tag}/{s.name}", s.image, s.label, predictor))
    return faces


def run_arms(faces: Sequence[Face], arms: Sequence[str], results: Path, command: str, run_tag: str = "",
             cap: int = CAP, done: set[tuple[str, str]] | None = None) -> None:  # fmt: skip
    """Correct every face in every arm, appending one record per (face, arm) to ``results``."""
    done = done or set()
    experiment = harness.experiment_of(results, EXPERIMENT)
    for face in faces:
        for arm in arms:
            run = f"{run_tag}{arm}"
            if (run, face.name) in done:
                continue
            base, _, order = arm.partition("@")
            start_kind, tools = ARMS[base]
            start = np.zeros_like(face.truth) if start_kind == "empty" else face.prelabel
            assert start is not None
            t0 = time.perf_counter()
            out = correct(face, start, tools, cap, order or "largest")
            out.update(face=face.name, arm=arm, compute_seconds=round(time.perf_counter() - t0, 1))
            harness.append_jsonl(results, harness.jsonl_record(experiment, run, out, command))
            harness.log.info("%s %s: %d actions, %.0f s, mIoU %.3f -> %.3f%s", face.name, run, out["actions"],
                             out["seconds"], out["start_miou"], out["final_miou"], "" if out["reached"] else " (cap)")  # fmt: skip


def seconds_to(curve: Sequence[Sequence[float]], level: float) -> float | None:
    """Seconds at the first point of a curve ([actions, seconds, mIoU], ...) at ``level``."""
    return next((float(p[1]) for p in curve if p[2] >= level), None)


def summarize(results: Path) -> dict[str, dict[str, Any]]:
    """Per run and face set: faces, how many reached 95%, mean and median seconds and actions
    (a face that never got there counts what it spent), and median seconds to 90% mIoU."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in harness.read_jsonl(results):
        rows[(r["run"], r["face"])] = r  # the last record per face
    table: dict[str, dict[str, Any]] = {}
    for run in sorted({k[0] for k in rows}):
        rs = [r for (name, _), r in rows.items() if name == run]
        for subset in ("helen", "val"):
            part = [r for r in rs if r["face"].startswith(subset)]
            if not part:
                continue
            secs = [r["seconds"] for r in part]
            to90 = [seconds_to(r["curve"], 0.90) for r in part]
            table[f"{run} [{subset}]"] = {
                "faces": len(part),
                "reached": sum(bool(r["reached"]) for r in part),
                "mean_seconds": round(float(np.mean(secs)), 1),
                "median_seconds": round(float(np.median(secs)), 1),
                "mean_actions": round(float(np.mean([r["actions"] for r in part])), 1),
                "median_seconds_to_90": round(float(np.median([t if t is not None else np.inf for t in to90])), 1),
                "start_miou": round(float(np.mean([r["start_miou"] for r in part])), 4),
            }
    return table


def effort_stage(args: Any, out: Path, val: Any, test: Sequence[str], checkpoints: dict[str, Path | None]) -> None:
    """bench.effort_loop's second stage: each parser pre-labels the test faces (neck as skin)
    and the annotator corrects them in ``args.arms``."""
    from trainer.predict import Predictor
    from trainer.starter import STARTER_PARSER

    results = Path(args.results)
    command = harness.command_line("bench.effort_loop", sys.argv[1:])
    harness.record_output(results, command, note="one record per face, parser and arm")
    done = {(r["run"], r["face"]) for r in harness.read_jsonl(results)}
    subset = val.select(list(test))
    for name, ckpt in checkpoints.items():
        predictor = Predictor.from_checkpoint(ckpt or STARTER_PARSER, device="cpu", framing="whole")
        faces = [Face(f"val/{s.name}", s.image, s.label, predictor) for s in subset]
        run_arms(faces, args.arms.split(","), results, command, run_tag=f"{name}:",
                 cap=40 if args.quick else CAP, done=done)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, experiment=EXPERIMENT, results="annotator_sim.jsonl")
    parser.add_argument("--faces", choices=("helen", "val", "both"), default="both")
    parser.add_argument("--val-faces", type=int, default=10, help="validation faces (the first N)")
    parser.add_argument("--arms", default=",".join(ARMS),
                        help=f"comma-separated, of {', '.join(ARMS)}; '<arm>@impact' for the mIoU-impact order")  # fmt: skip
    parser.add_argument("--max-faces", type=int, default=None, help="only the first N faces of the set")
    parser.add_argument("--cap", type=int, default=CAP, help="actions before a face is given up")
    parser.add_argument("--data", default=str(harness.OUT / "study" / "data"), help="the study's data stage")
    parser.add_argument("--probe", action="store_true", help="one HELEN face, two arms, cap 30: checks the pipeline")
    parser.add_argument("--summary", action="store_true", help="print the table from --results")
    args = parser.parse_args(argv)
    harness.setup_logging()
    results = Path(args.results)
    if args.summary:
        for run, row in summarize(results).items():
            print(f"{run:>34}: {row}")
        return 0
    from trainer.predict import Predictor
    from trainer.starter import STARTER_PARSER

    predictor = Predictor.from_checkpoint(STARTER_PARSER, device="cpu", framing="whole")
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a.partition("@")[0] not in ARMS or a.partition("@")[2] not in ("", *ORDERS)]
    if unknown:
        raise SystemExit(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    if args.probe:
        faces = load_faces("helen", Path(args.data), 0, predictor)[:1]
        arms, args.cap = ["pre-basic", "pre-all"], 30
    else:
        faces = load_faces(args.faces, Path(args.data), args.val_faces, predictor)[: args.max_faces]
    command = harness.command_line(__spec__.name if __spec__ else None, argv)
    harness.record_output(results, command, note="one record per face and arm (the last one counts)")
    done = {(r["run"], r["face"]) for r in harness.read_jsonl(results)} if not args.probe else set()
    run_arms(faces, arms, results, command, cap=args.cap, done=done)
    for run, row in summarize(results).items():
        print(f"{run:>34}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
