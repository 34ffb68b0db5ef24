"""Why the `lite` preset: CPU cost of candidate UNet++ encoders (inference and one training step).

Usage:
    .venv/bin/python bench/bench_presets.py [--encoders mobilenet_v2,resnet18,resnet50] [--repeats 3]

For each encoder: parameters, fp32 weights size, latency of one face at 256 and 512 px input
(torch eager fp32, NCHW and channels_last, inference_mode), and the time of one training step
(forward + backward + AdamW) at 256 px, batch 4. Writes bench/out/presets.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from trainer.models import ModelConfig, build_model


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN primitive caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_encoder(name: str, repeats: int) -> dict:
    model = build_model(ModelConfig(preset="bench", encoder_name=name)).eval()
    params = sum(p.numel() for p in model.parameters())
    row: dict = {"encoder": name, "params_M": round(params / 1e6, 2), "fp32_MiB": round(params * 4 / 2**20, 1)}
    for size in (256, 512):
        x = torch.rand(1, 3, size, size)
        with torch.inference_mode():
            row[f"infer_{size}_nchw_s"] = round(_time(lambda m=model, x=x: m(x), repeats), 3)
            cl = model.to(memory_format=torch.channels_last)
            xc = x.contiguous(memory_format=torch.channels_last)
            row[f"infer_{size}_channels_last_s"] = round(_time(lambda m=cl, x=xc: m(x), repeats), 3)
            model = model.to(memory_format=torch.contiguous_format)
    model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    xb = torch.rand(4, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    yb = torch.randint(0, 11, (4, 256, 256))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()

    row["train_step_256_b4_s"] = round(_time(step, max(1, repeats - 1)), 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="mobilenet_v2,efficientnet-b0,resnet18,resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/out/presets.json")
    args = parser.parse_args()
    rows = [bench_encoder(name, args.repeats) for name in args.encoders.split(",")]
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
