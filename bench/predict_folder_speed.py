"""Photos per second of ``faceparse predict`` on a folder: the pipeline against one at a time.

Usage:
    python -m bench.predict_folder_speed [--photos 500] [--chunk 25] [--framing detect]
        [--checkpoint trainer/assets/models/starter_parser.safetensors] [--runtime torch]

``--photos`` photos cycled from ../shared/data/faces-unlabeled (links in a temporary folder,
never copies in the repo), parsed in chunks of ``--chunk``, the two loops alternating chunk by
chunk so a busy moment on the shared machine hits both alike:

  one_at_a_time  the loop before issue 34: decode, parse, write the label, one photo after another
  pipeline       :func:`trainer.predict_folder.predict_folder`: reader threads decode ahead, a
                 writer thread writes behind the network

Photos/s of each = photos over the summed seconds of its chunks; the machine record holds the
ISA and the load.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, SHARED, argument_parser, command_line, machine, utc_now, write_json


def one_at_a_time(predictor: Any, in_dir: Path, out_dir: Path) -> int:
    """The folder loop as it was: predict_file, then write, for each photo in turn."""
    from trainer.data.folders import list_images
    from trainer.data.imageio import write_label

    count = 0
    for path in list_images(in_dir):
        pred, _ = predictor.predict_file(path)
        write_label(out_dir / path.relative_to(in_dir).with_suffix(".png"), pred.label)
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, experiment="speed", results="predict_folder.json")
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--framing", default="detect")
    parser.add_argument(
        "--checkpoint", default=str(ROOT / "trainer/assets/models/starter_parser.safetensors")
    )
    parser.add_argument("--runtime", default="torch", help="auto, torch, torch-bf16 or onnxruntime")
    args = parser.parse_args(argv)
    from trainer.predict_folder import predict_folder
    from trainer.runtime_choice import load_predictor

    source = sorted((SHARED / "faces-unlabeled").glob("*.jpg"))
    predictor = load_predictor(args.checkpoint, "cpu", args.framing, args.runtime)
    seconds = {"one_at_a_time": 0.0, "pipeline": 0.0}
    by_chunk: dict[str, list[float]] = {name: [] for name in seconds}
    start = {"date": utc_now(), "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        photos = itertools.islice(itertools.cycle(source), args.photos)
        chunks: list[Path] = []
        for i, src in enumerate(photos):
            if i % args.chunk == 0:
                chunks.append(Path(tmp, "in", f"c{len(chunks):03d}"))
                chunks[-1].mkdir(parents=True)
            os.symlink(src, chunks[-1] / f"{i:04d}_{src.name}")
        predictor.predict_batch([predictor.decode_file(source[0])[0]])  # warm-up
        for k, chunk in enumerate(chunks):
            order = ("one_at_a_time", "pipeline") if k % 2 == 0 else ("pipeline", "one_at_a_time")
            for name in order:
                out = Path(tmp, name, chunk.name)
                t0 = time.perf_counter()
                if name == "pipeline":
                    predict_folder(predictor, chunk, out)
                else:
                    one_at_a_time(predictor, chunk, out)
                seconds[name] += time.perf_counter() - t0
                by_chunk[name].append(round(time.perf_counter() - t0, 2))
            print(k, {n: round(s, 1) for n, s in seconds.items()}, flush=True)
    rates = {f"{n}_photos_s": round(args.photos / s, 3) for n, s in seconds.items()}
    result = {
        **start,
        "command": command_line(__spec__.name, argv),
        "photos": args.photos,
        "framing": args.framing,
        "runtime": predictor.model_info["runtime"],
        "preset": predictor.model_info["preset"],
        **rates,
        "speedup": round(seconds["one_at_a_time"] / seconds["pipeline"], 2),
        # A chunk's two runs are neighbours in time: their ratio is the least disturbed.
        "speedup_by_chunk": [
            round(a / b, 2)
            for a, b in zip(by_chunk["one_at_a_time"], by_chunk["pipeline"], strict=True)
        ],
        "chunk_s": by_chunk,
        "load_avg_end": [round(v, 2) for v in os.getloadavg()],
    }
    print(result)
    print(f"wrote {write_json(args.results, result, result['command'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
