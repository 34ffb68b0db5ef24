"""SparK's sparse stage 1 (issue 33): its cost against ``spark``, and the study from it.

``speed`` times stage 1 (``trainer.pretrain`` itself: data loading, masking, forward, backward,
step) of each recipe on the study's photos, in alternating rounds, in one process on one thread,
and reports images per second of wall time and of CPU time (the CPU time of a one-thread run is
what a shared machine inflates least).

``chain`` runs the study from a sparse stage 1, one cached step after another, so that the same
command run again resumes where it stopped: stage 1 (``bench.stage1``: done marker, periodic
checkpoints), then the study's K = 10 fine-tune on subsets (``bench.k10_subsets``, the SSL arm
only: it pairs with the scratch runs already recorded), the same with the stage-1 decoder
discarded (``--keep encoder``), and K = 50 and K = 600 on subset 0 (``bench.probe_finetune``,
the study's recipe: 500 and 750 steps). Every finished fine-tune is one line in its results file.

Usage:
    .venv/bin/python -m bench.stage1_sparse speed --threads 1 [--size 128] [--steps 10]
    OMP_NUM_THREADS=1 nohup nice -n 19 .venv/bin/python -m bench.stage1_sparse chain \\
        --recipe sparse --epochs 10 > bench/out/stage1_sparse/chain.log 2>&1 &
    .venv/bin/python -m bench.stage1_sparse chain --quick   # a few steps of each: the pipeline
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    SHARED,
    argument_parser,
    child_env,
    command_line,
    machine,
    module_command,
    out_dir,
    read_jsonl,
    record_output,
    require,
    results_dir,
    set_threads,
    setup_logging,
    utc_now,
    write_json,
)
from bench.recipes import QUICK, STUDY_OUT, StudySettings, stage1_base_tag

EXPERIMENT = "stage1_sparse"
UNLABELED = SHARED / "faces-unlabeled"
log = logging.getLogger(EXPERIMENT)


def _photos() -> tuple[Path, Path]:
    pool = require(STUDY_OUT / "data" / "train" / "images", "the study's data stage")
    return pool, require(UNLABELED, "the unlabeled faces")


# ---------------------------------------------------------------------------------------------
# speed


def _time_round(recipe: str, size: int, steps: int, batch: int, work: Path) -> dict[str, float]:
    """One stage-1 run of ``steps`` steps; seconds per step (wall and CPU) after the first two."""
    from trainer.configs import PretrainConfig
    from trainer.pretrain import pretrain

    marks: list[tuple[float, float]] = []

    def mark(stats: dict[str, Any]) -> None:
        marks.append((time.perf_counter(), time.process_time()))

    config = PretrainConfig.from_flat(
        dict(
            image_dirs=tuple(str(p) for p in _photos()),
            out_dir=str(work / recipe),
            preset="lite",
            input_size=size,
            batch_size=batch,
            epochs=1,
            max_steps=steps,
            device="cpu",
            checkpoint_every=0,
            checkpoint_minutes=10**6,
        ),
        recipe=recipe,
    )
    pretrain(config, on_progress=mark)
    wall = [b[0] - a[0] for a, b in zip(marks[1:], marks[2:], strict=False)]
    cpu = [b[1] - a[1] for a, b in zip(marks[1:], marks[2:], strict=False)]
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}


def speed(args: argparse.Namespace, argv: list[str] | None) -> int:
    set_threads(args.threads)
    recipes = args.recipes.split(",")
    rounds: dict[str, list[dict[str, float]]] = {r: [] for r in recipes}
    work = Path(args.out)
    for _ in range(args.rounds):
        for recipe in recipes:
            rounds[recipe].append(_time_round(recipe, args.size, args.steps, args.batch, work))
            print(recipe, rounds[recipe][-1], flush=True)
    result: dict[str, Any] = {
        "command": command_line(__spec__.name, argv),
        "date": utc_now(),
        "machine": machine(),
        "preset": "lite",
        "input_size": args.size,
        "batch": args.batch,
        "steps_per_round": args.steps,
        "recipes": {},
    }
    for recipe, times in rounds.items():
        wall = min(t["wall_s"] for t in times)  # the round least disturbed by other jobs
        cpu = min(t["cpu_s"] for t in times)
        result["recipes"][recipe] = {
            "rounds": times,
            "images_per_s": round(args.batch / wall, 2),
            "images_per_cpu_s": round(args.batch / cpu, 2),
        }
    first = recipes[0]
    for recipe in recipes[1:]:
        ratio = (
            result["recipes"][recipe]["images_per_cpu_s"]
            / result["recipes"][first]["images_per_cpu_s"]
        )
        result["recipes"][recipe][f"cpu_speed_vs_{first}"] = round(ratio, 3)
    path = Path(args.results or results_dir(EXPERIMENT) / f"speed_{args.size}px.json")
    write_json(path, result)
    record_output(path, result["command"])
    print(
        json.dumps(
            {r: {k: v for k, v in d.items() if k != "rounds"} for r, d in result["recipes"].items()}
        )
    )
    return 0


# ---------------------------------------------------------------------------------------------
# chain


def _settings(args: argparse.Namespace) -> StudySettings:
    if args.quick:
        return QUICK
    return StudySettings(
        pretrain_epochs=args.epochs,
        pretrain_input_size=args.size,
        pretrain_lr=args.lr,
        num_workers=0,
    )


def stage1(args: argparse.Namespace) -> Path:
    """The cached stage 1; its optimizer-free copy is what the fine-tunes read."""
    from bench.stage1 import run_pretrain

    settings = _settings(args)
    tag = stage1_base_tag(settings, args.recipe) + f"_e{settings.pretrain_epochs}"
    stage_dir = Path(args.out) / f"pretrain_{args.recipe}{tag}"
    done = run_pretrain(args.recipe, STUDY_OUT, settings, UNLABELED, stage_dir=stage_dir)
    log.info(
        "stage 1 %s: %s",
        args.recipe,
        json.dumps({k: v for k, v in done.items() if k != "settings"}),
    )
    stripped = stage_dir / "ssl.safetensors"
    if not stripped.is_file():
        from bench.k10_subsets import strip

        strip(done["checkpoint"], str(stripped))
    return stripped


def _side_by_side(jobs: list[tuple[str, list[str]]], workers: int) -> None:
    """``python -m MODULE ARGV`` for each job, at most ``workers`` at once (each a one-thread
    process); a failed job is logged and the others go on."""
    running: list[subprocess.Popen] = []
    queue = list(jobs)
    while queue or running:
        while queue and len(running) < max(1, workers):
            module, argv = queue.pop(0)
            log.info("python -m %s %s", module, " ".join(argv))
            running.append(subprocess.Popen(module_command(module, argv), env=child_env()))
        time.sleep(2)
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            if p.returncode:
                log.warning("%s exited with %d", " ".join(map(str, p.args)), p.returncode)


def ssl_tag(args: argparse.Namespace) -> str:
    """Names this stage 1's runs: recipe and length (``sparse.e10``)."""
    return (
        f"{args.recipe.replace('-', '.')}.e{_settings(args).pretrain_epochs}"
        + ".quick" * args.quick
    )


