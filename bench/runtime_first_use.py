"""First use of a fine-tuned version's pre-label runtime check: before (exported, checked and
timed) and after the speed answer is kept per architecture (exported and checked only).

Usage:
    python -m bench.runtime_first_use [--rounds 3] [--checkpoint STARTER_PARSER]

First the check runs on the checkpoint itself (default the starter parser: lite, 256 px): its
speed answer is recorded. Each round then makes a new fine-tuned version of it, the parsing head
nudged with seeded noise (the same architecture, other tensors: what the app publishes after a
training run), and runs the check as the app runs it, ``python -m trainer.runtime_choice`` in a
process of its own, four ways (the first three in an order that turns every round, so a busy
moment on a shared machine hits each alike):

  before        an empty cache: the version is exported, its logits checked, both runtimes timed
                (what every published version cost while the answer was kept per tensors)
  after_onnx    a cache whose speed answer for the architecture says ONNX Runtime (the measured
                answer, its winner set so): exported and checked only
  after_torch   the same, the answer saying torch: nothing is exported or checked
  cached        the version again (after_onnx's cache): the process start, the model's loading
                and the reading of the answer, which all of the others include

Seconds are the wall time of the process, median over the rounds; the machine record holds the
ISA and the load.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    argument_parser,
    child_env,
    command_line,
    machine,
    utc_now,
    write_json,
)

STARTER = ROOT / "trainer" / "assets" / "models" / "starter_parser.safetensors"
WAYS = ("before", "after_onnx", "after_torch", "cached")


def fine_tuned_version(checkpoint: Path, out: Path, seed: int) -> Path:
    """``checkpoint`` with its parsing head nudged (seeded): a version with other tensors."""
    import torch

    from trainer.checkpoint import load_model, save_checkpoint

    model, ckpt = load_model(checkpoint)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.heads["parsing"].parameters():
            param.add_(1e-3 * torch.randn(param.shape, generator=generator))
    meta = {k: v for k, v in ckpt.meta.items() if k in ("training", "label_subset", "metrics")}
    return save_checkpoint(out, model, stage="finetune", meta=meta)


def plant_speed(checkpoint: Path, cache: Path, measured: dict[str, Any], runtime: str) -> Path:
    """A cache holding only the architecture's speed answer, its winner set to ``runtime``."""
    from trainer import runtime_choice
    from trainer.predict import Predictor

    key = runtime_choice.speed_key(Predictor.from_checkpoint(checkpoint, device="cpu"))
    entry = {k: measured.get(k) for k in ("checked", "torch_s", "onnxruntime_s")}
    reason = f"planted by bench.runtime_first_use (measured: {measured.get('runtime')})"
    runtime_choice.update_choices(cache, {key: {**entry, "runtime": runtime, "reason": reason}})
    return cache


def run_check(checkpoint: Path, cache: Path, threads: int) -> dict[str, Any]:
    """The app's check in a process of its own: its wall seconds and the choice it printed."""
    command = [
        sys.executable,
        "-m",
        "trainer.runtime_choice",
        str(checkpoint),
        "--cache-dir",
        str(cache),
        "--threads",
        str(threads),
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=child_env())
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    return {"s": round(seconds, 2), **json.loads(proc.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        __doc__, experiment="speed", out=True, results="runtime_first_use.json", threads=True
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoint", default=str(STARTER))
    args = parser.parse_args(argv)
    import torch

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    work = Path(args.out) / "runtime_first_use"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = {"date": utc_now(), "machine": machine()}
    speed = run_check(Path(args.checkpoint), work / "measured", threads)
    print("speed answer", speed, flush=True)
    caches = {
        way: plant_speed(Path(args.checkpoint), work / way, speed, way[6:]) for way in WAYS[1:3]
    }
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    for r in range(args.rounds):
        version = fine_tuned_version(Path(args.checkpoint), work / f"v{r}.safetensors", seed=r)
        turned = WAYS[:3][r % 3 :] + WAYS[:3][: r % 3]
        for way in (*turned, "cached"):
            cache = (
                work / f"empty_{r}" if way == "before" else caches.get(way, caches["after_onnx"])
            )
            runs[way].append(run_check(version, cache, threads))
            print(r, way, runs[way][-1], flush=True)
    median = {f"{way}_s": statistics.median(x["s"] for x in runs[way]) for way in WAYS}
    result = {
        **start,
        "command": command_line(__spec__.name, argv),
        "checkpoint": os.path.relpath(args.checkpoint, ROOT),
        "rounds": args.rounds,
        "threads": threads,
        "speed_answer": {k: speed.get(k) for k in ("runtime", "torch_s", "onnxruntime_s")},
        **median,
        # What the check itself costs, the process floor ("cached") taken off.
        **{f"{way}_check_s": round(median[f"{way}_s"] - median["cached_s"], 2) for way in WAYS[:3]},
        "runs": runs,
        "load_avg_end": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    print(f"wrote {write_json(args.results, result, result['command'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
