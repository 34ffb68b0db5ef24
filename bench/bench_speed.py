"""Speed and memory (issue 5 §2): pre-label latency, training throughput, profile, compute floor.

Usage:
    .venv/bin/python -m bench.bench_speed [--presets paper,lite,tiny] [--repeats 3]
        [--train-steps 6] [--sections latency,train,profile,floor]
        [--results bench/results/speed/speed.json] [--update]

Sections:
  interleaved  the same three paths per preset and size in one process, called round-robin for
           ``--rounds`` rounds (each meets the same disturbances); fastest call per path. This
           is the comparison the app's default path is chosen from.
  latency  one 512×512 face through the whole pre-label path (resize, network, logits back to
           512 px, softmax, argmax) for each preset at 256 and 512 input: torch eager fp32 (NCHW),
           torch channels_last, and ONNX Runtime (export_onnx, parity ≤ 1e-4 checked). Each
           configuration runs in its own process so its peak RSS (ru_maxrss: model load + export
           + inference) is its own. Fastest of ``--repeats`` calls after one warm-up (the median
           is kept too): on a shared machine the fastest call is the least disturbed one.
  train    images/s of ``trainer.pretrain.pretrain`` and ``trainer.finetune.finetune_on_samples``
           (lite, 256 px, batch 8, real faces, data loading included: the fastest wall-clock gap
           between step ends after two warm-up steps; the mean rate is kept under "detail")
           against the plainest smp loop (NCHW, PIL resize, Adam); the trainer also with
           channels_last off (``bench.speed_training``).
  profile  where one lite training step's time goes: data loading, forward, backward, optimizer
           (fastest of the timed steps; trainer-style and naive), plus the top operators of one
           step from torch.profiler.
  floor    multiply-accumulates per image of each preset (counted with hooks on every conv and
           linear layer) over this machine's measured fp32 dense-product rate (the faster of
           torch.mm and oneDNN's 1×1 convolution): the compute floor of inference and of a
           training step (≈ 3× the forward), and measured / floor.

The machine is shared: the 1-, 5- and 15-minute load averages are recorded at the start and end;
a load above the core count means other processes took part of the CPU during the run. The
machine record holds the CPU's ISA (torch's dispatch level and /proc/cpuinfo's avx512f): oneDNN
runs other kernels without AVX-512, so figures from such machines are not comparable.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import (
    ROOT,
    argument_parser,
    child_env,
    command_line,
    machine,
    module_command,
    utc_now,
    write_json,
)
from bench.speed_training import bench_profile, bench_train
from bench.timing import time_calls
from trainer.models import build_model, get_preset

SIZES = (256, 512)
PATHS = ("eager_nchw", "channels_last", "onnxruntime")


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# ---------------------------------------------------------------------------------------------
# Latency (each configuration in a child process, for its own peak RSS)


def latency_worker(preset: str, size: int, path: str, repeats: int) -> dict[str, Any]:
    """Time one 512×512 face through a Predictor; runs inside a child process."""
    from trainer.checkpoint import save_checkpoint
    from trainer.predict import Predictor

    torch.manual_seed(0)
    config = get_preset(preset).with_overrides(input_size=size)
    model = build_model(config, heads=("parsing",)).eval()
    image = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)
    row: dict[str, Any] = {"preset": preset, "input": size, "path": path}
    if path == "onnxruntime":
        from trainer.onnx_export import OnnxPredictor, export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = save_checkpoint(Path(tmp) / "p.safetensors", model, "finetune")
            t0 = time.perf_counter()
            onnx_path = export_onnx(ckpt, Path(tmp) / "p.onnx", input_size=size, parity_batch=1)
            row["export_s"] = round(time.perf_counter() - t0, 2)
            row["parity_ok"] = True  # export_onnx raises when the check fails
            del model
            predictor: Any = OnnxPredictor(onnx_path, framing="whole")
            times = time_calls(lambda: predictor(image), repeats)
    else:
        predictor = Predictor(
            model, device="cpu", channels_last=path == "channels_last", framing="whole"
        )
        times = time_calls(lambda: predictor(image), repeats)
    # On a shared machine the fastest call is the best estimate of the uncontended cost.
    row["seconds"] = round(min(times), 4)
    row["median_s"] = round(statistics.median(times), 4)
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def bench_latency(presets: Sequence[str], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for preset in presets:
        for size in SIZES:
            for path in PATHS:
                cmd = module_command(
                    __spec__.name, ["--latency-worker", preset, str(size), path, str(repeats)]
                )
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, cwd=ROOT, env=child_env()
                )
                if proc.returncode != 0:
                    err = proc.stderr.strip().splitlines()[-1:] or ["?"]
                    row = {"preset": preset, "input": size, "path": path, "error": err[0]}
                else:
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def bench_interleaved(presets: Sequence[str], rounds: int) -> list[dict[str, Any]]:
    """All three paths of a preset in one process, timed round-robin: each round calls every
    path once, so every path meets the same disturbances from other processes; fastest call per
    path. (Peak RSS needs a process per path: see :func:`bench_latency`.)"""
    from trainer.checkpoint import save_checkpoint
    from trainer.onnx_export import OnnxPredictor, export_onnx
    from trainer.predict import Predictor

    image = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)
    rows = []
    for preset in presets:
        for size in SIZES:
            torch.manual_seed(0)
            config = get_preset(preset).with_overrides(input_size=size)
            model = build_model(config, heads=("parsing",)).eval()
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = save_checkpoint(Path(tmp) / "p.safetensors", model, "finetune")
                onnx_path = export_onnx(ckpt, Path(tmp) / "p.onnx", input_size=size, parity_batch=1)
                paths: dict[str, Any] = {
                    "eager_nchw": Predictor(
                        build_model(config, heads=("parsing",)).eval(),
                        device="cpu",
                        channels_last=False,
                        framing="whole",
                    ),
                    "channels_last": Predictor(
                        model, device="cpu", channels_last=True, framing="whole"
                    ),
                    "onnxruntime": OnnxPredictor(onnx_path, framing="whole"),
                }
                paths["eager_nchw"].model.load_state_dict(model.state_dict())
                times: dict[str, list[float]] = {name: [] for name in paths}
                for predictor in paths.values():
                    predictor(image)  # warm-up
                for _ in range(rounds):
                    for name, predictor in paths.items():
                        t0 = time.perf_counter()
                        predictor(image)
                        times[name].append(time.perf_counter() - t0)
            row = {"preset": preset, "input": size}
            for name, ts in times.items():
                row[f"{name}_s"] = round(min(ts), 4)
            fastest = min(paths, key=lambda n: min(times[n]))
            row["fastest"] = fastest
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Compute floor


def count_macs(preset: str, size: int, head: str = "parsing") -> int:
    """Multiply-accumulates of one forward pass at ``size`` px (convolutions and linear layers)
    through ``head`` ("parsing" or "reconstruction")."""
    model = build_model(get_preset(preset).with_overrides(input_size=size), heads=(head,)).eval()
    total = 0

    def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size), head=head)
    for h in handles:
        h.remove()
    return total


def matmul_rates(n: int = 2048, repeats: int = 20) -> dict[str, float]:
    """Measured fp32 multiply-accumulates per second of dense matrix products (all threads;
    fastest of ``repeats``: the least disturbed by other processes).

    Two routes to the same n×n×n product: ``torch.mm`` (PyTorch's BLAS) and a 1×1 convolution
    in channels_last (oneDNN's GEMM, the kernels the networks' convolutions run on). On this
    machine's AMD EPYC the second is about twice as fast, so the floor uses the faster one.
    """
    a, b = torch.rand(n, n), torch.rand(n, n)
    mm = n**3 / min(time_calls(lambda: torch.mm(a, b), repeats))
    side = 64  # 64×64 pixels = 4096 rows of the GEMM
    conv = (
        torch.nn.Conv2d(n // 2, n // 2, 1, bias=False).eval().to(memory_format=torch.channels_last)
    )
    x = torch.rand(1, n // 2, side, side).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        gemm = side * side * (n // 2) ** 2 / min(time_calls(lambda: conv(x), repeats))
    return {"torch_mm_gmac_s": round(mm / 1e9, 1), "onednn_1x1_conv_gmac_s": round(gemm / 1e9, 1)}


def bench_floor(
    presets: Sequence[str],
    latency: list[dict[str, Any]],
    train: dict[str, Any] | None,
    interleaved: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """MACs, floor seconds and measured / floor (from the interleaved timings when present)."""
    rates = matmul_rates()
    rate = 1e9 * max(rates.values())
    rows = []
    for preset in presets:
        for size in SIZES:
            macs = count_macs(preset, size)
            floor = macs / rate
            row: dict[str, Any] = {
                "preset": preset,
                "input": size,
                "gmacs": round(macs / 1e9, 2),
                "floor_s": round(floor, 4),
            }
            for r in latency:
                if r["preset"] == preset and r["input"] == size and "seconds" in r:
                    row[f"{r['path']}_over_floor"] = round(r["seconds"] / floor, 1)
            for r in interleaved or []:
                if r["preset"] == preset and r["input"] == size:
                    for path in PATHS:
                        row[f"{path}_over_floor"] = round(r[f"{path}_s"] / floor, 1)
            rows.append(row)
    out: dict[str, Any] = {**rates, "floor_rate_gmac_s": round(rate / 1e9, 1), "rows": rows}
    if train:
        macs = count_macs("lite", train["input"])
        # Training ≈ forward + backward (two products per layer: input and weight gradients).
        floor_img_s = rate / (3 * macs)
        out["train_floor_img_s"] = round(floor_img_s, 2)
        out["finetune_measured_over_floor"] = round(
            floor_img_s / train["finetune_trainer_img_s"], 1
        )
        out["pretrain_measured_over_floor"] = round(
            floor_img_s / train["pretrain_trainer_img_s"], 1
        )
    return out


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["--latency-worker"]:  # a child of bench_latency: one configuration
        preset, size, path, repeats = raw[1], int(raw[2]), raw[3], int(raw[4])
        print(json.dumps(latency_worker(preset, size, path, repeats)))
        return 0
    parser = argument_parser(__doc__, experiment="speed", results="speed.json")
    parser.add_argument("--presets", default="paper,lite,tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=6, help="timed steps (after warm-up)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--train-rounds", type=int, default=2, help="alternating runs of each loop")
    parser.add_argument(
        "--train-loops",
        default=None,
        help="comma-separated train runs to time (default all: pretrain_trainer, "
        "pretrain_trainer_nchw, pretrain_naive and the same for finetune)",
    )
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the interleaved latency")
    parser.add_argument("--sections", default="latency,interleaved,train,profile,floor")
    parser.add_argument(
        "--update", action="store_true", help="keep the other sections of --results"
    )
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    presets = args.presets.split(",")
    command = command_line(__spec__.name, argv)
    result: dict[str, Any] = {
        "date": utc_now(),
        "machine": machine(),
        "command": command,
        "load_avg_start": _load(),
    }
    if args.update and Path(args.results).is_file():
        previous = json.loads(Path(args.results).read_text())
        previous.setdefault("updates", []).append(
            {k: result[k] for k in ("date", "command", "machine", "load_avg_start")}
        )
        result = {**previous, **{k: v for k, v in result.items() if k not in ("date", "command")}}
    try:
        import onnxruntime

        result["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        result["onnxruntime"] = None
    if "latency" in sections:
        result["latency"] = bench_latency(presets, args.repeats)
    if "interleaved" in sections:
        result["interleaved"] = bench_interleaved(presets, args.rounds)
    if "train" in sections:
        result["train"] = bench_train(
            args.train_steps,
            args.train_batch,
            args.train_size,
            args.train_rounds,
            args.train_loops.split(",") if args.train_loops else None,
        )
    if "profile" in sections:
        result["profile"] = bench_profile(args.train_steps, args.train_batch, args.train_size)
    if "floor" in sections:
        result["floor"] = bench_floor(
            presets, result.get("latency", []), result.get("train"), result.get("interleaved")
        )
        print(json.dumps(result["floor"], indent=1), flush=True)
    result["load_avg_end"] = _load()
    print(f"wrote {write_json(args.results, result, command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
