"""Does a longer stage 1 make the masked-SSL start pay off? (issue 5 §1, "stage-1 length")

The CPU study's stage 1 is 10 epochs over 793 photos (990 steps of 8), and its SSL backbone
trailed scratch. This runs the same stage-1 recipe (lite, 256 px, spark, batch 8, lr 1e-3) for as
long as ``--pretrain-seconds`` allows: first the CPU study's 10 epochs, then one longer complete
schedule sized from that run's speed. Then it fine-tunes K faces from both and from scratch with
the study's own recipe (``bench.recipes.steps_for``, batch 8, lr 1e-2, CE + Dice, last weights scored on
the 100 validation faces). Only the stage-1 length differs between the SSL arms.

Meant for a lent GPU (``bash bench/study_gpu.sh length``), where 10 CPU epochs take seconds; it runs
anywhere, and ``--quick`` checks the pipeline on a CPU in a minute or two. Every finished run is
written to the results file at once, so a run cut off by its time limit still reports.

Usage:
    .venv/bin/python -m bench.ssl_length --quick
    python3 -m bench.ssl_length --out-dir bench/out/gpu-carry/study --unlabeled DIR --device cuda \\
        --pretrain-seconds 240 --results $OUT/ssl_length
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.faces import prepare_data, validation_faces
from bench.finetunes import Arm, run_finetune
from bench.harness import (
    SHARED,
    argument_parser,
    command_line,
    machine,
    out_dir,
    read_jsonl,
    results_dir,
    setup_logging,
    study_precision,
    utc_now,
)
from bench.recipes import QUICK, StudySettings, recipe_options
from bench.stage1 import is_finished
from bench.study_results import write_results
from trainer.checkpoint import read_metadata
from trainer.configs import PretrainConfig, PretrainRuntime, stored_config
from trainer.data.lapa import LapaDataset
from trainer.errors import FaceParseError
from trainer.pretrain import pretrain
from trainer.recipes import pretrain_recipe
from trainer.run_files import RunFiles

log = logging.getLogger("ssl_length")
RECIPE = "spark"  # the better recipe of the CPU study (K = 10: 65.6 vs 57.4 mean F1)


def run_stage1(
    out: Path,
    settings: StudySettings,
    unlabeled: Path,
    epochs: int,
    seconds: float,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """One complete stage-1 schedule of ``epochs`` (warm-up + cosine to zero, as on the CPU);
    cancelled if it runs past ``seconds`` (then recorded as cut short)."""
    stage_dir = out / f"ssl_length_e{epochs}"
    dirs = (out / "data" / "train" / "images", unlabeled)
    recipe = pretrain_recipe(
        RECIPE,
        epochs=epochs,
        batch_size=settings.pretrain_batch,
        lr=settings.pretrain_lr,
        seed=0,
        max_steps=max_steps,
        mask_ratio=recipe_options(RECIPE, settings)["mask_ratio"],
    )
    config = PretrainConfig(
        image_dirs=tuple(str(d) for d in dirs),
        runtime=PretrainRuntime(
            out_dir=str(stage_dir),
            num_workers=settings.num_workers,
            device=settings.device,
            precision=study_precision(settings.device),
        ),
        preset=settings.preset,
        input_size=settings.input_size,
        recipe=recipe,
    )
    final = RunFiles(stage_dir, "pretrain").last
    if _finished_with(final, config):
        # A finished schedule with these settings (a rerun adds fine-tunes): reuse it.
        log.info("stage 1, %d epochs: reusing %s", epochs, final)
        elapsed = _logged_seconds(stage_dir)
    else:
        cancel = threading.Event()
        t0 = time.perf_counter()

        def on_progress(stats: dict[str, Any]) -> None:
            if time.perf_counter() - t0 > seconds:
                cancel.set()

        final = pretrain(config, on_progress=on_progress, cancel=cancel)
        elapsed = time.perf_counter() - t0
    meta = read_metadata(final)
    steps = int(meta["step"])
    result = {
        "recipe": RECIPE,
        **recipe_options(RECIPE, settings),
        "config": config.flat(),
        "images": meta.get("num_images"),
        "epochs_planned": epochs,
        "steps": steps,
        "total_steps": meta.get("total_steps"),
        "cut_short": bool(meta.get("cancelled")),
        "seconds": round(elapsed, 1),
        "images_per_s": round(steps * settings.pretrain_batch / elapsed, 1),
        "masked_share_of_center": meta.get("masked_share"),
        "final_loss": (meta.get("metrics") or {}).get("loss"),
        "checkpoint": str(final),
    }
    log.info(
        "stage 1, %d epochs: %d of %s steps in %.0f s, %.0f img/s, final loss %.4f",
        epochs,
        steps,
        result["total_steps"],
        elapsed,
        result["images_per_s"],
        result["final_loss"] or float("nan"),
    )
    return result


def _finished_with(path: Path, config: PretrainConfig) -> bool:
    """Whether ``path`` is a complete, uncancelled stage-1 run of exactly ``config``."""
    if not path.is_file() or not is_finished(path):
        return False
    try:
        stored = stored_config(read_metadata(path))
    except FaceParseError:
        return False
    return _same_paths(stored.flat()) == _same_paths(config.flat())


def _same_paths(training: dict[str, Any]) -> dict[str, Any]:
    """A stage-1 config as JSON with its folders made absolute (a run may name them relatively)."""
    out = json.loads(json.dumps(training))
    out["image_dirs"] = [str(Path(d).resolve()) for d in out.get("image_dirs", [])]
    out["out_dir"] = str(Path(out.get("out_dir", "")).resolve())
    return out


def _logged_seconds(stage_dir: Path) -> float:
    """Training time of a finished run, from the last line of its step log."""
    rows = read_jsonl(RunFiles(stage_dir, "pretrain").find_log())
    return float(rows[-1]["time"]) if rows else float("nan")


def plan(
    stage1: list[dict[str, Any]], ks: list[int], scratch: bool = True, seeds: int = 2
) -> list[tuple[Arm, int, int]]:
    """Fine-tunes in priority order: every arm at each K (scratch, longest stage 1, shorter
    ones), then ``seeds`` more subset seeds at the first K for scratch and the longest stage 1."""
    ssl = [
        Arm(f"ssl-e{r['epochs_planned']}", f"ssl:{r['checkpoint']}")
        for r in sorted(stage1, key=lambda r: -r["epochs_planned"])
    ]
    arms = [Arm("scratch", "scratch")] * scratch + ssl
    jobs = [(a, k, 0) for k in ks for a in arms]
    jobs += [(a, ks[0], seed) for seed in range(1, seeds + 1) for a in arms[: 1 + scratch]]
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        __doc__,
        experiment="ssl_length",
        out="",
        results="",
        device="auto",
        quick="tiny budgets: checks the pipeline",
    )
    parser.add_argument("--data", default=str(SHARED / "celebamask-hq-dev"))
    parser.add_argument("--unlabeled", default=str(SHARED / "faces-unlabeled"))
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (stage 1)")
    parser.add_argument("--finetune-workers", type=int, default=0)
    parser.add_argument(
        "--pretrain-seconds", type=float, default=240.0, help="stage-1 budget, both schedules"
    )
    parser.add_argument("--short-epochs", type=int, default=10, help="the CPU study's length")
    parser.add_argument("--max-epochs", type=int, default=400, help="cap of the long schedule")
    parser.add_argument(
        "--long-epochs", type=int, default=None, help="fixed long schedule (default: budget)"
    )
    parser.add_argument(
        "--no-scratch", action="store_true", help="skip the scratch arm (e.g. the study has it)"
    )
    parser.add_argument("--seed-repeats", type=int, default=2, help="extra subset seeds at K[0]")
    parser.add_argument("--ks", default="10,50")
    args = parser.parse_args(argv)
    setup_logging()
    base = QUICK if args.quick else StudySettings()
    settings = replace(
        base,
        device=args.device,
        num_workers=args.num_workers,
        finetune_workers=args.finetune_workers,
    )
    suffix = "_quick" if args.quick else ""
    # Absolute, like the study's own default: the cache keys hold paths, so a run shares the
    # study's cached fine-tunes (scratch) only when both name the folder the same way.
    out = Path(args.out or out_dir(f"ssl-length{suffix.replace('_', '-')}")).resolve()
    results = Path(args.results or results_dir("ssl_length") / f"ssl_length{suffix}")
    ks = [int(k) for k in args.ks.split(",")]
    t0 = time.perf_counter()

    prepare_data(Path(args.data), out, settings)
    quick_steps = 4 if args.quick else None
    unlabeled = Path(args.unlabeled)
    stage1, left, long_epochs = [], args.pretrain_seconds, args.long_epochs
    if args.short_epochs:
        short = run_stage1(out, settings, unlabeled, args.short_epochs, left, quick_steps)
        stage1.append(short)
        left -= short["seconds"]
        if long_epochs is None:
            # The long schedule gets what the budget has left, sized from the short run's speed
            # so that it completes (a schedule cut short stops at a high learning rate).
            epochs_done = short["steps"] * args.short_epochs / max(1, short["total_steps"] or 1)
            per_epoch_s = short["seconds"] / max(epochs_done, 1e-9)
            long_epochs = min(args.max_epochs, int(0.85 * left / per_epoch_s))
    if args.quick:
        long_epochs = args.short_epochs * 2
    if long_epochs and long_epochs > args.short_epochs:
        stage1.append(
            run_stage1(out, settings, unlabeled, long_epochs, left + 60, quick_steps and 8)
        )
    pool = LapaDataset(out / "data", split="train")
    val = validation_faces(out / "data", settings.val_limit)
    runs = []
    for arm, k, seed in plan(stage1, ks, not args.no_scratch, args.seed_repeats):
        record = run_finetune(arm, k, seed, out, settings, pool, val)
        runs.append({k_: v for k_, v in record.items() if k_ != "settings"})
        payload = {
            "study": "stage-1 length vs the SSL gain, issue 5 §1",
            "date": utc_now(),
            "machine": machine(),
            "command": command_line(__spec__.name, argv),
            "settings": asdict(settings),
            "stage1": stage1,
            "runs": runs,
            "seconds_so_far": round(time.perf_counter() - t0, 1),
        }
        write_results(results, payload)
    for r in runs:
        f1, iou = r["mean_f1"], r["miou"]
        print(
            f"{r['arm']:>12} K={r['k']:<3} seed {r['seed']}: mean F1 "
            f"{100 * (f1 if f1 is not None and not math.isnan(f1) else 0):.1f}  "
            f"mIoU {100 * (iou or 0):.1f}"
        )
    print(f"results: {results.with_suffix('.json')}")
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
