"""Hair past the zoomed-out crop, on the in-the-wild photos: how many faces take the third
(hair) parse, how much hair it adds, and what it costs per photo (issue 29's real photos); with
``--rule lone``, what the zoomed-out parse no longer labels where a region joins nothing of its
class in the face's own parse (``trainer.face_parses.fill_mask``), by class.

Each photo of ``../shared/data/faces-unlabeled`` is parsed by the starter parser twice, with the
faces found once: with the rule (the product) and without it (``hair-parse``: ``HAIR_AT_EDGE``
above 1, as before the third parse existed; ``lone``: every pixel of the zoomed-out parse kept,
as before 2026-12-07's evening), alternating, one thread; CPU seconds of the parse (faces
given, no finder, no decode). No labels exist past the crops, so what the change is worth is
judged on the saved overlays (``--overlays DIR``: without | with), and the labeled benchmarks
(``bench.composites``, HELEN, the validation faces) check it costs nothing where the truth is
known.

    OMP_NUM_THREADS=1 python -m bench.hair_past_crop [--rule lone] [--overlays /tmp/hair]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench import harness
from trainer.data.imageio import read_image

EXPERIMENT = "hair_past_crop"
PALETTE = np.array(
    [[0, 0, 0], [0, 128, 255], [255, 255, 0], [255, 128, 0], [0, 255, 0], [0, 255, 255],
     [160, 60, 255], [255, 0, 0], [255, 255, 255], [255, 0, 128], [255, 0, 255]], np.uint8,
)  # fmt: skip


def keep_all_fill(fill, own, others=()) -> np.ndarray:
    """A fill mask that keeps every pixel (the zoomed-out parse as before ``fill_mask``)."""
    return np.ones(tuple(fill.shape[-2:]), bool)


def _parse(predictor, image, faces, rule_on: bool, rule: str = "hair-parse"):
    """(prediction, CPU seconds, faces given the hair parse)."""
    import trainer.face_parses as fp
    import trainer.predict as tp

    keep, plan, masks = fp.HAIR_AT_EDGE, tp.parse_faces, fp.fill_mask
    if not rule_on and rule == "hair-parse":
        fp.HAIR_AT_EDGE = 1.01  # a share is at most 1: never
    if not rule_on and rule == "lone":
        fp.fill_mask = keep_all_fill
    hair_parses: list[int] = []

    def counted(*args, **kwargs):
        parses = plan(*args, **kwargs)
        hair_parses.append(len(parses.hair[1]))
        return parses

    tp.parse_faces = counted
    try:
        start = time.process_time()
        pred = predictor.predict_batch([image], faces=[faces])[0]
        return pred, time.process_time() - start, sum(hair_parses)
    finally:
        fp.HAIR_AT_EDGE, tp.parse_faces, fp.fill_mask = keep, plan, masks


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, experiment=EXPERIMENT, results="hair_past_crop.json")
    parser.add_argument("--photos", default=str(harness.SHARED / "faces-unlabeled"))
    parser.add_argument("--overlays", default=None, help="write before|after overlays here")
    parser.add_argument("--rule", choices=("hair-parse", "lone"), default="hair-parse",
                        help="hair-parse: the third, hair-only parse at 2.5x; lone: the zoomed-out "
                        "parse's regions that join nothing of their class in the own parse dropped")  # fmt: skip
    args = parser.parse_args(argv)
    import cv2
    import torch

    from trainer.predict import Predictor
    from trainer.starter import STARTER_PARSER

    torch.set_num_threads(1)
    photos = sorted(harness.require(args.photos, "the unlabeled photos").iterdir())
    predictor = Predictor.from_checkpoint(STARTER_PARSER, device="cpu")
    hair = predictor.class_names.index("hair")
    rows = []
    for path in photos:
        image = read_image(path)
        faces = predictor.find_faces(image)
        if not faces:
            continue
        before, t_before, _ = _parse(predictor, image, faces, False, args.rule)
        after, t_after, hair_parses = _parse(predictor, image, faces, True, args.rule)
        added = int(((after.label == hair) & (before.label != hair)).sum())
        removed = int(((after.label != hair) & (before.label == hair)).sum())
        changed_other = int(((after.label != before.label) & (after.label != hair) & (before.label != hair)).sum())
        rows.append({"photo": path.name, "faces": len(faces), "hair_parses": hair_parses,
                     "hair_before": int((before.label == hair).sum()),
                     "hair_added": added, "hair_removed": removed, "other_changed": changed_other,
                     "changed_from": {predictor.class_names[c]: int(n) for c, n in enumerate(
                         np.bincount(before.label[after.label != before.label], minlength=len(
                             predictor.class_names))) if n},
                     "s_before": round(t_before, 3), "s_after": round(t_after, 3)})  # fmt: skip
        if args.overlays and (after.label != before.label).any():
            out = Path(args.overlays)
            out.mkdir(parents=True, exist_ok=True)
            pair = [(0.5 * image + 0.5 * PALETTE[p.label]).astype(np.uint8) for p in (before, after)]
            cv2.imwrite(str(out / f"{path.stem}.jpg"), cv2.cvtColor(np.hstack(pair), cv2.COLOR_RGB2BGR))
        print(rows[-1], flush=True)
    with_hair = [r for r in rows if r["hair_added"]]
    summary = {
        "photos_with_faces": len(rows),
        "faces": sum(r["faces"] for r in rows),
        "faces_given_the_hair_parse": sum(r["hair_parses"] for r in rows),
        "photos_with_hair_added": len(with_hair),
        "hair_added_share_median": round(statistics.median(
            r["hair_added"] / max(1, r["hair_before"]) for r in with_hair), 3) if with_hair else 0.0,
        "photos_with_hair_removed": sum(1 for r in rows if r["hair_removed"]),
        "hair_removed": sum(r["hair_removed"] for r in rows),
        "other_classes_changed": sum(r["other_changed"] for r in rows),
        "changed_from": {c: sum(r["changed_from"].get(c, 0) for r in rows)
                         for c in predictor.class_names if any(c in r["changed_from"] for r in rows)},
        "cpu_s_per_photo_before": round(statistics.mean(r["s_before"] for r in rows), 3),
        "cpu_s_per_photo_after": round(statistics.mean(r["s_after"] for r in rows), 3),
    }  # fmt: skip
    print(summary)
    harness.write_json(args.results, {"summary": summary, "photos": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
