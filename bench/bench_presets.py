"""Why the `lite` preset: CPU cost of candidate UNet++ encoders (inference and one training step).

Usage:
    .venv/bin/python -m bench.bench_presets [--encoders mobilenet_v2,resnet18,resnet50] [--repeats 3]

For each encoder: parameters, fp32 weights size, latency of one face at 256 and 512 px input
(torch eager fp32, NCHW and channels_last, inference_mode), and the time of one training step
(forward + backward + AdamW) at 256 px, batch 4; medians after a warm-up call. Writes
bench/results/presets/presets.json with the machine (its CPU ISA included).
"""

from __future__ import annotations

import torch

from bench.harness import argument_parser, command_line, machine, utc_now, write_json
from bench.timing import median_time
from trainer.models import ModelConfig, build_model


def bench_encoder(name: str, repeats: int) -> dict:
    model = build_model(ModelConfig(preset="bench", encoder_name=name)).eval()
    params = sum(p.numel() for p in model.parameters())
    row: dict = {"encoder": name, "params_M": round(params / 1e6, 2), "fp32_MiB": round(params * 4 / 2**20, 1)}
    for size in (256, 512):
        x = torch.rand(1, 3, size, size)
        with torch.inference_mode():
            row[f"infer_{size}_nchw_s"] = round(median_time(lambda m=model, x=x: m(x), repeats), 3)
            cl = model.to(memory_format=torch.channels_last)
            xc = x.contiguous(memory_format=torch.channels_last)
            row[f"infer_{size}_channels_last_s"] = round(median_time(lambda m=cl, x=xc: m(x), repeats), 3)
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

    row["train_step_256_b4_s"] = round(median_time(step, max(1, repeats - 1)), 3)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, experiment="presets", results="presets.json")
    parser.add_argument("--encoders", default="mobilenet_v2,efficientnet-b0,resnet18,resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [bench_encoder(name, args.repeats) for name in args.encoders.split(",")]
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    command = command_line(__spec__.name, argv)
    payload = {"machine": machine(), "date": utc_now(), "command": command, "rows": rows}
    print(f"wrote {write_json(args.results, payload, command)}")


if __name__ == "__main__":
    main()