def chain(args: argparse.Namespace, argv: list[str] | None) -> int:
    setup_logging()
    ssl = stage1(args)
    tag = ssl_tag(args)
    results = Path(args.results or results_dir("k10_subsets") / f"k10_subsets_cpu_{tag}.jsonl")
    # The decoder-discarded runs are another start: a file of their own.
    encoder = Path(args.results or results.with_name(f"{results.stem}_encoder.jsonl"))

    def k10(subsets: str, keep: str = "backbone") -> list[str]:
        return ["run", "--ssl", str(ssl), "--ssl-tag", tag, "--arms", "ssl", "--threads", "1",
                "--workers", str(args.workers), "--subsets", subsets, "--keep", keep,
                "--results", str(encoder if keep == "encoder" else results),
                "--out-dir", str(Path(args.out) / "finetunes")] + ["--quick"] * args.quick  # fmt: skip

    def probe(k: int, steps: int) -> list[str] | None:
        name = f"s1-{tag}_ssl_K{k}_s0"
        if probes.is_file() and name in {r.get("run") for r in read_jsonl(probes)}:
            return None
        held = 2 if args.quick else 100
        return ["--init", f"ssl:{ssl}", "--name", name, "--k", str(k), "--subset-seed", "0",
                "--steps", str(4 if args.quick else steps), "--head-only-steps", str(held),
                "--input-size", "256", "--threads", "1", "--device", "cpu",
                "--results", str(probes), "--out-dir", str(Path(args.out) / "finetunes" / name)]  # fmt: skip

    probes = Path(args.results or results_dir("k10_subsets") / f"k_larger_cpu_{tag}.jsonl")
    first, _, rest = args.subsets.partition(",")
    k50, k600 = probe(50, 500), probe(600, 750)
    # The most telling runs first: subset 0 with the decoder kept and discarded, side by side;
    # then the other subsets; K = 50 and 600; the decoder discarded on more subsets.
    phases = [
        [("bench.k10_subsets", k10(first)), ("bench.k10_subsets", k10(first, "encoder"))],
        [("bench.k10_subsets", k10(rest))] if rest else [],
        [("bench.probe_finetune", p) for p in (k50, k600) if p is not None],
        [("bench.k10_subsets", k10(args.encoder_subsets, "encoder"))]
        if args.encoder_subsets
        else [],
    ]
    for phase in phases:
        _side_by_side(phase, args.workers)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed", help="stage-1 images/s of each recipe")
    s.add_argument("--recipes", default="spark,sparse,sparse-image")
    s.add_argument("--size", type=int, default=128, help="stage-1 side (the study's: 128)")
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--steps", type=int, default=10, help="steps per round (the first two untimed)")
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out-dir", "--out", dest="out", default=str(out_dir(EXPERIMENT) / "speed"),
                   help="working folder (default %(default)s)")  # fmt: skip
    s.add_argument("--results", default=None)
    c = sub.add_parser("chain", help="stage 1, then the fine-tunes; rerun to resume")
    c.add_argument("--recipe", default="sparse")
    c.add_argument("--epochs", type=int, default=40, help="stage-1 epochs (the study's: 40)")
    c.add_argument("--size", type=int, default=128, help="stage-1 side (the study's: 128)")
    c.add_argument("--lr", type=float, default=3e-3, help="stage-1 AdamW rate (the study's)")
    c.add_argument("--subsets", default="0,1,2,3,4,5,6,7,8,9", help="K = 10 subsets, first first")
    c.add_argument("--encoder-subsets", default="1-4", help="K = 10, decoder discarded, last")
    c.add_argument("--workers", type=int, default=1, help="fine-tunes at once")
    c.add_argument("--out-dir", "--out", dest="out", default=str(out_dir(EXPERIMENT)),
                   help="working folder: stage 1, the fine-tunes (default %(default)s)")  # fmt: skip
    c.add_argument("--results", default=None, help="(quick runs) one file for every record")
    c.add_argument("--quick", action="store_true", help="a few steps of each: the pipeline")
    args = parser.parse_args(argv)
    return speed(args, argv) if args.cmd == "speed" else chain(args, argv)


if __name__ == "__main__":
    sys.exit(main())
