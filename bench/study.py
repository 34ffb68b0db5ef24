"""Label-efficiency study on real faces (issue 5 §1): masked-SSL backbone vs scratch (vs ImageNet).

One command runs every stage; each stage leaves a ``done.json`` marker holding its result and the
settings it ran with, so a rerun skips finished stages and resumes stage-1 pretraining from its
latest periodic checkpoint. A stage whose settings changed is run again.

Stages:
  1. data: ``celebamask-hq-dev`` → LaPa classes in ``<out>/data`` (``train/`` = the 600-face pool,
     ``val/`` = 100 faces, seeded split). Masks whose eyes/brows are already on the viewer's side
     (mirrored faces whose left/right classes were never swapped; 50 of 700) are detected by the
     mean x of the eye and brow classes after conversion and *fixed* by swapping LaPa 2↔3, 4↔5;
     masks with only one side visible have no evidence either way and are kept as converted.
  2. pretrain/<recipe>: stage 1 on the pool's images + ``faces-unlabeled``; recipes ``center``
     (the paper: loss over the central region, 40 % of it masked) and ``spark`` (loss on masked
     pixels only, per-patch normalised targets, 60 % masked; ``--spark-mask-ratio`` for
     another share).
  3. finetune/<arm>_K<k>_s<seed>: one identical recipe for every initialisation (same steps,
     batch, learning rates, loss, augmentation); the labeled subset comes from
     ``select_labeled_subset`` (nested in K, the same for every arm). The run's *last* weights are
     scored on the validation set (no checkpoint selection on the set that is reported).

Results: ``<results>/study[_quick].json`` (every run, per-class scores, timings, settings) and
``study[_quick].csv``; a summary table is printed at the end.

Every arm holds its backbone for the first 100 fine-tuning steps (only the new FP decoder
trains; LP-FT), the recipe under which the 80-epoch SSL start did best on every subset probed;
one reference arm, scratch without the hold (its better recipe), runs at the first headline K.

Budget (CPU default): stage 1 = 40 epochs at 128 px over 793 faces per recipe (3,960 steps of 8,
AdamW 3e-3; a 128-px step costs ~42% of a 256-px one here, so this is ~1.6x the cost of 10 epochs
at 256 px), each fine-tune = 500 steps of 8 at 256 px, 250 at K = 5, 750 at K = 600; 19 fine-tunes,
8,500 steps (1,800 of them held: no backward pass through the backbone). On this 2-core machine
``--processes 2`` (one-thread processes side by side: the two stage-1 recipes, then two
fine-tune shards balanced by steps) takes ~50 min for stage 1 and ~1 h 50 min for the
fine-tunes (BENCHMARKS.md has the measured times).

Usage:
    .venv/bin/python -m bench.study --quick              # minutes: checks the pipeline
    .venv/bin/python -m bench.study --processes 2        # the CPU study on 2 cores
    .venv/bin/python -m bench.study --imagenet-weights mobilenet_v2.pth   # adds the ImageNet arm
    .venv/bin/python -m bench.study --pretrain-input-size 0 --pretrain-epochs 10 \
        --pretrain-lr 1e-3                  # the earlier stage 1 (10 epochs at 256 px, 1e-3)
    .venv/bin/python -m bench.study --head-only-steps 0 --finetune-steps 250 \
        --steps-for-k 25:500,50:500,100:500,600:750   # the earlier fine-tune recipe (no hold)
    .venv/bin/python -m bench.study --reuse-scratch bench/results/study/study.json   # another stage 1:
        # take the scratch arms (which do not depend on it) from an earlier results file
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from bench.faces import prepare_data, validation_faces
from bench.finetunes import (
    build_arms,
    finetune_stage,
    reuse_scratch,
    run_finetune,
    schedule,
    shard_jobs,
)
from bench.harness import (
    SHARED,
    argument_parser,
    child_env,
    command_line,
    machine,
    module_command,
    out_dir,
    results_dir,
    setup_logging,
    utc_now,
)
from bench.recipes import QUICK, StudySettings, recipe_options
from bench.stage1 import run_pretrain
from bench.study_results import format_summary, summarize, write_results
from trainer.data.lapa import LapaDataset
from trainer.recipes import AUGMENTS, PRETRAIN_RECIPES

log = logging.getLogger("study")


def _ints(text: str | None) -> tuple[int, ...] | None:
    """ "10,50" → (10, 50); None or "" → None (the setting's default)."""
    return tuple(int(t) for t in text.split(",")) if text else None


def _pairs(text: str) -> tuple[tuple[int, int], ...]:
    """ "50:500,600:750" → ((50, 500), (600, 750)); "" → ()."""
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        k, _, steps = item.partition(":")
        if not (k.isdigit() and steps.isdigit()):
            raise SystemExit(f"--steps-for-k: {item!r} is not K:steps (e.g. 50:500)")
        pairs.append((int(k), int(steps)))
    return tuple(pairs)


def _shard(text: str) -> tuple[int, int]:
    """ "1/2" → (1, 2)."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise SystemExit(f"--shard: {text!r} is not I/N with 0 <= I < N (e.g. 0/2)")
    return int(index), int(count)


def _run_side_by_side(commands: list[list[str]]) -> None:
    """Run this script once per argument list, all at once, one torch thread each."""
    env = child_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen(module_command(__spec__.name, cmd), env=env) for cmd in commands]
    codes = [proc.wait() for proc in procs]
    if any(codes):
        raise SystemExit(
            f"study: a child process failed (exit codes {codes}); what finished is cached, "
            "the same command resumes"
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    return run(parser, args, argv)


def build_parser() -> argparse.ArgumentParser:
    """The study's options (each overrides one ``StudySettings`` field when given)."""
    parser = argument_parser(
        __doc__,
        experiment="study",
        out="",
        results="",
        quick="tiny budgets: checks the pipeline in minutes",
    )
    parser.add_argument("--data", default=str(SHARED / "celebamask-hq-dev"))
    parser.add_argument("--unlabeled", default=str(SHARED / "faces-unlabeled"))
    parser.add_argument("--preset", default=None)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument(
        "--pretrain-input-size",
        type=int,
        default=None,
        help="stage 1's side alone (pixels; 0 = the fine-tune's side)",
    )
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--num-workers", type=int, default=None, help="DataLoader workers (stage 1)"
    )
    parser.add_argument(
        "--finetune-workers", type=int, default=None, help="DataLoader workers (stage 2)"
    )
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--pretrain-batch", type=int, default=None)
    parser.add_argument("--pretrain-lr", type=float, default=None, help="stage 1's AdamW rate")
    parser.add_argument(
        "--spark-mask-ratio",
        type=float,
        default=None,
        help="share of the central region the spark recipe masks (default 0.6)",
    )
    parser.add_argument(
        "--pretrain-augment",
        choices=AUGMENTS,
        default=None,
        help="stage 1's augmentation: flip (default) or affine (the fine-tune's flip, scale, "
        "rotation, shift and colour jitter)",
    )
    parser.add_argument(
        "--pretrain-finish-epochs",
        type=int,
        default=None,
        help="more stage-1 epochs at the fine-tune's side after those at --pretrain-input-size "
        "(from its weights, a schedule of their own; default 0 = none)",
    )
    parser.add_argument(
        "--pretrain-finish-lr", type=float, default=None, help="their AdamW rate (default 1e-3)"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="stage-1 resume checkpoint period (steps)",
    )
    parser.add_argument("--finetune-steps", type=int, default=None)
    parser.add_argument(
        "--steps-for-k",
        default=None,
        help="K:steps pairs with their own fine-tune length, e.g. 50:500,600:750 ('' = none)",
    )
    parser.add_argument("--finetune-batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--dice-weight", type=float, default=None)
    parser.add_argument(
        "--pretrained-lr-mult",
        type=float,
        default=None,
        help="backbone lr multiplier for pretrained arms",
    )
    parser.add_argument(
        "--head-only-steps",
        type=int,
        default=None,
        help="first fine-tuning steps that train only the FP decoder (every arm)",
    )
    parser.add_argument(
        "--recipes", default=None, help="comma list of stage-1 recipes: center,spark"
    )
    parser.add_argument("--ks", default=None, help="comma list of K values")
    parser.add_argument(
        "--seeds", default=None, help="comma list of subset seeds repeated at the smallest K"
    )
    parser.add_argument("--recipe-ks", default=None, help="K values for the second recipe/ImageNet")
    parser.add_argument(
        "--imagenet-weights", default=None, help="local encoder weights file: adds the ImageNet arm"
    )
    parser.add_argument(
        "--stop-after", choices=("data", "pretrain", "finetune"), default="finetune"
    )
    parser.add_argument(
        "--reuse-scratch",
        default=None,
        help="an earlier study's results .json: take its scratch fine-tunes (same fine-tune "
        "settings; scratch does not depend on stage 1) instead of training them again",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run stage 1's recipes and the fine-tunes in N one-thread processes side by side "
        "(2 on a 2-core CPU), then write the results",
    )
    parser.add_argument(
        "--shard",
        default=None,
        help="I/N: run only every N-th fine-tune from the I-th (0-based), e.g. two one-thread "
        "processes 0/2 and 1/2, after a run with --stop-after pretrain; results are written by "
        "a later run without --shard",
    )
    return parser


