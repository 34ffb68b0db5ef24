"""Face finding on every photo of ``faces-unlabeled``, against face boxes drawn by eye (issue 29).

``bench/data/face_boxes.json`` holds the true faces of all 193 photos (aligned portraits,
groups, profiles, small faces, occluders, non-faces), boxed by eye: left/right at the outer
edges of the cheeks, top at mid-forehead, bottom at the chin; tags mark small (< 48 px tall),
tiny (< 20 px: neither a miss nor a false positive), profile, occluded, rotated, cut and drawing
faces. A found face matches a true one when its box centre lies inside the true box and the
square roots of their areas are within a factor of two; each found face matches at most one
true face (greedy by IoU).

Recorded per finder: recall (overall and per tag), false positives, and milliseconds per photo
(median and max, photos of up to 4600 px; wall and CPU time); the CPU's ISA and load with every
timing.

    python -m bench.face_finding                  # the product's finder
    python -m bench.face_finding --finder NAME    # another registered one (trainer.face_detect)
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness
from trainer.data.imageio import read_image
from trainer.faces import Face

EXPERIMENT = "face_finding"
BOXES = harness.ROOT / "bench" / "data" / "face_boxes.json"
PHOTOS = harness.SHARED / "faces-unlabeled"


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(truth: list[dict[str, Any]], found: Sequence[Face]) -> tuple[list[bool], int, int]:
    """Which true faces were found, how many found faces are false, how many hit a tiny one.

    Returns:
        (found flag per true face, false positives, found faces on "tiny" faces).
    """
    pairs = []
    for ti, t in enumerate(truth):
        tb = t["box"]
        for fi, f in enumerate(found):
            cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            inside = tb[0] <= cx <= tb[2] and tb[1] <= cy <= tb[3]
            ta = (tb[2] - tb[0]) * (tb[3] - tb[1])
            fa = (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])
            ratio = np.sqrt(fa / ta) if ta > 0 else 0.0
            if inside and 0.5 <= ratio <= 2.0:
                pairs.append((_iou(tb, f.box), ti, fi))
    hit = [False] * len(truth)
    used: set[int] = set()
    for _, ti, fi in sorted(pairs, reverse=True):
        if not hit[ti] and fi not in used:
            hit[ti] = True
            used.add(fi)
    tiny_hits = sum(1 for ti, t in enumerate(truth) if hit[ti] and "tiny" in t.get("tags", []))
    false = len(found) - len(used)
    return hit, false, tiny_hits


def score(finder: Any, boxes: dict[str, Any], photos: Path, limit: int | None = None) -> dict[str, Any]:
    """Recall, false positives and time of ``finder`` over the photos in ``boxes``."""
    per_tag: dict[str, list[int]] = {}
    total = hits = false = clear_total = clear_hits = 0
    times, cpu, missed, false_at = [], [], [], []
    names = sorted(boxes)[:limit]
    for name in names:
        image = read_image(photos / name)
        t0, c0 = time.perf_counter(), time.process_time()
        found = finder(image)
        times.append(1000 * (time.perf_counter() - t0))
        cpu.append(1000 * (time.process_time() - c0))
        truth = boxes[name]["faces"]
        hit, n_false, _ = match(truth, found)
        false += n_false
        if n_false:
            false_at.append(name)
        for t, h in zip(truth, hit, strict=True):
            tags = t.get("tags", [])
            if "tiny" in tags:
                continue  # don't care
            total += 1
            hits += h
            if not {"blurred", "drawing"} & set(tags):
                clear_total += 1
                clear_hits += h
            if not h:
                missed.append(name)
            for tag in tags or ["plain"]:
                slot = per_tag.setdefault(tag, [0, 0])
                slot[0] += h
                slot[1] += 1
    return {
        "photos": len(names),
        "faces": total,
        "found": hits,
        "recall": round(hits / max(1, total), 4),
        # Without the defocused background faces and the drawing (don't-care in the finder
        # study that chose the detector): the faces an annotator labels.
        "recall_clear_faces": round(clear_hits / max(1, clear_total), 4),
        "clear_faces": clear_total,
        "false_positives": false,
        "recall_by_tag": {k: {"found": a, "of": b} for k, (a, b) in sorted(per_tag.items())},
        "ms_median": round(statistics.median(times), 1),
        "ms_max": round(max(times), 1),
        # CPU milliseconds (all threads): with --threads 1, the time on an idle core whatever
        # else the machine runs.
        "cpu_ms_median": round(statistics.median(cpu), 1),
        "cpu_ms_max": round(max(cpu), 1),
        "missed_in": sorted(set(missed)),
        "false_positives_in": false_at,
    }


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(
        __doc__, experiment=EXPERIMENT, results="", threads=True, quick="20 photos"
    )
    parser.add_argument("--finder", default=None, help="a registered finder (default: the product's)")
    args = parser.parse_args(argv)
    harness.setup_logging()
    harness.set_threads(args.threads)
    from trainer.face_detect import DEFAULT_FINDER, get_finder

    name = args.finder or DEFAULT_FINDER
    finder = get_finder(name)
    boxes = json.loads(harness.require(BOXES, "the hand-drawn face boxes").read_text())["images"]
    result = score(finder, boxes, harness.require(PHOTOS, "the unlabeled photos"),
                   limit=20 if args.quick else None)  # fmt: skip
    result = {"finder": name, **result}
    print(json.dumps(result, indent=1))
    target = Path(args.results) if args.results else harness.results_dir(EXPERIMENT) / f"{name}.json"
    if not args.quick or args.results:
        target.parent.mkdir(parents=True, exist_ok=True)
        harness.write_json(target, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
