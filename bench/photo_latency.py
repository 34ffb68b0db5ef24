"""From file to label map on a 12-megapixel photo, with one face and with five (issue 29).

Two 4000×3000 JPEGs are made once (validation faces pasted at 12-25% of the height into a
non-face photo, ``bench.composites``'s backgrounds) and each is timed in a fresh process:
``read_image`` (the JPEG decode) + ``Predictor.predict_batch`` with ``detect`` framing (find,
crop, parse, paste back at 12 MP), median of the repeats after one warm-up; peak memory is the
process's maximum resident set above what it held after loading the model. The CPU's ISA is
recorded with every figure.

    python -m bench.photo_latency --repeats 5
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import harness

EXPERIMENT = "photo_latency"
SIZE = (3000, 4000)  # (H, W): 12 megapixels


def _make_photo(path: Path, n_faces: int, seed: int) -> None:
    import cv2

    from bench.composites import FRAME, _paste, backgrounds
    from bench.faces import validation_faces
    from bench.recipes import STUDY_OUT
    from trainer.data.imageio import write_image

    faces = validation_faces(harness.require(STUDY_OUT / "data", "the study's data stage"))
    rng = np.random.default_rng(seed)
    small = np.zeros((*FRAME, 3), np.uint8)
    truth = np.zeros(FRAME, np.uint8)
    small[:] = backgrounds()[seed % 11]
    taken: list = []
    for k in range(n_faces):
        _paste(small, truth, faces[k], float(rng.uniform(0.12, 0.25)), float(rng.uniform(-20, 20)), rng, taken)
    photo = cv2.resize(small, SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    write_image(path, photo, quality=92)


def _child(checkpoint: str, photo: str, repeats: int) -> dict:
    """Runs in its own process: time file -> label map, and the peak memory above the model."""
    import torch

    from trainer.data.imageio import read_image
    from trainer.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", framing="detect")
    predictor.find_faces(np.zeros((64, 64, 3), np.uint8))  # load the finder
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, faces = [], 0
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        pred = predictor(read_image(photo))
        times.append(time.perf_counter() - t0)
        faces = len(pred.faces)
    t0 = time.perf_counter()
    image = read_image(photo)
    decode = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds_median": round(float(np.median(times[1:])), 3),
        "seconds_first": round(times[0], 3),
        "decode_s": round(decode, 3),
        "faces_found": faces,
        "peak_mib_above_model": round((peak - base) / 1024, 1),
        "image": list(image.shape),
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(
        __doc__, experiment=EXPERIMENT, results="photo_latency.json", threads=True
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parser", default=None, help="checkpoint (default: the starter parser)")
    parser.add_argument("--child", nargs=2, metavar=("CHECKPOINT", "PHOTO"), help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.child:
        harness.set_threads(args.threads)
        print(json.dumps(_child(args.child[0], args.child[1], args.repeats)))
        return 0
    from trainer.starter import STARTER_PARSER

    checkpoint = str(args.parser or STARTER_PARSER)
    work = harness.out_dir(EXPERIMENT)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (1, 5):
        photo = work / f"photo_12mp_{n}faces.jpg"
        if not photo.is_file():
            _make_photo(photo, n, seed=n)
        cmd = harness.module_command(
            "bench.photo_latency", ["--child", checkpoint, str(photo), "--repeats", str(args.repeats)]
            + (["--threads", str(args.threads)] if args.threads else [])
        )
        out = subprocess.run(cmd, capture_output=True, text=True, env=harness.child_env(), check=True)
        row = {"faces_pasted": n, **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    payload = {"parser": checkpoint, "photo": list(SIZE), "rows": rows, "target_one_face_s": 0.5}
    harness.write_json(args.results, payload)
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
