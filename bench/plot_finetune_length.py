"""Plot SSL vs scratch against fine-tune length (issue 5 §1, "find out why").

Usage:
    .venv/bin/python -m bench.plot_finetune_length [--markdown] [--out bench/results/probes/finetune_length.png]

Collects the runs of one stage-1 start and scratch at K = 10 and K = 50 from the files they were
written to: the 250-step fine-tunes of ``bench.ssl_length`` (``ssl_length_cpu.json`` holds
scratch, ``ssl_length_cpu_e40.json`` the 40-epoch start) and the longer fine-tunes of
``bench.probe_finetune`` (``probes.jsonl``, names ``e<epochs>_K<k>_s<seed>_<n>steps`` and
``scratch_K<k>_s<seed>_<n>steps``). Draws mIoU against steps, one thin line per subset seed and
a thick line for their mean, and prints the Markdown table BENCHMARKS.md quotes.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from bench.harness import argument_parser
from bench.plotting import save_png, signed
from bench.runs import collect_by_epochs, probes_file, stage1_length_files

SSL, SCRATCH = "SSL, 40 epochs", "scratch"
Run = tuple[str, int, int, int]  # arm, K, subset seed, steps


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
        cells.append(signed(a[1] - b[1]) if a and b else "")
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
                + ", ".join(signed(g) for g in gaps)
                + f" mIoU (mean {signed(sum(gaps) / len(gaps))})"
            )
    return "\n".join(lines)


def plot(runs: dict[Run, tuple[float, float]], out: Path) -> Path:
    """Write a two-panel PNG (K = 10, K = 50) of mIoU against fine-tune steps; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def main(argv: list[str] | None = None) -> int:
    _, scratch, ssl = stage1_length_files()
    parser = argument_parser(__doc__)
    parser.add_argument("--scratch", default=str(scratch), help="scratch's 250-step runs")
    parser.add_argument("--ssl", default=str(ssl), help="the 40-epoch start's 250-step runs")
    parser.add_argument("--probes", default=str(probes_file()), help="the longer fine-tunes")
    parser.add_argument(
        "--out", default=str(probes_file().with_name("finetune_length.png")), help="the plot"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table")
    args = parser.parse_args(argv)
    runs = collect(Path(args.scratch), Path(args.ssl), Path(args.probes))
    if args.markdown:
        print(markdown(runs))
    print(plot(runs, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
