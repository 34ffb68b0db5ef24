"""First use of a fine-tuned version's pre-label runtime check: before (exported, checked and
timed) and after the speed answer is kept per architecture (exported and checked only).

Usage:
    python -m bench.runtime_first_use [--rounds 3] [--checkpoint STARTER_PARSER]

First the check runs on the checkpoint itself (default the starter parser: lite, 256 px): its
speed answer is recorded (and every import is warm). Each round then makes a new fine-tuned
version of it, the parsing head nudged with seeded noise (the same architecture, other tensors:
what the app publishes after a training run), and runs :func:`trainer.runtime_choice.
choose_runtime` on it three ways, in an order that turns every round (a busy moment on a shared
machine hits each alike):

  before        an empty cache: the version is exported, its logits checked, both runtimes timed
                (what every published version cost while the answer was kept per tensors)
  after_onnx    a cache whose speed answer for the architecture says ONNX Runtime (the measured
                answer, its winner set so): exported and checked only
  after_torch   the same, the answer saying torch: nothing is exported or checked

Seconds of each (median over the rounds) with their parts: export, agreement, timing. The app
runs the check in a process of its own (``python -m trainer.runtime_choice``): ``process_s`` is
what that process costs besides (start, imports, loading the model, reading the answer), the
version run again once its answer is cached. The machine record holds the ISA and the load.
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
WAYS = ("before", "after_onnx", "after_torch")


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


class Parts:
    """Seconds spent in each part of the check (wraps runtime_choice's functions by name)."""

    NAMES = ("ensure_export", "agreement", "time_runtimes")

    def __init__(self) -> None:
        from trainer import runtime_choice

        self.seconds = dict.fromkeys(self.NAMES, 0.0)
        for name in self.NAMES:
            setattr(runtime_choice, name, self._timed(name, getattr(runtime_choice, name)))

    def _timed(self, name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return run

    def measure(self, checkpoint: Path, cache: Path) -> dict[str, Any]:
        """choose_runtime on a checkpoint: its seconds, its parts' and its answer."""
        from trainer.predict import Predictor
        from trainer.runtime_choice import choose_runtime

        predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
        self.seconds = dict.fromkeys(self.NAMES, 0.0)
        start = time.perf_counter()
        entry = choose_runtime(predictor, checkpoint, cache)
        total = time.perf_counter() - start
        parts = {
            f"{name.replace('ensure_', '')}_s": round(s, 2) for name, s in self.seconds.items()
        }
        return {"s": round(total, 2), **parts, "runtime": entry.get("runtime")}


def run_process(checkpoint: Path, cache: Path, threads: int) -> float:
    """Wall seconds of the app's check in a process of its own."""
    from faceparse_app.runtime_check import child_command

    # The app's own command, at this process's priority and not tied to it (timed, not hidden).
    command = child_command(checkpoint, cache, threads, nice=0, watched=False)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    return round(time.perf_counter() - start, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        __doc__, experiment="speed", out=True, results="runtime_first_use.json", threads=True
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoint", default=str(STARTER))
    args = parser.parse_args(argv)
    import torch

    from trainer import runtime_choice

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    work = Path(args.out) / "runtime_first_use"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = {"date": utc_now(), "machine": machine()}
    parts = Parts()
    speed = parts.measure(Path(args.checkpoint), work / "measured")
    measured = runtime_choice.read_choices(work / "measured")
    answer = next(v for k, v in measured.items() if k.startswith("speed "))
    print("speed answer", answer, flush=True)
    caches = {
        way: plant_speed(Path(args.checkpoint), work / way, answer, way[6:]) for way in WAYS[1:]
    }
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    process: list[float] = []
    for r in range(args.rounds):
        version = fine_tuned_version(Path(args.checkpoint), work / f"v{r}.safetensors", seed=r)
        for way in WAYS[r % 3 :] + WAYS[: r % 3]:
            cache = work / f"empty_{r}" if way == "before" else caches[way]
            runs[way].append(parts.measure(version, cache))
            print(r, way, runs[way][-1], flush=True)
        process.append(run_process(version, caches["after_onnx"], threads))
        print(r, "process", process[-1], flush=True)
    median = {
        f"{way}_{part}": statistics.median(x[part] for x in runs[way])
        for way in WAYS
        for part in ("s", "export_s", "agreement_s", "time_runtimes_s")
    }
    result = {
        **start,
        "command": command_line(__spec__.name, argv),
        "checkpoint": os.path.relpath(args.checkpoint, ROOT),
        "rounds": args.rounds,
        "threads": threads,
        "speed_answer": {k: answer.get(k) for k in ("runtime", "torch_s", "onnxruntime_s")},
        "first_check_s": speed["s"],
        **median,
        "process_s": statistics.median(process),
        "runs": {**runs, "process": process},
        "load_avg_end": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    print(f"wrote {write_json(args.results, result, result['command'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
