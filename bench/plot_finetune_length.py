"""Plot SSL vs scratch against fine-tune length (issue 5 §1, "find out why").

Usage:
    .venv/bin/python bench/plot_finetune_length.py [--markdown] [--out bench/results/finetune_length.png]

Collects the runs of one stage-1 start and scratch at K = 10 and K = 50 from the files they were
written to: the 250-step fine-tunes of ``bench/ssl_length.py`` (``ssl_length_cpu.json`` holds
scratch, ``ssl_length_cpu_e40.json`` the 40-epoch start) and the longer fine-tunes of
``bench/probe_finetune.py`` (``probes.jsonl``, names ``e<epochs>_K<k>_s<seed>_<n>steps`` and
``scratch_K<k>_s<seed>_<n>steps``). Draws mIoU against steps, one thin line per subset seed and
a thick line for their mean, and prints the Markdown table BENCHMARKS.md quotes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from plot_study import _signed  # noqa: E402  (re-exported to the other plot scripts)

SSL, SCRATCH = "SSL, 40 epochs", "scratch"
# Arm names in the study's results (its spark start is a 10-epoch stage 1) and ssl_length's
# (``ssl-e<epochs>``, any length) -> stage-1 epochs (0 = scratch).
FIXED_ARMS = {"scratch": 0, "ssl-spark": 10}
SSL_LENGTH_ARM = re.compile(r"^ssl-e(\d+)$")
PROBE_NAME = re.compile(r"^(?:e(\d+)|scratch)_K\d+(?:_s\d+)?_\d+steps$")

Run = tuple[str, int, int, int]  # arm, K, subset seed, steps
EpochRun = tuple[int, int, int, int]  # stage-1 epochs (0 = scratch), K, subset seed, steps


def collect_by_epochs(
    results_json: list[Path], probes_jsonl: Path
) -> dict[EpochRun, tuple[float, float]]:
    """(stage-1 epochs, K, seed, steps) -> (mean F1, mIoU) in %, for the spark starts and
    scratch at K in {10, 50}; a later file overrides an earlier one for the same run."""
    from trainer.engine import read_jsonl

    runs: dict[EpochRun, tuple[float, float]] = {}
    for path in results_json:
        for r in json.loads(path.read_text())["runs"]:
            m = SSL_LENGTH_ARM.match(r["arm"])
            epochs = int(m.group(1)) if m else FIXED_ARMS.get(r["arm"])
            if epochs is not None and r["k"] in (10, 50):
                key = (epochs, r["k"], r["seed"], r["steps"])
                runs[key] = (100 * r["mean_f1"], 100 * r["miou"])
    for r in read_jsonl(probes_jsonl):
        m = PROBE_NAME.match(r["name"])
        if m and r["k"] in (10, 50):
            key = (int(m.group(1) or 0), r["k"], r["subset_seed"], r["steps"])
            runs[key] = (100 * r["mean_f1"], 100 * r["miou"])
    return runs


def collect(
    scratch_json: Path, ssl_json: Path, probes_jsonl: Path
) -> dict[Run, tuple[float, float]]:
    """(arm, K, seed, steps) -> (mean F1, mIoU) in %, for the 40-epoch start and scratch."""
    names = {0: SCRATCH, 40: SSL}
    runs = collect_by_epochs([scratch_json, ssl_json], probes_jsonl)
    return {(names[e], k, s, n): v for (e, k, s, n), v in runs.items() if e in names}


def markdown(runs: dict[Run, tuple[float, float]]) -> str:
    """One row per (K, subset seed, steps): mean F1 / mIoU per arm and SSL − scratch in mIoU;
    then the mean difference over subsets for every (K, steps) with more than one."""
    lines = [
        f"| K | subset seed | steps | {SCRATCH} | {SSL} | SSL − scratch, mIoU |",
        "|---|---|---|---|---|---|",
    ]
    for k, seed, n in sorted({(k, s, n) for _, k, s, n in runs}):
        a, b = runs.get((SSL, k, seed, n)), runs.get((SCRATCH, k, seed, n))
        cells = [f"{v[0]:.1f} / {v[1]:.1f}" if v else "" for v in (b, a)]
        cells.append(_signed(a[1] - b[1]) if a and b else "")
        lines.append(f"| {k} | {seed} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    for k, n in sorted({(k, n) for _, k, _, n in runs}):
        gaps = [
            runs[(SSL, k, s, n)][1] - runs[(SCRATCH, k, s, n)][1]
            for s in sorted({s for _, kk, s, nn in runs if kk == k and nn == n})
            if (SSL, k, s, n) in runs and (SCRATCH, k, s, n) in runs
        ]
        if len(gaps) > 1:
            lines.append(
                f"- K = {k}, {n} steps, {len(gaps)} subsets: SSL − scratch "
                + ", ".join(_signed(g) for g in gaps)
                + f" mIoU (mean {_signed(sum(gaps) / len(gaps))})"
            )
    return "\n".join(lines)


def plot(runs: dict[Run, tuple[float, float]], out: Path) -> Path:
    """Write a two-panel PNG (K = 10, K = 50) of mIoU against fine-tune steps; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from plot_study import save_png

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    steps = sorted({n for _, _, _, n in runs})
    colours = {SCRATCH: "tab:orange", SSL: "tab:blue"}
    for ax, k in zip(axes, (10, 50), strict=True):
        for arm, colour in colours.items():
            per_seed: dict[int, dict[int, float]] = defaultdict(dict)
            for (a, kk, seed, n), (_, miou) in runs.items():
                if a == arm and kk == k:
                    per_seed[seed][n] = miou
            for pts in per_seed.values():
                xs = sorted(pts)
                ax.plot(xs, [pts[x] for x in xs], color=colour, alpha=0.35, lw=1, marker=".")
            by_steps: dict[int, list[float]] = defaultdict(list)
            for pts in per_seed.values():
                for n, v in pts.items():
                    by_steps[n].append(v)
            xs = [n for n in sorted(by_steps) if len(by_steps[n]) == len(per_seed)]
            ax.plot(
                xs,
                [sum(by_steps[n]) / len(by_steps[n]) for n in xs],
                color=colour,
                lw=2.5,
                marker="o",
                label=f"{arm} (mean of {len(per_seed)} subsets)",
            )
        ax.set_title(f"K = {k} labeled faces")
        ax.set_xticks(steps)
        ax.set_xlim(steps[0] - 50, steps[-1] + 50)
        ax.set_xlabel("fine-tune steps (batch 8)")
        ax.set_ylabel("mIoU, 11 classes, %")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        "lite preset, 256 px; thin lines: one subset seed each; study recipe but for length",
        fontsize=9,
    )
    return save_png(fig, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", default=str(RESULTS / "ssl_length_cpu.json"))
    parser.add_argument("--ssl", default=str(RESULTS / "ssl_length_cpu_e40.json"))
    parser.add_argument("--probes", default=str(RESULTS / "probes.jsonl"))
    parser.add_argument("--out", default=str(RESULTS / "finetune_length.png"))
    parser.add_argument("--markdown", action="store_true", help="also print the table")
    args = parser.parse_args()
    runs = collect(Path(args.scratch), Path(args.ssl), Path(args.probes))
    if args.markdown:
        print(markdown(runs))
    print(plot(runs, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
