"""The K = 10 lead of the masked-SSL start over many labeled subsets (issue 5 §1).

The target: "SSL beats scratch by >= 5 mIoU at K = 10". The study measured the lead on five
subset seeds (+4.98, standard error 0.5): at the target, not clearly over it. This script runs the
same K = 10 fine-tune on many more subset seeds, several at once (each in a process of its own),
and reports the paired lead with its standard error, a t 95% interval and a bootstrap one. Each
fine-tune is one ``bench.probe_finetune`` run with the study's recipe: 500
steps of 8 at 256 px, the first 100 with the backbone held, lr 1e-2, CE + Dice, last weights
scored on the 100 validation faces. Both arms (the study's stage-1 checkpoint and scratch) use
the same subsets. Only the number of subsets differs from the study.

It is meant for a lent GPU (``bash bench/study_gpu.sh k10``): there, a dozen fine-tunes run side by
side. Every finished fine-tune is appended to the results file at once, so a run cut off by its
time limit still reports every pair it finished, and a rerun skips the fine-tunes already there.

Usage:
    .venv/bin/python -m bench.k10_subsets run --quick --subsets 0-1 --workers 2 \\
        --results bench/out/k10_quick.jsonl   # checks the pipeline in a minute or two
    python3 -m bench.k10_subsets run --ssl CKPT --data DIR --subsets 0-39 --workers 12 \\
        --results $OUT/k10_subsets.jsonl [--seconds 480]
    .venv/bin/python -m bench.k10_subsets summary bench/results/k10_subsets/k10_subsets.jsonl \\
        [--compare bench/results/k10_curves/k10_curves.jsonl --compare-label CPU] [--json]
    # another stage 1 (bench.stage1_data): its SSL runs beside the study's scratch runs
    .venv/bin/python -m bench.k10_subsets run --ssl CKPT --ssl-tag f0.25 --arms ssl \\
        --subsets 0-4 --results bench/results/k10_subsets/k10_subsets_cpu_s1data.jsonl
    .venv/bin/python -m bench.k10_subsets summary bench/results/k10_subsets/k10_subsets_cpu_s1data.jsonl \\
        --scratch-from bench/results/k10_curves/k10_curves.jsonl bench/results/k10_subsets/k10_subsets_cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import (
    add_common,
    argument_parser,
    child_env,
    command_line,
    experiment_of,
    int_range,
    module_command,
    out_dir,
    read_jsonl,
    record_output,
    results_dir,
)
from bench.recipes import K10_QUICK, K10_RECIPE, SSL_DEFAULT, STUDY_OUT
from bench.stats import lead_stats

EXPERIMENT = "k10_subsets"
# Validate only at the end (every 10**6 epochs), inside the run, on the run's device.
VAL_AT_END = ("--val-every", "1000000")
ARMS = ("ssl", "scratch")
# k10_<arm>_K10_s<seed> (this script; tagged k10-quick / -fp32 / -cw-<scheme> for the other
# runs, see run_name) and the validation-curve runs' curve_ssl-spark_K10_s<seed> /
# curve_scratch_K10_s<seed>.
SSL_TAG = r"[a-z0-9.]+"  # --ssl-tag: another stage 1's runs are tagged k10-s1-<tag>
NAME = re.compile(
    rf"^(?P<tag>k10(?:-quick)?(?:-fp32)?(?:-bf16)?(?:-cw-[a-z-]+)?(?:-s1-{SSL_TAG})?(?:-encoder)?|curve)"
    r"_(?P<arm>ssl|scratch)(?:-spark)?_K10_s(?P<seed>\d+)$"
)


def run_name(arm: str, seed: int, args: argparse.Namespace) -> str:
    """The record's name; quick, float32, class-weighted runs and other stage-1 checkpoints carry
    a tag so they never pass for the recipe or the study's stage 1."""
    tag = "k10" + "-quick" * args.quick + "-fp32" * args.fp32 + "-bf16" * (args.precision == "bf16")
    if args.class_weighting != "none":
        tag += f"-cw-{args.class_weighting}"
    if args.ssl_tag:
        tag += f"-s1-{args.ssl_tag}"
    if arm == "ssl" and args.keep == "encoder":
        tag += "-encoder"  # the stage-1 decoder discarded: another start
    return f"{tag}_{arm}_K10_s{seed}"


