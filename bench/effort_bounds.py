"""What a better pre-label could save at best: the simulated effort from oracle-repaired starts
(issue 32: why the targets are missed).

The simulated annotator (``bench.annotator_sim``, the issue's policy, plain tools) corrects the
starter parser's pre-label and the same pre-label with part of its errors repaired from the
truth, as a perfect model would have them:

- ``--faces helen`` (the 6 HELEN faces, the first target): ``slivers-only`` repairs every wrong
  region of ``--sliver`` px or more (what is left: the slivers along part boundaries),
  ``big-only`` repairs the smaller ones (what is left: the large blobs); beside them the
  pre-label itself and an empty canvas. If ``slivers-only`` alone costs more than a fifth of an
  empty canvas, no model that fixes the blobs and keeps today's boundaries meets the target.
- ``--faces neck`` (``bench.effort_loop``'s 6 test faces, neck labeled skin: the third target):
  ``neck-learned`` repairs the neck pixels (the convention a fine-tune learns), the rest as the
  starter left it. What it saves against the starter's pre-label bounds what fine-tuning on
  that convention can save, if it learns nothing else.

- ``--faces superpixels`` (HELEN): the ceiling of any tool that paints whole superpixels (a
  superpixel brush or refinement, issue 32 §2): every superpixel given its majority true class,
  the mIoU that reaches, for SLIC and Felzenszwalb at several sizes (scikit-image). Below 95%,
  such a tool cannot finish a face alone.

Per face and start: seconds, actions, start mIoU, and (for the pre-label) how many wrong regions
and wrong pixels are under ``--sliver`` px, by true class.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.effort_bounds --faces helen
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.effort_bounds --faces neck
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.effort_bounds --faces superpixels
    .venv/bin/python -m bench.effort_bounds --summary
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness
from bench.annotator_sim import NUM_CLASSES, Face, correct, load_faces, miou
from bench.effort_policy import BASIC, wrong_regions

EXPERIMENT = "effort_bounds"
SLIVER = 50  # px: the research log's split of the starter's errors (123-166 of 131-176 regions)


def repaired(start: np.ndarray, truth: np.ndarray, keep: Any) -> np.ndarray:
    """``start`` with every wrong region for which ``keep(region)`` is False set to the truth."""
    out = start.copy()
    for r in wrong_regions(start, truth, NUM_CLASSES):
        if not keep(r):
            x0, y0, x1, y1 = r.box
            out[y0:y1, x0:x1][r.mask] = r.cls
    return out


def helen_starts(face: Face, sliver: int) -> Iterator[tuple[str, np.ndarray]]:
    pre = face.prelabel
    assert pre is not None
    yield "pre", pre
    yield "slivers-only", repaired(pre, face.truth, lambda r: r.area < sliver)
    yield "big-only", repaired(pre, face.truth, lambda r: r.area >= sliver)
    yield "empty", np.zeros_like(pre)


def neck_starts(face: Face, neck: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    pre = face.prelabel
    assert pre is not None
    yield "pre", pre
    learned = pre.copy()
    learned[neck] = face.truth[neck]
    yield "neck-learned", learned


def error_census(start: np.ndarray, truth: np.ndarray, sliver: int) -> dict[str, Any]:
    regions = wrong_regions(start, truth, NUM_CLASSES)
    small = [r for r in regions if r.area < sliver]
    by_class = np.zeros(NUM_CLASSES, np.int64)
    for r in small:
        by_class[r.cls] += r.area
    return {
        "regions": len(regions),
        "sliver_regions": len(small),
        "sliver_px": int(by_class.sum()),
        "big_px": int(sum(r.area for r in regions if r.area >= sliver)),
        "sliver_px_by_true_class": by_class.tolist(),
    }


SUPERPIXELS = (
    ("slic", 2000),
    ("slic", 8000),
    ("slic", 30000),
    ("felzenszwalb", 50),
    ("felzenszwalb", 10),
)


def superpixel_ceiling(
    image: np.ndarray, truth: np.ndarray, kind: str, size: int
) -> tuple[int, float]:
    """(segments, mIoU) of the labeling that gives each superpixel its majority true class."""
    from skimage.segmentation import felzenszwalb, slic

    if kind == "slic":
        seg = slic(image, n_segments=size, compactness=10, start_label=0)
    else:
        seg = felzenszwalb(image, scale=size, sigma=0.5, min_size=5)
    k = int(seg.max()) + 1
    votes = np.zeros((k, NUM_CLASSES), np.int64)
    np.add.at(votes, (seg.ravel(), truth.ravel().astype(np.int64)), 1)
    return k, miou(votes.argmax(1)[seg], truth)


def neck_faces(data: Path, predictor: Any, test: int) -> list[tuple[Face, np.ndarray]]:
    """bench.effort_loop's scored test faces, neck as skin, with their neck masks."""
    from bench.app_finetune import CELEBA_MASKS, NECK
    from bench.effort_loop import TEST_FACES, faces
    from trainer.data.imageio import read_label

    val, _, names = faces(data, 0, TEST_FACES)
    out = []
    for s in val.select(names[:test]):
        neck = read_label(CELEBA_MASKS / f"{s.name}.png") == NECK
        out.append((Face(f"val/{s.name}", s.image, s.label, predictor), neck))
    return out


