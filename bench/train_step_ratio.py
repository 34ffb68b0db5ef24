"""The trainer's training step against the plain smp loop's, interleaved step by step in one
process (issue 34): a ratio that survives a busy shared machine.

Usage:
    python -m bench.train_step_ratio [--steps 4] [--batch 8] [--size 256]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python -m bench.train_step_ratio            # an AVX2-only host, emulated

Compute only (no data loading): the same random batch through

  trainer  the trainer's step: ``build_model`` (lite), channels_last, AdamW, gradient clipping,
           the parsing loss (finetune) or masked-pixel MSE (pretrain's reconstruction head),
           in the precision the trainer takes on this host (``--precision auto``: bf16 mixed
           precision where its one-time check measures it faster, see ``trainer.precision``)
  plain    the plainest smp loop: ``smp.UnetPlusPlus`` (mobilenet_v2, the same decoder), NCHW,
           Adam, cross-entropy (finetune) or MSE (pretrain)

each step of one followed by a step of the other, ``--steps`` timed steps each after one
warm-up; the fastest step of each (the least disturbed). ``bench.bench_speed``'s ``train``
section times the whole runs with data loading; this is its load-proof core.

The ceiling (per task): a training step's multiply-accumulates (three forward passes' worth:
forward, input and weight gradients) per second, for each loop, against the floor measured in
the same process with the same threads and ISA (``bench.bench_speed.matmul_rates``: the faster of
a large matrix product and a large 1×1 convolution). ``max_speedup`` = floor rate / plain rate:
no loop doing the same arithmetic can beat the plain one by more on this host, whatever it does.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import torch

from bench.harness import argument_parser, command_line, machine, utc_now, write_json


def _steps(task: str, batch: int, size: int, precision: str = "fp32") -> dict[str, Any]:
    import segmentation_models_pytorch as smp

    from trainer.losses import parsing_loss
    from trainer.models import build_model, get_preset

    torch.manual_seed(0)
    head = "parsing" if task == "finetune" else "reconstruction"
    ours = build_model(get_preset("lite").with_overrides(input_size=size), heads=(head,)).train()
    ours = ours.to(memory_format=torch.channels_last)
    plain = smp.UnetPlusPlus(
        "mobilenet_v2",
        encoder_weights=None,
        classes=11 if task == "finetune" else 3,
        decoder_channels=(256, 128, 64, 32, 16),
    ).train()
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 11, (batch, size, size)) if task == "finetune" else torch.rand_like(x)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-3)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-3)

    from trainer.precision import autocast

    def trainer_step() -> None:
        with autocast("cpu", precision):
            out = ours(x_cl, head=head).float()
        loss = parsing_loss(out, y) if task == "finetune" else torch.nn.functional.mse_loss(out, y)
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        opt_ours.step()

    def plain_step() -> None:
        out = plain(x)
        if task == "finetune":
            loss = torch.nn.functional.cross_entropy(out, y)
        else:
            loss = torch.nn.functional.mse_loss(out, y)
        opt_plain.zero_grad()
        loss.backward()
        opt_plain.step()

    return {"trainer": trainer_step, "plain": plain_step}


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, experiment="speed", results="")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tasks", default="finetune,pretrain")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="the trainer's arithmetic (auto: what the trainer chooses on this host)",
    )
    args = parser.parse_args(argv)
    from trainer.precision import choose_precision

    choice = choose_precision(args.precision, "cpu")
    result: dict[str, Any] = {
        "date": utc_now(),
        "machine": machine(),
        "command": command_line(__spec__.name, argv),
        "batch": args.batch,
        "input": args.size,
        "precision": choice.as_meta(),
        "isa_caps": {
            k: os.environ.get(k)
            for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
        },
    }
    from bench.bench_speed import count_macs, matmul_rates

    rates = matmul_rates()
    floor = max(rates.values())
    result["floor"] = {**rates, "threads": torch.get_num_threads()}
    for task in args.tasks.split(","):
        head = "parsing" if task == "finetune" else "reconstruction"
        train_gmacs = 3 * count_macs("lite", args.size, head) / 1e9  # a forward, two gradients
        steps = _steps(task, args.batch, args.size, choice.precision)
        best = {name: float("inf") for name in steps}
        times: dict[str, list[float]] = {name: [] for name in steps}
        for i in range(args.steps + 1):
            for name, step in steps.items():
                t0 = time.perf_counter()
                step()
                if i:  # the first step of each is its warm-up
                    times[name].append(round(time.perf_counter() - t0, 3))
                    best[name] = min(best[name], times[name][-1])
        result[task] = {
            "trainer_img_s": round(args.batch / best["trainer"], 3),
            "plain_img_s": round(args.batch / best["plain"], 3),
            "speedup": round(best["plain"] / best["trainer"], 2),
            # Step by step: each trainer step beside the plain step that followed it.
            "speedup_by_step": [
                round(p / t, 2) for t, p in zip(times["trainer"], times["plain"], strict=True)
            ],
            "step_s": times,
        }
        trainer_rate = train_gmacs * args.batch / best["trainer"]
        plain_rate = train_gmacs * args.batch / best["plain"]
        result[task]["ceiling"] = {
            "train_gmacs_per_image": round(train_gmacs, 2),
            "trainer_gmac_s": round(trainer_rate, 1),
            "plain_gmac_s": round(plain_rate, 1),
            "floor_gmac_s": floor,
            "trainer_of_floor": round(trainer_rate / floor, 2),
            "max_speedup": round(floor / plain_rate, 2),
        }
        print(task, result[task], flush=True)
    result["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    isa = "avx2" if result["isa_caps"]["ONEDNN_MAX_CPU_ISA"] else "native"
    suffix = "_bf16" if choice.precision == "bf16" else ""
    path = args.results or f"bench/results/speed/train_step_ratio_{isa}{suffix}.json"
    print(f"wrote {write_json(path, result, result['command'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
