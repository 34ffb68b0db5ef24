"""The paper preset on a GPU (issue 34): pre-label latency and images/s of predict, pretrain and
finetune, in one short script for a lent device (15 minutes in all).

Usage:
    python -m bench.gpu_speed --results "$OUT/gpu_speed.json"          # on the device
    python -m bench.gpu_speed --device cpu --preset tiny --size 64 --photos 4 --steps 2 \\
        --results /tmp/gpu_speed.json                                   # its CPU check

Synthetic inputs (random pixels, random labels): the device machine has no copy of the shared
faces, and speed does not depend on what the pixels show.

  latency    one 512² face through the whole pre-label path (resize, network, logits back to
             512 px, softmax, argmax), ``whole`` framing, after ``--warmup`` calls: fastest and
             median of ``--repeats`` (CUDA synchronised); target ≤ 15 ms on an H100/H200
  predict    photos/s of ``predict_folder`` (1024² JPEGs, ``whole`` framing, readers and writer)
  pretrain   images/s of ``trainer.pretrain.pretrain`` (fastest step after two warm-up steps)
  finetune   images/s of ``trainer.finetune.finetune_on_samples`` (the same)

Each section is written to the results file as soon as it ends, so a run cut short keeps what it
measured.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import argument_parser, command_line, machine, utc_now, write_json


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency(preset: str, size: int, device: str, warmup: int, repeats: int) -> dict[str, Any]:
    from trainer.models import build_model, get_preset
    from trainer.predict import Predictor

    torch.manual_seed(0)
    model = build_model(get_preset(preset).with_overrides(input_size=size), heads=("parsing",))
    predictor = Predictor(model.eval(), device=device, framing="whole")
    face = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    for _ in range(warmup):
        predictor(face)
    times = []
    for _ in range(repeats):
        _sync(predictor.device)
        t0 = time.perf_counter()
        predictor(face)
        _sync(predictor.device)
        times.append(time.perf_counter() - t0)
    return {
        "fastest_s": round(min(times), 5),
        "median_s": round(statistics.median(times), 5),
        "device": str(predictor.device),
    }


def predict_rate(preset: str, size: int, device: str, photos: int, tmp: Path) -> dict[str, Any]:
    from trainer.checkpoint import save_checkpoint
    from trainer.data.imageio import write_image
    from trainer.models import build_model, get_preset
    from trainer.predict import Predictor
    from trainer.predict_folder import predict_folder

    torch.manual_seed(0)
    model = build_model(get_preset(preset).with_overrides(input_size=size), heads=("parsing",))
    ckpt = save_checkpoint(tmp / "parser.safetensors", model.eval(), "finetune")
    rng = np.random.default_rng(1)
    for i in range(photos):
        write_image(tmp / "photos" / f"{i:04d}.jpg", rng.integers(0, 256, (1024, 1024, 3), np.uint8))
    predictor = Predictor.from_checkpoint(ckpt, device=device, framing="whole")
    predict_folder(predictor, tmp / "photos", tmp / "warm")  # warm-up pass (kernels, caches)
    t0 = time.perf_counter()
    n = predict_folder(predictor, tmp / "photos", tmp / "labels")
    seconds = time.perf_counter() - t0
    return {"photos": n, "seconds": round(seconds, 3), "photos_s": round(n / seconds, 2)}


def training_rates(
    preset: str, size: int, device: str, steps: int, batch: int, workers: int, tmp: Path
) -> dict[str, Any]:
    from bench.speed_training import _RATES, trainer_finetune_rate, trainer_pretrain_rate
    from trainer.data.imageio import write_image
    from trainer.data.sample import Sample

    rng = np.random.default_rng(2)
    images = tmp / "faces"
    samples = []
    for i in range(max(2 * batch, 16)):
        image = rng.integers(0, 256, (size, size, 3), np.uint8)
        write_image(images / f"{i:04d}.jpg", image)
        label = rng.integers(0, 11, (size, size), np.uint8)
        samples.append(Sample(image, label, f"{i:04d}", images / f"{i:04d}.jpg", None))
    out: dict[str, Any] = {"batch": batch, "timed_steps": steps, "workers": workers}
    common = {"preset": preset, "device": device, "workers": workers}
    trainer_pretrain_rate(steps, batch, size, **common, images=images)
    out["pretrain"] = _RATES[-1]
    trainer_finetune_rate(steps, batch, size, **common, samples=samples)
    out["finetune"] = _RATES[-1]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, experiment="speed", results="gpu_speed.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--size", type=int, default=512, help="network input side (px)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--photos", type=int, default=200, help="photos for predict")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--batch", type=int, default=16, help="training batch")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers in training")
    parser.add_argument("--sections", default="latency,predict,train")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    result: dict[str, Any] = {
        "date": utc_now(),
        "machine": machine(),
        "command": command_line(__spec__.name, argv),
        "preset": args.preset,
        "input": args.size,
    }

    def save(key: str, value: Any) -> None:
        result[key] = value
        print(key, json.dumps(value), flush=True)
        write_json(args.results, result, result["command"])

    with tempfile.TemporaryDirectory() as tmp:
        if "latency" in sections:
            save("latency", latency(args.preset, args.size, args.device, args.warmup, args.repeats))
        if "predict" in sections:
            save(
                "predict",
                predict_rate(args.preset, args.size, args.device, args.photos, Path(tmp)),
            )
        if "train" in sections:
            save(
                "train",
                training_rates(
                    args.preset, args.size, args.device, args.steps, args.batch, args.workers,
                    Path(tmp),
                ),
            )
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