def summarize(results: Path) -> dict[str, dict[str, float]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in harness.read_jsonl(results):
        rows[(r["run"], r["face"])] = r
    table: dict[str, dict[str, float]] = {}
    for run in sorted({k[0] for k in rows}):
        part = [r for (name, _), r in rows.items() if name == run]
        table[run] = {
            "faces": len(part),
            "reached": sum(bool(r["reached"]) for r in part),
            **(
                {
                    "mean_seconds": round(float(np.mean([r["seconds"] for r in part])), 1),
                    "start_miou": round(float(np.mean([r["start_miou"] for r in part])), 4),
                }
                if "seconds" in part[0]
                else {"miou": round(float(np.mean([r["miou"] for r in part])), 4)}
            ),
        }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, experiment=EXPERIMENT, results="effort_bounds.jsonl")
    parser.add_argument("--faces", choices=("helen", "neck", "superpixels"), default="helen")
    parser.add_argument(
        "--sliver", type=int, default=SLIVER, help="px: a wrong region under this is a sliver"
    )
    parser.add_argument("--max-faces", type=int, default=None, help="only the first N faces")
    parser.add_argument(
        "--data", default=str(harness.OUT / "study" / "data"), help="the study's data stage"
    )
    parser.add_argument("--summary", action="store_true", help="print the table from --results")
    args = parser.parse_args(argv)
    harness.setup_logging()
    results = Path(args.results)
    if args.faces == "superpixels" and not args.summary:
        command = harness.command_line(__spec__.name if __spec__ else None, argv)
        harness.record_output(
            results, command, note="one record per face and start; the last one counts"
        )
        helen = load_faces("helen", Path(args.data), 0, None)[: args.max_faces]
        for face in helen:
            for kind, size in SUPERPIXELS:
                segments, score = superpixel_ceiling(face.image, face.truth, kind, size)
                out = {"face": face.name, "segments": segments, "miou": round(score, 4),
                       "reached": score >= 0.95, "side": face.truth.shape[0]}  # fmt: skip
                run = f"superpixels:{kind}-{size}"
                harness.append_jsonl(results, harness.jsonl_record(EXPERIMENT, run, out, command))
    elif not args.summary:
        from trainer.predict import Predictor
        from trainer.starter import STARTER_PARSER

        predictor = Predictor.from_checkpoint(STARTER_PARSER, device="cpu", framing="whole")
        if args.faces == "helen":
            jobs = [
                (f, list(helen_starts(f, args.sliver)))
                for f in load_faces("helen", Path(args.data), 0, predictor)
            ]
        else:
            data = harness.require(
                Path(args.data) / "val", "the study's data stage (python -m bench.study)"
            ).parent
            jobs = [(f, list(neck_starts(f, neck))) for f, neck in neck_faces(data, predictor, 6)]
        command = harness.command_line(__spec__.name if __spec__ else None, argv)
        harness.record_output(
            results, command, note="one record per face and start; the last one counts"
        )
        for face, starts in jobs[: args.max_faces]:
            for name, start in starts:
                out = correct(face, start, BASIC)
                del out["curve"]
                if name == "pre":
                    out.update(error_census(start, face.truth, args.sliver))
                out.update(face=face.name, start=name, sliver=args.sliver)
                run = f"{args.faces}:{name}"
                harness.append_jsonl(results, harness.jsonl_record(EXPERIMENT, run, out, command))
                harness.log.info(
                    "%s %s: %.0f s, mIoU %.3f", face.name, run, out["seconds"], out["start_miou"]
                )
    for run, row in summarize(results).items():
        print(f"{run:>20}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
