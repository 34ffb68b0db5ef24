"""Parsing faces in whole photos: aligned faces pasted small, anywhere and turned, into real
non-face backgrounds, scored over the whole frame (issue 29, Measure).

Each of the study's 100 validation faces (CelebAMask-HQ crops the parser never trained on) is
pasted into a 1600×1200 frame so that its face (the extent of the LaPa face classes, hairline
to chin) is 15%, 25%, 40% or 60% of the frame's height, at a random place, turned in-plane by a
random angle in ±30°, its square crop feathered into one of scikit-image's bundled non-face
photos (coffee, a rocket, a cat, the Hubble deep field, tissue, a retina, brick, grass, gravel,
coins, the moon). At 15% and 25% every other frame holds two more validation faces. One
confusion matrix per size over the whole frames (the field's convention) gives mean F1 (10
foreground classes) and mIoU (11 classes) for:

- ``whole``: the frame squashed to the model's square input (what every path did before);
- ``detect``: the product: the face finder, upright crops, logits pasted back;
- ``oracle``: the same pipeline given each face's exact eye and mouth points (from the paste),
  so only the finder's error separates it from ``detect``;
- ``aligned``: each face's own crop, parsed whole and scored on its own label (the parser's
  ceiling on these faces).

Targets: detect within 3 mean-F1 points of oracle at every size, and within 5 of aligned at 25%
and up. Also recorded: the finder's recall on the composites per size and per angle band.

    python -m bench.composites --parser bench/out/composites/heldout_parser/finetune_last.safetensors
    python -m bench.composites --quick      # 8 faces: the pipeline in a minute
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench import harness
from bench.faces import validation_faces
from bench.recipes import STUDY_OUT
from trainer.data.sample import Sample
from trainer.faces import LABEL_BOX_FRAMING, TEMPLATE, Face
from trainer.metrics import ConfusionMatrix
from trainer.predict import Predictor

EXPERIMENT = "composites"
FRAME = (1200, 1600)  # (H, W)
SIZES = (0.15, 0.25, 0.40, 0.60)
MAX_ANGLE = 30.0
BACKGROUNDS = (
    "coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina",
    "brick", "grass", "gravel", "coins", "moon",
)  # fmt: skip
METHODS = ("whole", "detect", "oracle", "aligned")


def backgrounds() -> list[np.ndarray]:
    """scikit-image's bundled non-face photos, cover-cropped to the frame (RGB uint8)."""
    try:
        import skimage.data as data
    except ImportError:
        raise SystemExit(
            "bench.composites needs scikit-image for its background photos: "
            ".venv/bin/pip install -e '.[bench]'"
        ) from None
    out = []
    h, w = FRAME
    for name in BACKGROUNDS:
        im = getattr(data, name)()
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        im = np.ascontiguousarray(im[..., :3]).astype(np.uint8)
        scale = max(h / im.shape[0], w / im.shape[1])
        big = cv2.resize(im, (int(np.ceil(im.shape[1] * scale)), int(np.ceil(im.shape[0] * scale))))
        y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
        out.append(np.ascontiguousarray(big[y0 : y0 + h, x0 : x0 + w]))
    return out


def _face_extent(label: np.ndarray) -> float:
    """Height of the face classes (1..9) of an aligned label, in its pixels."""
    ys = np.nonzero(np.isin(label, range(1, 10)))[0]
    return float(ys.max() - ys.min() + 1) if ys.size else float(label.shape[0]) * 0.75


