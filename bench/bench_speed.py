"""Speed and memory (issue 5 §2): pre-label latency, training throughput, profile, compute floor.

Usage:
    .venv/bin/python bench/bench_speed.py [--presets paper,lite,tiny] [--repeats 3] [--train-steps 6]
        [--sections latency,train,profile,floor] [--out bench/results/speed.json]

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
           channels_last off.
  profile  where one lite training step's time goes: data loading, forward, backward, optimizer
           (fastest of the timed steps; trainer-style and naive), plus the top operators of one
           step from torch.profiler.
  floor    multiply-accumulates per image of each preset (counted with hooks on every conv and
           linear layer) over this machine's measured fp32 dense-product rate (the faster of
           torch.mm and oneDNN's 1×1 convolution): the compute floor of inference and of a
           training step (≈ 3× the forward), and measured / floor.

The machine is shared: the 1-, 5- and 15-minute load averages are recorded at the start and end;
a load above the core count means other processes took part of the CPU during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainer.models import build_model, get_preset  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DEV = SHARED / "celebamask-hq-dev"
SIZES = (256, 512)
PATHS = ("eager_nchw", "channels_last", "onnxruntime")


def _times(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up: allocations, oneDNN primitive caches, ORT's first-run planning
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    return statistics.median(_times(fn, repeats))


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
            predictor: Any = OnnxPredictor(onnx_path)
            times = _times(lambda: predictor(image), repeats)
    else:
        predictor = Predictor(model, device="cpu", channels_last=path == "channels_last")
        times = _times(lambda: predictor(image), repeats)
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
                cmd = [
                    sys.executable,
                    __file__,
                    "--latency-worker",
                    preset,
                    str(size),
                    path,
                    str(repeats),
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
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
                    ),
                    "channels_last": Predictor(model, device="cpu", channels_last=True),
                    "onnxruntime": OnnxPredictor(onnx_path),
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
# Training throughput


class _Lazy(Sequence):
    """First ``n`` samples of a reader, loaded on access."""

    def __init__(self, source: Any, n: int) -> None:
        self.source, self.n = source, min(n, len(source))
        self.names = list(source.names[: self.n])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        return self.source[i]


def _rate(stamps: list[float], batch: int, warmup: int = 2) -> float:
    """Images/s of the fastest step (wall clock between consecutive step ends, data loading
    included), after ``warmup`` steps. The fastest step is the least disturbed by other
    processes on a shared machine; ``_RATES`` keeps the mean rate beside it."""
    t = stamps[warmup:]
    if len(t) < 2:
        return float("nan")
    gaps = np.diff(t)
    _RATES.append(
        {
            "best_img_s": round(batch / float(gaps.min()), 2),
            "mean_img_s": round(batch * len(gaps) / float(gaps.sum()), 2),
        }
    )
    return batch / float(gaps.min())


_RATES: list[dict[str, float]] = []


def trainer_pretrain_rate(steps: int, batch: int, size: int, channels_last: bool = True) -> float:
    from trainer.pretrain import PretrainConfig, pretrain

    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = PretrainConfig(
            image_dirs=(str(DEV / "images"),),
            out_dir=tmp,
            preset="lite",
            input_size=size,
            batch_size=batch,
            max_steps=steps + 3,
            device="cpu",
            epochs=1,
            channels_last=channels_last,
        )
        pretrain(config, on_progress=lambda s: stamps.append(time.perf_counter()))
    return _rate(stamps, batch)


def trainer_finetune_rate(steps: int, batch: int, size: int, channels_last: bool = True) -> float:
    from trainer.data.celebamask import CelebAMaskDataset
    from trainer.finetune import FinetuneConfig, finetune_on_samples

    stamps: list[float] = []
    samples = _Lazy(CelebAMaskDataset(DEV, label_set="lapa"), 64)
    with tempfile.TemporaryDirectory() as tmp:
        config = FinetuneConfig(
            data=str(DEV),
            out_dir=tmp,
            init="scratch",
            preset="lite",
            input_size=size,
            batch_size=batch,
            epochs=100,
            max_steps=steps + 3,
            device="cpu",
            val_split=None,
            progress_bar=False,
            channels_last=channels_last,
        )

        def on_progress(stats: dict[str, Any]) -> None:
            if stats.get("phase") == "train":
                stamps.append(time.perf_counter())

        finetune_on_samples(config, samples, None, on_progress=on_progress)
    return _rate(stamps, batch)


class _NaiveData(torch.utils.data.Dataset):
    """The plainest data path: PIL open, PIL resize, numpy → tensor, normalise."""

    def __init__(self, n: int, size: int, task: str) -> None:
        self.images = sorted((DEV / "images").glob("*.jpg"))[:n]
        self.size, self.task = size, task
        from trainer.labels import celebamask_to_lapa_lut

        self.lut = celebamask_to_lapa_lut()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        img = (
            Image.open(self.images[i]).convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        )
        x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        x = (x - mean) / std
        if self.task == "finetune":
            mask_path = DEV / "masks" / (self.images[i].stem + ".png")
            lab = Image.open(mask_path).resize((self.size, self.size), Image.NEAREST)
            return x, torch.from_numpy(self.lut[np.asarray(lab)].astype(np.int64))
        # Stage-1 style target: the image; input: random squares in the centre blanked.
        mask = torch.zeros(1, self.size, self.size, dtype=torch.bool)
        rng = np.random.default_rng(i)
        lo, hi = self.size // 6, self.size * 5 // 6
        for _ in range(20):
            s = int(rng.integers(self.size // 16, self.size // 8 + 1))
            t, left = rng.integers(lo, hi - s, size=2)
            mask[:, t : t + s, left : left + s] = True
        return x.masked_fill(mask, 0.0), x


def naive_rate(
    task: str, steps: int, batch: int, size: int, phases: dict[str, float] | None = None
) -> float:
    """The plain smp loop; fills ``phases`` with mean seconds per step of each phase."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.UnetPlusPlus(
        "mobilenet_v2",
        encoder_weights=None,
        classes=11 if task == "finetune" else 3,
        decoder_channels=(256, 128, 64, 32, 16),
    )
    loader = torch.utils.data.DataLoader(
        _NaiveData(batch * (steps + 3), size, task), batch_size=batch, shuffle=True
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    stamps = []
    acc = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    best = {k: float("inf") for k in acc}
    it = iter(loader)
    for step in range(steps + 3):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        out = model(x)
        loss = (
            torch.nn.functional.cross_entropy(out, y)
            if task == "finetune"
            else torch.nn.functional.mse_loss(out, y)
        )
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        stamps.append(t4)
        if step >= 2:
            for key, dt in zip(acc, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                acc[key] += dt
                best[key] = min(best[key], dt)
    if phases is not None:
        phases.update({k: round(v, 3) for k, v in best.items()})
    return _rate(stamps, batch)


def trainer_style_phases(steps: int, batch: int, size: int) -> dict[str, float]:
    """The trainer's fine-tuning step, phase by phase: its data path (ParsingDataset with
    TrainAugment), channels_last, AdamW, gradient clipping."""
    from torch.utils.data import DataLoader

    from trainer.data.celebamask import CelebAMaskDataset
    from trainer.data.torch_datasets import ParsingDataset
    from trainer.data.transforms import TrainAugment
    from trainer.labels import LAPA
    from trainer.losses import parsing_loss

    torch.manual_seed(0)
    model = build_model(get_preset("lite").with_overrides(input_size=size)).train()
    model = model.to(memory_format=torch.channels_last)
    samples = _Lazy(CelebAMaskDataset(DEV, label_set="lapa"), batch * (steps + 3))
    loader = DataLoader(
        ParsingDataset(samples, size, TrainAugment(size, LAPA)), batch_size=batch, shuffle=True
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    best = {
        "data": float("inf"),
        "forward": float("inf"),
        "backward": float("inf"),
        "optimizer": float("inf"),
    }
    it = iter(loader)
    for step in range(steps + 3):
        t0 = time.perf_counter()
        x, y = next(it)
        x = model.normalize(x).contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        loss = parsing_loss(model(x), y)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t4 = time.perf_counter()
        if step >= 2:
            for key, dt in zip(best, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                best[key] = min(best[key], dt)
    return {k: round(v, 3) for k, v in best.items()}


def bench_train(steps: int, batch: int, size: int, rounds: int = 2) -> dict[str, Any]:
    """Fastest-step images/s of each loop over ``rounds`` alternating runs; every run's fastest
    and mean rates are kept under "detail"."""
    out: dict[str, Any] = {"preset": "lite", "input": size, "batch": batch, "timed_steps": steps}
    runs: list[tuple[str, Callable[[], float]]] = [
        ("pretrain_trainer", lambda: trainer_pretrain_rate(steps, batch, size)),
        (
            "pretrain_trainer_nchw",
            lambda: trainer_pretrain_rate(steps, batch, size, channels_last=False),
        ),
        ("pretrain_naive", lambda: naive_rate("pretrain", steps, batch, size)),
        ("finetune_trainer", lambda: trainer_finetune_rate(steps, batch, size)),
        (
            "finetune_trainer_nchw",
            lambda: trainer_finetune_rate(steps, batch, size, channels_last=False),
        ),
        ("finetune_naive", lambda: naive_rate("finetune", steps, batch, size)),
    ]
    detail: dict[str, list[dict[str, float]]] = {name: [] for name, _ in runs}
    for _ in range(rounds):  # rounds alternate the loops, so each meets the same disturbances
        for name, fn in runs:
            fn()
            detail[name].append(_RATES[-1])
            print(name, _RATES[-1], flush=True)
    for name, rates in detail.items():
        out[f"{name}_img_s"] = max(r["best_img_s"] for r in rates)
    out["detail"] = detail
    for task in ("pretrain", "finetune"):
        out[f"{task}_speedup"] = round(out[f"{task}_trainer_img_s"] / out[f"{task}_naive_img_s"], 2)
    return out


def bench_profile(steps: int, batch: int, size: int) -> dict[str, Any]:
    naive: dict[str, float] = {}
    naive_rate("finetune", steps, batch, size, phases=naive)
    trainer_style = trainer_style_phases(steps, batch, size)
    print("fastest phase times s/step: naive", naive, "trainer-style", trainer_style, flush=True)
    # Top operators of one trainer-style step (forward + backward + AdamW).
    from torch.profiler import ProfilerActivity, profile

    model = build_model(get_preset("lite").with_overrides(input_size=size)).train()
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 11, (batch, size, size))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = [
        {
            "op": e.key,
            "self_ms": round(e.self_cpu_time_total / 1000, 1),
            "share": round(e.self_cpu_time_total / total, 3),
            "calls": e.count,
        }
        for e in events[:12]
    ]
    return {"naive_phases_s": naive, "trainer_phases_s": trainer_style, "top_ops_one_step": top}


# ---------------------------------------------------------------------------------------------
# Compute floor


def count_macs(preset: str, size: int) -> int:
    """Multiply-accumulates of one forward pass at ``size`` px (convolutions and linear layers)."""
    model = build_model(
        get_preset(preset).with_overrides(input_size=size), heads=("parsing",)
    ).eval()
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
        model(torch.zeros(1, 3, size, size))
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
    mm = n**3 / min(_times(lambda: torch.mm(a, b), repeats))
    side = 64  # 64×64 pixels = 4096 rows of the GEMM
    conv = (
        torch.nn.Conv2d(n // 2, n // 2, 1, bias=False).eval().to(memory_format=torch.channels_last)
    )
    x = torch.rand(1, n // 2, side, side).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        gemm = side * side * (n // 2) ** 2 / min(_times(lambda: conv(x), repeats))
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


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--latency-worker":
        preset, size, path, repeats = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        print(json.dumps(latency_worker(preset, size, path, repeats)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="paper,lite,tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=6, help="timed steps (after warm-up)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--train-rounds", type=int, default=2, help="alternating runs of each loop")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the interleaved latency")
    parser.add_argument("--sections", default="latency,interleaved,train,profile,floor")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "speed.json"))
    parser.add_argument("--update", action="store_true", help="keep the other sections of --out")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    presets = args.presets.split(",")
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "command": "bench/bench_speed.py " + " ".join(sys.argv[1:]),
        "load_avg_start": _load(),
    }
    if args.update and Path(args.out).is_file():
        previous = json.loads(Path(args.out).read_text())
        previous.setdefault("updates", []).append(
            {k: result[k] for k in ("date", "command", "load_avg_start")}
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
            args.train_steps, args.train_batch, args.train_size, args.train_rounds
        )
    if "profile" in sections:
        result["profile"] = bench_profile(args.train_steps, args.train_batch, args.train_size)
    if "floor" in sections:
        result["floor"] = bench_floor(
            presets, result.get("latency", []), result.get("train"), result.get("interleaved")
        )
        print(json.dumps(result["floor"], indent=1), flush=True)
    result["load_avg_end"] = _load()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from trainer.data.imageio import atomic_write_bytes

    atomic_write_bytes(out, json.dumps(result, indent=1).encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