def job_argv(arm: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The probe's command line for one fine-tune."""
    name = run_name(arm, seed, args)
    init = f"ssl:{args.ssl}" if arm == "ssl" else "scratch"
    recipe = K10_QUICK if args.quick else K10_RECIPE
    argv = ["--init", init, "--name", name, "--subset-seed", str(seed), *recipe, *VAL_AT_END]
    argv += ["--data", str(args.data), "--device", args.device, "--results", str(args.results)]
    argv += ["--out-dir", str(Path(args.out) / name)]
    argv += ["--experiment", experiment_of(args.results, EXPERIMENT)]
    if arm == "ssl" and args.keep != "backbone":
        argv += ["--keep", args.keep]
    if args.class_weighting != "none":
        argv += ["--class-weighting", args.class_weighting]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.precision != "study":
        argv += ["--precision", args.precision]
    return argv


def done_names(results: Path) -> set[str]:
    return {r["run"] for r in read_jsonl(results) if "run" in r}


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run the fine-tunes, at most ``--workers`` at once, each in a process of its own, lowest
    subset seeds first and both arms of a subset together; stop them at ``--seconds``."""
    if not Path(args.ssl).is_file():
        sys.exit(f"--ssl {args.ssl}: no such stage-1 checkpoint")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    if args.ssl_tag and not re.fullmatch(SSL_TAG, args.ssl_tag):
        sys.exit(f"--ssl-tag {args.ssl_tag!r}: lower-case letters, digits and dots only")
    done = done_names(Path(args.results))
    arms = ARMS if args.arms == "both" else (args.arms,)
    asked = [(arm, seed) for seed in int_range(args.subsets) for arm in arms]
    queue = [
        job_argv(arm, seed, args) for arm, seed in asked if run_name(arm, seed, args) not in done
    ]
    record_output(
        args.results,
        command_line(__spec__.name, argv),
        note="one record per fine-tune; each record holds the bench.probe_finetune command it ran",
    )
    print(
        f"{len(queue)} fine-tunes, {args.workers} at a time "
        f"({len(asked) - len(queue)} of the {len(asked)} asked for already in {args.results})",
        flush=True,
    )
    deadline = time.monotonic() + args.seconds if args.seconds > 0 else math.inf
    running: list[subprocess.Popen] = []
    failed = 0
    while queue or running:
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            failed += p.returncode != 0
        if time.monotonic() > deadline:
            print(f"time limit reached: stopping {len(running)} fine-tunes", flush=True)
            _stop(running)
            break
        while queue and len(running) < args.workers:
            cmd = module_command(__spec__.name, ["job", json.dumps(queue.pop(0))])
            running.append(subprocess.Popen(cmd + ["--fp32"] * args.fp32, env=child_env()))
        time.sleep(1)
    if failed:
        print(f"{failed} fine-tunes failed (their errors are above)", file=sys.stderr)
    return 1 if failed else 0


def _stop(procs: list[subprocess.Popen], grace: float = 30.0) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def job(argv_json: str, fp32: bool = False) -> int:
    """One probe fine-tune (a process of its own: a failure cannot take other runs with it)."""
    from bench import probe_finetune

    if fp32:
        _full_float32()
    return probe_finetune.main(json.loads(argv_json), manifest=False)


def _full_float32() -> None:
    """CUDA in float32 as on the CPU: no bf16 autocast, no TF32 (a numerics check, bench only)."""
    import torch

    from trainer.precision import ENV

    os.environ[ENV] = "fp32"  # the probe's precision is auto on CUDA: this makes it float32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def strip(src: str, dst: str) -> None:
    """Copy a stage-1 checkpoint without its optimizer state (what a fine-tune reads of it)."""
    from trainer.checkpoint import load_model, save_checkpoint

    model, ckpt = load_model(src)
    meta = {**ckpt.meta, "note": f"{src} without its optimizer state"}
    save_checkpoint(dst, model, ckpt.stage, meta)
    print(f"{dst}: {Path(dst).stat().st_size / 1e6:.1f} MB")


Runs = dict[int, dict[str, dict]]  # subset seed -> arm -> the finished run's record


def collect(paths: list[Path]) -> dict[int, dict[str, float]]:
    """subset seed -> arm -> final mIoU in %; a later record of the same run replaces an earlier."""
    return mious(collect_runs(paths)[1])


def mious(runs: Runs) -> dict[int, dict[str, float]]:
    return {s: {arm: 100 * r["miou"] for arm, r in arms.items()} for s, arms in runs.items()}


def collect_runs(paths: list[Path]) -> tuple[str | None, Runs]:
    """Each finished run's record (a later record of the same run replaces an earlier) and the
    one kind of run the files hold (None: no finished run)."""
    out: Runs = {}
    tags = set()
    for path in paths:
        for r in read_jsonl(path):
            m = NAME.match(r.get("run", ""))
            if m and r.get("miou") is not None:
                tags.add("k10" if m["tag"] == "curve" else m["tag"])  # the same recipe
                out.setdefault(int(m["seed"]), {})[m["arm"]] = r
    if len(tags) > 1:
        raise SystemExit(
            f"{', '.join(map(str, paths))}: mixes runs of {sorted(tags)}; one kind a time"
        )
    return next(iter(tags), None), out


def class_f1(runs: Runs, arm: str, seeds: list[int]) -> dict[str, float]:
    """Per-class F1 in % of one arm's runs, averaged over ``seeds``."""
    missing = [s for s in seeds if not runs.get(s, {}).get(arm, {}).get("f1")]
    if missing:
        raise SystemExit(f"{arm}: no per-class F1 for subsets {missing}")
    f1s = [runs[s][arm]["f1"] for s in seeds]
    return {c: 100 * sum(f[c] for f in f1s) / len(f1s) for c in f1s[0]}


def print_class_table(columns: dict[str, dict[str, float]], seeds: list[int]) -> None:
    print(f"| F1 at K = 10, mean of subsets {', '.join(map(str, seeds))} | {' | '.join(columns)} |")
    print("|---" * (len(columns) + 1) + "|")
    for c in next(iter(columns.values())):
        print(f"| {c} | {' | '.join(f'{col[c]:.1f}' for col in columns.values())} |")


def summary(args: argparse.Namespace) -> int:
    tag, found = collect_runs([Path(p) for p in args.results])
    if args.scratch_from:
        # Scratch does not depend on stage 1: another stage 1's SSL runs pair with the study's
        # scratch runs of the same subsets and recipe.
        scratch_tag, scratch = collect_runs([Path(p) for p in args.scratch_from])
        if tag and scratch_tag and re.sub(rf"-s1-{SSL_TAG}(-encoder)?$", "", tag) != scratch_tag:
            sys.exit(f"--scratch-from holds {scratch_tag} runs, the results {tag}: not one recipe")
        found = {
            s: {"ssl": a["ssl"], "scratch": scratch[s]["scratch"]}
            for s, a in found.items()
            if "ssl" in a and "scratch" in scratch.get(s, {})
        }
    found = {s: a for s, a in sorted(found.items()) if set(ARMS) <= set(a)}
    pairs = mious(found)
    if not pairs:
        sys.exit("no subset with both arms finished")
    compared = collect_runs([Path(p) for p in args.compare])[1] if args.compare else {}
    compare = mious(compared)
    head = "| subset | SSL mIoU | scratch mIoU | lead |"
    rule = "|---|---|---|---|"
    label = args.compare_label
    if compare:
        head += f" SSL, {label} | scratch, {label} | lead, {label} |"
        rule += "---|---|---|"
    print(head)
    print(rule)
    leads = []
    shifts: dict[str, list[float]] = {arm: [] for arm in ARMS}  # this run minus the compared
    for seed, arms in pairs.items():
        lead = arms["ssl"] - arms["scratch"]
        leads.append(lead)
        row = f"| {seed} | {arms['ssl']:.1f} | {arms['scratch']:.1f} | {lead:+.1f} |"
        if compare:
            c = compare.get(seed, {})
            if set(ARMS) <= set(c):
                row += f" {c['ssl']:.1f} | {c['scratch']:.1f} | {c['ssl'] - c['scratch']:+.1f} |"
                for arm in ARMS:
                    shifts[arm].append(arms[arm] - c[arm])
            else:
                row += " | | |"
        print(row)
    if len(leads) < 2:  # a chain that has finished one subset so far
        print(f"\n1 subset: lead {leads[0]:+.2f}; an interval needs at least two")
        return 0
    st = lead_stats(leads)
    ssl = sum(a["ssl"] for a in pairs.values()) / len(pairs)
    scratch = sum(a["scratch"] for a in pairs.values()) / len(pairs)
    print()
    print(
        f"{st['n']} subsets: SSL {ssl:.1f}, scratch {scratch:.1f} mIoU; lead {st['mean']:+.2f} "
        f"(sd {st['sd']:.2f}, standard error {st['se']:.2f}, t 95% interval "
        f"{st['t95'][0]:+.2f} to {st['t95'][1]:+.2f}, bootstrap {st['ci95'][0]:+.2f} to "
        f"{st['ci95'][1]:+.2f}); {100 * st['share_at_target']:.0f}% of "
        f"subsets at +5 or more; the mean is at +5 or more in "
        f"{100 * st['bootstrap_share_at_target']:.0f}% of bootstrap resamples"
    )
    if shifts["ssl"]:
        n = len(shifts["ssl"])
        print(
            f"against {label} on the {n} subsets both ran: SSL "
            f"{sum(shifts['ssl']) / n:+.2f}, scratch {sum(shifts['scratch']) / n:+.2f} mIoU"
        )
    if args.classes:
        seeds = list(pairs)
        columns = {
            arm_label: class_f1(found, arm, seeds)
            for arm, arm_label in (("ssl", "SSL"), ("scratch", "scratch"))
        }
        if compare and all(set(ARMS) <= set(compare.get(s, {})) for s in seeds):
            columns[f"SSL, {label}"] = class_f1(compared, "ssl", seeds)
        print()
        print_class_table(columns, seeds)
    if args.json:
        print(json.dumps({"ssl": ssl, "scratch": scratch, **st}))
    return 0


def plot(sources: list[str], out: Path) -> Path:
    """Per-subset leads of each source (LABEL=FILE[,FILE...]) with their mean and t 95%
    interval (left), and each subset that more than one source ran, as a line across them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bench.plotting import save_png

    groups = []
    for source in sources:
        label, _, paths = source.partition("=")
        runs = collect([Path(path) for path in paths.split(",")])
        groups.append((label, {s: a["ssl"] - a["scratch"] for s, a in runs.items() if len(a) == 2}))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), width_ratios=(3, 2))
    rng = np.random.default_rng(0)
    for i, (_label, leads) in enumerate(groups):
        x = list(leads.values())
        st = lead_stats(x)
        left.scatter(i + rng.uniform(-0.15, 0.15, len(x)), x, s=14, alpha=0.6)
        lo, hi = st["t95"]
        left.errorbar(
            i + 0.3, st["mean"], yerr=[[st["mean"] - lo], [hi - st["mean"]]], fmt="o", color="k"
        )
        left.annotate(f"{st['mean']:+.1f}", (i + 0.36, st["mean"]), va="center")
    left.axhline(5, ls="--", color="tab:red", lw=1)
    left.text(-0.45, 5.15, "target +5", color="tab:red")
    left.set_xticks(range(len(groups)), [f"{lb}\n{len(ld)} subsets" for lb, ld in groups])
    left.set_xlim(-0.5, len(groups) - 0.3)
    left.set_ylabel("SSL − scratch, mIoU (points)")
    left.set_title("K = 10 lead per subset; mean and t 95% interval")
    seeds = sorted({seed for _, ld in groups for seed in ld})
    for seed in seeds:
        xs = [i for i, (_, ld) in enumerate(groups) if seed in ld]
        if len(xs) > 1:
            ls = "-" if xs == list(range(xs[0], xs[-1] + 1)) else ":"  # dotted: skips a source
            ys = [groups[i][1][seed] for i in xs]
            right.plot(xs, ys, ls=ls, marker="o", label=f"subset {seed}")
    right.axhline(5, ls="--", color="tab:red", lw=1)
    right.set_xticks(range(len(groups)), [lb for lb, _ in groups])
    right.set_title("the subsets run on more than one")
    right.legend(fontsize=7, ncol=2)
    return save_png(fig, out)


def main(argv: list[str] | None = None) -> int:
    from trainer.losses import CLASS_WEIGHTINGS

    parser = argument_parser(__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the fine-tunes")
    r.add_argument("--ssl", default=str(SSL_DEFAULT), help="the study's stage-1 checkpoint")
    r.add_argument("--data", default=str(STUDY_OUT / "data"), help="the study's data stage")
    r.add_argument("--subsets", default="0-39", help="subset seeds: '0-39' or '0,3,7'")
    r.add_argument("--workers", type=int, default=1, help="fine-tunes at once")
    r.add_argument("--seconds", type=float, default=0, help="stop the runs after this long")
    add_common(
        r,
        EXPERIMENT,
        out=out_dir("k10-subsets"),
        results="k10_subsets.jsonl",
        device="auto",
        threads=True,
        quick="4 steps a fine-tune: checks the pipeline",
    )
    r.add_argument(
        "--fp32", action="store_true", help="CUDA without bf16 autocast or TF32 (as on the CPU)"
    )
    r.add_argument(
        "--precision",
        choices=("study", "bf16"),
        default="study",
        help="bf16: bf16 autocast on the CPU too (the runs are tagged k10-bf16); study: as recorded",
    )
    r.add_argument(
        "--class-weighting",
        choices=CLASS_WEIGHTINGS,
        default="none",
        help="a variant of the recipe: class-weighted cross-entropy (the runs are tagged k10-cw-)",
    )
    r.add_argument(
        "--ssl-tag",
        default="",
        help="names another stage-1 checkpoint's runs (tagged k10-s1-<tag>), e.g. f0.25",
    )
    r.add_argument(
        "--arms",
        choices=("both", *ARMS),
        default="both",
        help="ssl: only the SSL arm (scratch does not depend on --ssl)",
    )
    r.add_argument(
        "--keep",
        choices=("backbone", "encoder"),
        default="backbone",
        help="what of the stage-1 network the SSL arm keeps (encoder: the UNet++ decoder starts "
        "fresh; the runs are tagged -encoder)",
    )
    w = sub.add_parser("job", help="(internal) one probe command line, as JSON")
    w.add_argument("argv")
    w.add_argument("--fp32", action="store_true")
    t = sub.add_parser("strip", help="a stage-1 checkpoint without its optimizer state")
    t.add_argument("src")
    t.add_argument("dst")
    s = sub.add_parser("summary", help="the paired table and the lead's spread")
    s.add_argument("results", nargs="+")
    s.add_argument(
        "--scratch-from",
        nargs="+",
        default=None,
        help="take the scratch arm from these files (the SSL arm from the results)",
    )
    s.add_argument(
        "--compare", nargs="+", default=None, help="other records of the same fine-tunes"
    )
    s.add_argument("--compare-label", default="compared", help="their column's name")
    s.add_argument("--classes", action="store_true", help="also the per-class F1 of each arm")
    s.add_argument("--json", action="store_true", help="also print the statistics as JSON")
    g = sub.add_parser("plot", help="the leads of several result files side by side")
    g.add_argument(
        "sources",
        nargs="+",
        help="LABEL=FILE[,FILE...], e.g. 'CPU=bench/results/k10_curves/k10_curves.jsonl'",
    )
    g.add_argument(
        "--out",
        default=str(results_dir(EXPERIMENT) / "k10_subsets.png"),
        help="the plot (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.cmd == "plot":
        print(plot(args.sources, Path(args.out)))
        return 0
    if args.cmd == "job":
        return job(args.argv, args.fp32)
    if args.cmd == "strip":
        strip(args.src, args.dst)
        return 0
    return run(args, argv) if args.cmd == "run" else summary(args)


if __name__ == "__main__":
    sys.exit(main())
