"""Plot the SSL start's lead over scratch against stage-1 length (issue 5 §1, "find out why").

Usage:
    .venv/bin/python -m bench.plot_stage1_length [--markdown] [--steps 500]

Collects the fine-tunes of the spark stage-1 starts (10 epochs: the study's earlier recipe,
``study_plain.json``; 20 and 40: ``bench.ssl_length``; 40 and 80: ``bench.probe_finetune``
in ``probes.jsonl``) and of scratch, at K = 10 and K = 50 and one fine-tune length, and draws
SSL − scratch mIoU against stage-1 epochs: one dot per subset seed, a line through their mean.
``--markdown`` prints the table BENCHMARKS.md quotes.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from bench.harness import RESULTS, argument_parser
from bench.plotting import save_png, signed
from bench.runs import EpochRun, collect_by_epochs, probes_file, stage1_length_files

Scores = dict[EpochRun, tuple[float, float]]


def gaps(runs: Scores, steps: int) -> dict[tuple[int, int], dict[int, float]]:
    """(K, stage-1 epochs) -> {subset seed: SSL − scratch mIoU} at ``steps`` fine-tune steps."""
    out: dict[tuple[int, int], dict[int, float]] = defaultdict(dict)
    for (epochs, k, seed, n), (_, miou) in runs.items():
        scratch = runs.get((0, k, seed, n))
        if epochs and n == steps and scratch:
            out[(k, epochs)][seed] = miou - scratch[1]
    return dict(out)


def markdown(runs: Scores, steps: int) -> str:
    """One row per (K, subset seed): mean F1 / mIoU of scratch and each start, then the mean
    lead per (K, epochs)."""
    epochs = sorted({e for e, _, _, n in runs if e and n == steps})
    head = ["K", "subset seed", "scratch"] + [f"SSL, {e} epochs" for e in epochs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, seed in sorted({(k, s) for e, k, s, n in runs if n == steps and e == 0}):
        cells = []
        for e in [0, *epochs]:
            v = runs.get((e, k, seed, steps))
            cells.append(f"{v[0]:.1f} / {v[1]:.1f}" if v else "")
        lines.append(f"| {k} | {seed} | " + " | ".join(cells) + " |")
    lines.append("")
    for (k, e), by_seed in sorted(gaps(runs, steps).items()):
        values = [by_seed[s] for s in sorted(by_seed)]
        subsets = f"{len(values)} subsets" if len(values) > 1 else f"subset seed {min(by_seed)}"
        lines.append(
            f"- K = {k}, {e}-epoch start, {subsets}: SSL − scratch "
            + ", ".join(signed(g) for g in values)
            + f" mIoU (mean {signed(sum(values) / len(values))})"
        )
    return "\n".join(lines)


def plot(runs: Scores, steps: int, out: Path) -> Path:
    """Write a two-panel PNG (K = 10, K = 50) of the lead against stage-1 epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lead = gaps(runs, steps)
    all_epochs = sorted({e for _, e in lead})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharey=True)
    for ax, k in zip(axes, (10, 50), strict=True):
        xs = [e for e in all_epochs if (k, e) in lead]
        for e in xs:
            values = list(lead[(k, e)].values())
            ax.scatter([e] * len(values), values, color="tab:blue", alpha=0.45, s=18)
        means = [sum(lead[(k, e)].values()) / len(lead[(k, e)]) for e in xs]
        ax.plot(xs, means, color="tab:blue", lw=2.5, marker="o", label="mean over subsets")
        target = {10: 5.0, 50: 3.0}[k]
        ax.axhline(target, color="tab:red", ls="--", lw=1, label=f"target +{target:.0f}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_epochs, [str(e) for e in all_epochs])
        ax.set_title(f"K = {k} labeled faces, {steps} fine-tune steps")
        ax.set_xlabel("stage-1 epochs (793 photos, spark recipe)")
        ax.set_ylabel("SSL − scratch, mIoU points")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        "lite preset, 256 px; dots: one subset seed each; "
        "80 epochs = the 40-epoch run resumed into an 80-epoch schedule (warm restart)",
        fontsize=9,
    )
    return save_png(fig, out)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--results", default=str(RESULTS), help="the results folder (default %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=500, help="fine-tune length compared")
    parser.add_argument(
        "--out", default=str(probes_file().with_name("stage1_length.png")), help="the plot"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table")
    args = parser.parse_args(argv)
    root = Path(args.results)
    runs = collect_by_epochs(stage1_length_files(root), probes_file(root))
    if args.markdown:
        print(markdown(runs, args.steps))
    print(plot(runs, args.steps, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