def _paste(
    frame: np.ndarray, truth: np.ndarray, sample: Sample, height_share: float, angle: float,
    rng: np.random.Generator, taken: list[tuple[float, float, float]],
) -> tuple[np.ndarray, dict] | None:
    """Paste one aligned face; returns its transform (crop px -> frame px) and truth points."""
    assert sample.label is not None
    image, label = sample.image, sample.label
    side = image.shape[0]
    scale = height_share * FRAME[0] / _face_extent(label)
    half = side * scale / 2 * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle))))
    for _ in range(50):
        cx = rng.uniform(half, FRAME[1] - half) if FRAME[1] > 2 * half else FRAME[1] / 2
        cy = rng.uniform(half, FRAME[0] - half) if FRAME[0] > 2 * half else FRAME[0] / 2
        if all(np.hypot(cx - x, cy - y) > (half + r) * 0.9 for x, y, r in taken):
            break
    else:
        return None
    taken.append((cx, cy, half))
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, scale)
    m[:, 2] += np.array([cx, cy]) - side / 2
    size = (FRAME[1], FRAME[0])
    warped = cv2.warpAffine(image, m, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    lab = cv2.warpAffine(label, m, size, flags=cv2.INTER_NEAREST, borderValue=0)
    # A feathered square: the crop's own surroundings fade into the background photo.
    alpha = np.zeros((side, side), np.float32)
    edge = max(2, side // 16)
    alpha[edge:-edge, edge:-edge] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), edge / 2)
    a = cv2.warpAffine(alpha, m, size, flags=cv2.INTER_LINEAR)[..., None]
    frame[:] = (frame * (1 - a) + warped * a).astype(np.uint8)
    inside = a[..., 0] > 0.5
    truth[inside] = lab[inside]
    pts = np.array([TEMPLATE["left_eye"], TEMPLATE["right_eye"], TEMPLATE["mouth"]]) * side
    pts = pts @ m[:, :2].T + m[:, 2]
    landmarks = np.stack([pts[0], pts[1], (pts[0] + pts[1] + pts[2]) / 3, pts[2], pts[2]])
    corners = np.array([[0, 0], [side, 0], [0, side], [side, side]], np.float64) @ m[:, :2].T + m[:, 2]
    box = (*corners.min(0), *corners.max(0))
    return m, {"landmarks": landmarks.astype(np.float32), "box": box, "angle": angle}


def make_frames(
    faces: Sequence[Sample], share: float, rng: np.random.Generator, bgs: list[np.ndarray]
) -> list[dict[str, Any]]:
    """The frames of one size: one per validation face (plus two more faces in every other
    frame at 15% and 25%)."""
    frames = []
    n = len(faces)
    for i in range(n):
        frame = bgs[i % len(bgs)].copy()
        truth = np.zeros(FRAME, np.uint8)
        taken: list[tuple[float, float, float]] = []
        members = [i]
        if share <= 0.25 and i % 2 == 1 and n > 2:
            members += [int(j) for j in rng.choice([j for j in range(n) if j != i], 2, replace=False)]
        placed = []
        for j in members:
            angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
            got = _paste(frame, truth, faces[j], share, angle, rng, taken)
            if got is not None:
                placed.append(got[1])
        frames.append({"image": frame, "truth": truth, "faces": placed, "name": faces[i].name})
    return frames


def _found(truth: dict, faces: Sequence[Face]) -> bool:
    """A found face matches a pasted one when its box centre lies inside the pasted face's
    extent (the middle half of the pasted square) and their sizes agree within 2×."""
    x0, y0, x1, y1 = truth["box"]
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2
    for f in faces:
        fx, fy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        ratio = f.height / side if side else 0.0
        if abs(fx - cx) < side / 2 and abs(fy - cy) < side / 2 and 0.3 < ratio < 3.0:
            return True
    return False


