"""One fine-tuning probe on the study's data (issue 5 §1: "find out why").

Runs one fine-tune with the study's recipe (``bench.study``: lite, 250 steps of 8, CE + Dice,
warm-up 20 + cosine) and one changed setting, scores its last weights on the study's validation
faces, and appends one JSON line to the results file. Needs the study's data stage
(``python -m bench.study --stop-after data``) and, for ``ssl:``, its stage-1 checkpoints.

Usage:
    .venv/bin/python -m bench.probe_finetune --init scratch --lr 3e-3
    .venv/bin/python -m bench.probe_finetune \
        --init ssl:bench/out/study/pretrain_spark/pretrain_last.safetensors --backbone-lr-mult 0.1
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from bench.harness import (
    append_jsonl,
    argument_parser,
    command_line,
    experiment_of,
    jsonl_record,
    out_dir,
    record_output,
    require,
    results_dir,
    set_threads,
    study_precision,
)
from bench.recipes import STUDY_OUT
from trainer.checkpoint import read_metadata
from trainer.configs import FinetuneConfig, FinetuneData, FinetuneRuntime
from trainer.data.lapa import LapaDataset
from trainer.evaluate import evaluate
from trainer.finetune import finetune_on_samples
from trainer.losses import CLASS_WEIGHTINGS
from trainer.predict import Predictor
from trainer.recipes import finetune_recipe
from trainer.subsets import select_labeled_subset

EXPERIMENT = "probes"
JSONL_NOTE = "one record per probe; each record holds the command that wrote it"


def _fresh_decoder(ssl_path: str, out: Path) -> Path:
    """A copy of a stage-1 checkpoint whose UNet++ decoder is re-initialised (seed 0)."""
    from trainer.checkpoint import load_model, save_checkpoint
    from trainer.models import build_model

    model, ckpt = load_model(ssl_path)
    torch.manual_seed(0)
    fresh = build_model(model.config, heads=tuple(ckpt.heads))
    model.decoder.load_state_dict(fresh.decoder.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    meta = {"step": ckpt.meta.get("step"), "note": f"{ssl_path} with a fresh decoder"}
    return save_checkpoint(out / "encoder_only.safetensors", model, "pretrain", meta)


def main(argv: list[str] | None = None, manifest: bool = True) -> int:
    """Run one probe. ``manifest``: name the results file in its folder's manifest (a driver
    that runs many probes into one file, ``bench.k10_subsets``, names it once itself)."""
    ap = argument_parser(__doc__, threads=True, device="auto")
    ap.add_argument("--init", default="scratch", help="scratch | ssl:<ckpt> | ckpt:<ckpt>")
    ap.add_argument("--name", default=None, help="label of this probe in the results")
    ap.add_argument("--data", default=str(STUDY_OUT / "data"), help="the study's data stage")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--subset-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--backbone-lr-mult", type=float, default=1.0)
    ap.add_argument("--dice-weight", type=float, default=1.0)
    ap.add_argument(
        "--class-weighting",
        choices=CLASS_WEIGHTINGS,
        default="none",
        help="per-class cross-entropy weights from the subset's class frequencies",
    )
    ap.add_argument(
        "--head-only-steps",
        type=int,
        default=0,
        help="train only the FP decoder for the first N steps, the backbone frozen (LP-FT)",
    )
    ap.add_argument(
        "--keep",
        choices=("backbone", "encoder"),
        default="backbone",
        help="ssl: what of the stage-1 network is kept (encoder: the UNet++ decoder starts fresh)",
    )
    ap.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="fine-tuning side in pixels (default: the checkpoint's, or the preset's)",
    )
    ap.add_argument(
        "--extra-val", default=None, help="a second LaPa folder to score on (val split)"
    )
    ap.add_argument(
        "--val-every",
        type=int,
        default=0,
        help="also score the validation faces every N epochs during the run (0: only the end);"
        " the curve goes into the record's history",
    )
    ap.add_argument(
        "--precision",
        choices=("study", "auto", "fp32", "bf16"),
        default="study",
        help="the fine-tune's arithmetic (study: float32 on a CPU, bf16 autocast on CUDA, as "
        "every recorded run)",
    )
    ap.add_argument(
        "--out-dir",
        "--out",
        dest="out",
        default=None,
        help="run folder (default bench/out/probes/<name>)",
    )
    ap.add_argument(
        "--results",
        default=str(results_dir(EXPERIMENT) / "probes.jsonl"),
        help="JSON-lines file the probe's record is appended to (default %(default)s)",
    )
    ap.add_argument(
        "--experiment",
        default=None,
        help="the experiment each record names (default: the --results folder under "
        f"bench/results, else {EXPERIMENT})",
    )
    args = ap.parse_args(argv)
    set_threads(args.threads)
    require(
        Path(args.data) / "train",
        "the study's data stage (python -m bench.study --stop-after data)",
    )
    name = (
        args.name
        or f"{args.init.split(':')[0]}_K{args.k}_lr{args.lr:g}_bb{args.backbone_lr_mult:g}"
    )
    out = Path(args.out or out_dir(EXPERIMENT) / name)
    init = args.init
    if args.keep == "encoder":
        init = f"ssl:{_fresh_decoder(args.init.partition(':')[2], out)}"
    pool = LapaDataset(args.data, split="train")
    val = LapaDataset(args.data, split="val")
    chosen = select_labeled_subset(pool.names, num_labeled=args.k, seed=args.subset_seed)
    recipe = finetune_recipe(
        "study",
        max_steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        backbone_lr_mult=args.backbone_lr_mult,
        dice_weight=args.dice_weight,
        class_weighting=args.class_weighting,
        head_only_steps=args.head_only_steps,
    )
    config = FinetuneConfig(
        FinetuneRuntime(
            out_dir=str(out), val_every=max(1, args.val_every), device=args.device,
            progress_bar=False, precision=study_precision(args.device, args.precision),
        ),
        init=init,
        preset="lite",
        input_size=args.input_size,
        recipe=recipe,
        data=FinetuneData(
            num_labeled=args.k,
            subset_seed=args.subset_seed,
            val_split=None,
            framing="whole",  # aligned CelebAMask-HQ crops, as the recorded results
        ),
    )  # fmt: skip
    t0 = time.perf_counter()
    result = finetune_on_samples(config, pool.select(chosen), val if args.val_every > 0 else None)
    train_s = time.perf_counter() - t0
    predictor = Predictor.from_checkpoint(result.last_path, device=args.device, framing="whole")
    # With --val-every the run already scored its last weights (kept in the checkpoint).
    scores = read_metadata(result.last_path).get("metrics") or evaluate(
        predictor, val, batch_size=8
    )
    record = {
        "init": args.init,
        "keep": args.keep,
        "k": args.k,
        "subset_seed": args.subset_seed,
        "steps": args.steps,
        "lr": args.lr,
        "backbone_lr_mult": args.backbone_lr_mult,
        "dice_weight": args.dice_weight,
        "class_weighting": args.class_weighting,
        "head_only_steps": args.head_only_steps,
        "input_size": predictor.input_size,
        "mean_f1": scores["mean_f1"],
        "miou": scores["miou"],
        "f1": {c: s["f1"] for c, s in scores["per_class"].items()},
        "train_seconds": round(train_s, 1),
        "checkpoint": str(result.last_path),
    }
    if args.val_every > 0:
        record["val_every"] = args.val_every
        record["history"] = result.history
    if args.extra_val:
        extra = evaluate(predictor, LapaDataset(args.extra_val, split="val"), batch_size=8)
        record["extra_val"] = {
            "data": args.extra_val,
            "mean_f1": extra["mean_f1"],
            "miou": extra["miou"],
        }
    results = Path(args.results)
    command = command_line(__spec__.name, argv)
    # One line per probe; probes side by side append whole lines.
    experiment = args.experiment or experiment_of(results, EXPERIMENT)
    append_jsonl(results, jsonl_record(experiment, name, record, command))
    if manifest:
        record_output(results, command, note=JSONL_NOTE)
    print(
        f"{name}: mean F1 {100 * (scores['mean_f1'] or 0):.1f}  mIoU {100 * (scores['miou'] or 0):.1f}"
        f"  ({train_s:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