def run(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None) -> int:
    """Every stage the settings ask for, then the results file (after every fine-tune)."""
    settings = QUICK if args.quick else StudySettings()
    overrides = {
        "preset": args.preset,
        "input_size": args.input_size,
        "pretrain_input_size": args.pretrain_input_size,
        "device": args.device,
        "num_workers": args.num_workers,
        "finetune_workers": args.finetune_workers,
        "pretrain_epochs": args.pretrain_epochs,
        "pretrain_batch": args.pretrain_batch,
        "pretrain_lr": args.pretrain_lr,
        "spark_mask_ratio": args.spark_mask_ratio,
        "pretrain_augment": args.pretrain_augment,
        "pretrain_finish_epochs": args.pretrain_finish_epochs,
        "pretrain_finish_lr": args.pretrain_finish_lr,
        "checkpoint_every": args.checkpoint_every,
        "finetune_steps": args.finetune_steps,
        "finetune_batch": args.finetune_batch,
        "lr": args.lr,
        "dice_weight": args.dice_weight,
        "pretrained_lr_mult": args.pretrained_lr_mult,
        "head_only_steps": args.head_only_steps,
        "imagenet_weights": args.imagenet_weights,
        "recipes": tuple(args.recipes.split(",")) if args.recipes else None,
        "ks": _ints(args.ks),
        "seeds": _ints(args.seeds),
        "recipe_ks": _ints(args.recipe_ks),
        "steps_for_k": _pairs(args.steps_for_k) if args.steps_for_k is not None else None,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if args.pretrain_input_size == 0:
        settings = replace(settings, pretrain_input_size=None)
    unknown = [r for r in settings.recipes if r not in PRETRAIN_RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {sorted(PRETRAIN_RECIPES)}")
    suffix = "-quick" if args.quick else ""
    out = Path(args.out or out_dir(f"study{suffix}"))
    results = Path(args.results or results_dir("study") / f"study{suffix.replace('-', '_')}")
    t0 = time.perf_counter()

    data = prepare_data(Path(args.data), out, settings)
    if args.stop_after == "data":
        return 0
    if args.processes > 1 and not args.shard:
        own = [*(sys.argv[1:] if argv is None else argv), "--processes", "1"]  # last one wins
        recipes = list(settings.recipes)
        for i in range(0, len(recipes), args.processes):
            batch = recipes[i : i + args.processes]
            _run_side_by_side([[*own, "--recipes", r, "--stop-after", "pretrain"] for r in batch])
        if args.stop_after != "pretrain":
            n = args.processes
            _run_side_by_side([[*own, "--shard", f"{i}/{n}"] for i in range(n)])
        # Everything below now resolves from the children's done markers.
    pretrained = {r: run_pretrain(r, out, settings, Path(args.unlabeled)) for r in settings.recipes}
    if args.stop_after == "pretrain":
        return 0
    pool = LapaDataset(out / "data", split="train")
    val = validation_faces(out / "data", settings.val_limit)
    arms = build_arms(settings, pretrained)
    jobs = schedule(arms, settings)
    if args.reuse_scratch:
        n = reuse_scratch(Path(args.reuse_scratch), jobs, out, settings, pool)
        log.info("reused %d scratch fine-tunes from %s", n, args.reuse_scratch)
    if args.shard:
        index, count = _shard(args.shard)
        pending = [j for j in jobs if finetune_stage(*j, out, settings, pool).done() is None]
        for arm, k, seed in shard_jobs(pending, index, count, settings):
            run_finetune(arm, k, seed, out, settings, pool, val)
        log.info("shard %s done; rerun without --shard to write the results", args.shard)
        return 0
    runs = []
    for arm, k, seed in jobs:
        runs.append(run_finetune(arm, k, seed, out, settings, pool, val))
        summary = summarize(runs, settings)
        payload = {
            "study": "label efficiency, issue 5 §1",
            "date": utc_now(),
            "machine": machine(),
            "command": command_line(__spec__.name, argv),
            "settings": asdict(settings),
            "recipes": {r: recipe_options(r, settings) for r in settings.recipes},
            "data": {k: v for k, v in data.items() if k != "settings"},
            "pretrain": {
                r: {k: v for k, v in p.items() if k != "settings"} for r, p in pretrained.items()
            },
            "runs": [{k: v for k, v in r.items() if k != "settings"} for r in runs],
            "summary": summary,
            "seconds_this_invocation": round(time.perf_counter() - t0, 1),
        }
        write_results(results, payload)
    print(format_summary(summarize(runs, settings), pretrained))
    print(f"results: {results.with_suffix('.json')}, {results.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