def run_size(
    share: float, frames: list[dict[str, Any]], faces: Sequence[Sample], predictors: dict[str, Predictor]
) -> dict[str, Any]:
    cms = {m: ConfusionMatrix(11) for m in METHODS}
    seconds = {m: 0.0 for m in METHODS}
    found = {"total": 0, "found": 0, "by_angle": {}}
    for frame in frames:
        image, truth = frame["image"], frame["truth"]
        t0 = time.perf_counter()
        cms["whole"].update(predictors["whole"](image).label, truth)
        t1 = time.perf_counter()
        pred = predictors["detect"](image)
        t2 = time.perf_counter()
        cms["detect"].update(pred.label, truth)
        given = [
            Face(box=tuple(f["box"]), landmarks=f["landmarks"], source="user",
                 box_framing=LABEL_BOX_FRAMING)
            for f in frame["faces"]
        ]  # fmt: skip
        cms["oracle"].update(predictors["detect"].predict_batch([image], faces=[given])[0].label, truth)
        t3 = time.perf_counter()
        seconds["whole"] += t1 - t0
        seconds["detect"] += t2 - t1
        seconds["oracle"] += t3 - t2
        for f in frame["faces"]:
            band = f"{int(abs(f['angle']) // 10) * 10}-{int(abs(f['angle']) // 10) * 10 + 10}"
            hit = _found(f, pred.faces)
            found["total"] += 1
            found["found"] += hit
            slot = found["by_angle"].setdefault(band, [0, 0])
            slot[0] += hit
            slot[1] += 1
    t0 = time.perf_counter()
    for sample in faces:
        assert sample.label is not None
        cms["aligned"].update(predictors["whole"](sample.image).label, sample.label)
    seconds["aligned"] = time.perf_counter() - t0
    out: dict[str, Any] = {"share": share, "frames": len(frames)}
    for m in METHODS:
        scores = cms[m].to_dict(("background", *[str(c) for c in range(1, 11)]))
        out[m] = {
            "mean_f1": round(100 * scores["mean_f1"], 2),
            "miou": round(100 * scores["miou"], 2),
            "s_per_frame": round(seconds[m] / max(1, len(frames if m != "aligned" else faces)), 3),
        }
    out["finder_recall"] = round(found["found"] / max(1, found["total"]), 4)
    out["finder_recall_by_angle"] = {k: round(a / b, 3) for k, (a, b) in sorted(found["by_angle"].items())}
    out["faces"] = found["total"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(
        __doc__, experiment=EXPERIMENT, results="composites.json", seed=0,
        quick="8 faces, two sizes",
    )  # fmt: skip
    parser.add_argument("--parser", default=None, help="a fine-tuned checkpoint that never saw "
                        "the validation faces (default: the starter parser, which did)")
    parser.add_argument("--data", default=str(STUDY_OUT / "data"), help="the study's data stage")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--no-hair-parse", action="store_true", help="without the third, hair-only "
                        "parse at 2.5x (as before 2026-12-07): what it costs where no hair goes on")
    parser.add_argument("--keep-lone", action="store_true", help="the zoomed-out parse labels every "
                        "pixel past the own crop, also regions that join nothing of their class in "
                        "the own parse (as before 2026-12-07's evening)")
    args = parser.parse_args(argv)
    harness.setup_logging()
    if args.no_hair_parse:
        import trainer.face_parses

        trainer.face_parses.HAIR_AT_EDGE = 1.01  # a share of edge pixels is at most 1: never
    if args.keep_lone:
        import trainer.face_parses
        from bench.hair_past_crop import keep_all_fill

        trainer.face_parses.fill_mask = keep_all_fill
    from trainer.starter import STARTER_PARSER

    checkpoint = Path(args.parser) if args.parser else STARTER_PARSER
    harness.require(checkpoint, "the parser to score")
    faces = validation_faces(harness.require(Path(args.data), "the study's data stage"),
                             limit=8 if args.quick else None)  # fmt: skip
    sizes = [float(s) for s in args.sizes.split(",")][: 2 if args.quick else None]
    predictors = {
        "whole": Predictor.from_checkpoint(checkpoint, device="cpu", framing="whole"),
        "detect": Predictor.from_checkpoint(checkpoint, device="cpu", framing="detect"),
    }
    finder = getattr(predictors["detect"].finder, "name", "?")
    bgs = backgrounds()
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []
    for share in sizes:
        frames = make_frames(faces, share, rng, bgs)
        row = run_size(share, frames, faces, predictors)
        rows.append(row)
        print(json.dumps(row), flush=True)
        payload = {
            "parser": str(checkpoint),
            "finder": finder,
            "faces": len(faces),
            "frame": list(FRAME),
            "rows": rows,
            "sizes_asked": sizes,
            "targets": {"detect_vs_oracle_f1": -3.0, "detect_vs_aligned_f1_from_25": -5.0},
        }
        if args.results:  # after every size: a run stopped early keeps what it measured
            harness.write_json(args.results, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
