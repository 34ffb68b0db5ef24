"""From file to label map on a 12-megapixel photo, with one face and with five (issue 29).

Two 4000×3000 JPEGs are made once (validation faces pasted at 12-25% of the height into a
non-face photo, ``bench.composites``'s backgrounds) and each is timed in a fresh process:
``Predictor.predict_file`` with ``detect`` framing (the JPEG decoded at the size its faces
need, found, cropped, parsed, pasted back into a 12-MP label map), median of the repeats after
one warm-up, with the median of each step (decode, find, crop + network, paste); and the app's
path for the one-face photo (the whole photo decoded, then ``training.prelabel``). Peak memory
is the process's maximum resident set above what it held after loading the model. The CPU's
ISA and load are recorded with every figure.

    python -m bench.photo_latency --repeats 5               # torch's threads: the wall time
    python -m bench.photo_latency --repeats 5 --threads 1   # one thread: CPU time per step too
"""

from __future__ import annotations

import argparse
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


def _child(checkpoint: str, photo: str, repeats: int, path: str) -> dict:
    """Runs in its own process: time file -> label map, where the time goes, and the peak
    memory above the model. ``path``: "file" (``Predictor.predict_file``: the JPEG read at the
    size the faces need, what ``faceparse predict`` does) or "app" (the whole photo decoded,
    then ``faceparse_app.training.prelabel``: the app's pre-label of an image it holds)."""
    import torch

    from trainer.data.imageio import read_image
    from trainer.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", framing="detect")
    predictor.find_faces(np.zeros((64, 64, 3), np.uint8))  # load the finder
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if path == "app":
        from faceparse_app.training import prelabel

        def run():
            return prelabel(predictor, read_image(photo))
    else:

        def run():
            return predictor.predict_file(photo)[0]

    times, cpu, faces = [], [], 0
    for _ in range(repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        pred = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        faces = len(pred.faces)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row = {
        "path": path,
        "seconds_median": round(float(np.median(times[1:])), 3),
        "seconds_min": round(float(np.min(times[1:])), 3),
        "seconds_first": round(times[0], 3),
        # CPU seconds of the process (all its threads): with one thread, the time on an idle
        # core, whatever else the machine is running.
        "cpu_seconds_median": round(float(np.median(cpu[1:])), 3),
        "faces_found": faces,
        "peak_mib_above_model": round((peak - base) / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }
    if path == "file":
        row["stages_s"] = _stages(predictor, photo, repeats)
    return row


def _stages(predictor, photo: str, repeats: int) -> dict[str, float]:
    """Median seconds of each step of ``predict_file``, run one by one: decode (at the reduced
    size it reads), find, crop + network (face crops and zoomed-out crops), paste back. With one
    torch thread the CPU time of each step (robust to a loaded machine), else wall time."""
    from trainer.data.imageio import image_size, read_image
    from trainer.paste import paste_logits

    full = image_size(photo)
    reduce = predictor._reduce_for(full)
    steps: dict[str, list[float]] = {"decode": [], "find": [], "crop_network": [], "paste": []}
    clock = time.process_time if torch_threads() == 1 else time.perf_counter
    pasted: list = []
    real_paste = paste_logits

    def timed_paste(*args, **kwargs):
        t = clock()
        out = real_paste(*args, **kwargs)
        pasted.append(clock() - t)
        return out

    import trainer.predict as predict_module

    predict_module.paste_logits = timed_paste
    try:
        for _ in range(repeats):
            t0 = clock()
            image = read_image(photo, reduce=reduce)
            t1 = clock()
            found = predictor.find_faces(image)
            t2 = clock()
            predictor.predict_batch([image], output_sizes=[full], faces=[found])
            t3 = clock()
            steps["decode"].append(t1 - t0)
            steps["find"].append(t2 - t1)
            steps["paste"].append(pasted[-1])
            steps["crop_network"].append(t3 - t2 - pasted[-1])
    finally:
        predict_module.paste_logits = real_paste
    out: dict = {k: round(float(np.median(v)), 3) for k, v in steps.items()}
    out["decoded_at"] = f"1/{reduce}"
    out["clock"] = "cpu" if clock is time.process_time else "wall"
    return out


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(
        __doc__, experiment=EXPERIMENT, results="photo_latency.json", threads=True
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parser", default=None, help="checkpoint (default: the starter parser)")
    parser.add_argument("--child", nargs=3, metavar=("CHECKPOINT", "PHOTO", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        harness.set_threads(args.threads)
        print(json.dumps(_child(args.child[0], args.child[1], args.repeats, args.child[2])))
        return 0
    from trainer.starter import STARTER_PARSER

    checkpoint = str(args.parser or STARTER_PARSER)
    work = harness.out_dir(EXPERIMENT)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, path in ((1, "file"), (5, "file"), (1, "app")):
        photo = work / f"photo_12mp_{n}faces.jpg"
        if not photo.is_file():
            _make_photo(photo, n, seed=n)
        cmd = harness.module_command(
            "bench.photo_latency",
            ["--child", checkpoint, str(photo), path, "--repeats", str(args.repeats)]
            + (["--threads", str(args.threads)] if args.threads else []),
        )
        out = subprocess.run(cmd, capture_output=True, text=True, env=harness.child_env(), check=True)
        row = {"faces_pasted": n, **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    payload = {"parser": checkpoint, "photo": list(SIZE), "rows": rows, "target_one_face_s": 0.5}
    harness.write_json(args.results, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
