"""Validation curves of the K = 10 fine-tunes: where the SSL start's lead over scratch comes from.

Usage:
    .venv/bin/python -m bench.plot_k10_curves [bench/results/k10_curves/k10_curves.jsonl]
        [--out bench/results/k10_curves/k10_curves.png] [--markdown]

Issue 5 §1, "find out why". Reads the records of ``python -m bench.probe_finetune --val-every N``
named ``curve_<arm>_K<k>_s<seed>`` (each holds the validation scores every N steps in its
``history``), pairs ``ssl-spark`` with ``scratch`` per subset, prints the Markdown table that
BENCHMARKS.md quotes and draws mIoU against the fine-tuning step (left) and the SSL start's
lead (right).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bench.harness import argument_parser, read_jsonl, results_dir
from bench.plotting import save_png

NAME = re.compile(r"^curve_(?P<arm>[\w-]+)_K(?P<k>\d+)_s(?P<seed>\d+)$")
Curve = dict[int, float]  # step -> mIoU in %


def collect(path: Path) -> dict[int, dict[str, Curve]]:
    """subset seed -> arm -> {step: mIoU %}; a later record of the same run replaces an earlier."""
    out: dict[int, dict[str, Curve]] = {}
    for r in read_jsonl(path):
        m = NAME.match(r.get("run", ""))
        if not m or not r.get("history"):
            continue
        curve = {h["step"]: 100 * h["miou"] for h in r["history"]}
        out.setdefault(int(m["seed"]), {})[m["arm"]] = curve
    return out


def paired(curves: dict[int, dict[str, Curve]], ssl: str = "ssl-spark") -> dict[int, tuple]:
    """subset seed -> (steps, ssl mIoU, scratch mIoU) over the steps both runs scored."""
    out = {}
    for seed, arms in sorted(curves.items()):
        if ssl in arms and "scratch" in arms:
            steps = sorted(set(arms[ssl]) & set(arms["scratch"]))
            out[seed] = (steps, [arms[ssl][s] for s in steps], [arms["scratch"][s] for s in steps])
    return out


def common_steps(pairs: dict[int, tuple]) -> list[int]:
    """The steps every paired run scored."""
    return sorted(set.intersection(*(set(p[0]) for p in pairs.values())))


def scores_at(pairs: dict[int, tuple], step: int) -> list[tuple[float, float]]:
    """(ssl mIoU, scratch mIoU) of each subset at ``step``, in the order of ``pairs``."""
    return [(ssl[st.index(step)], scratch[st.index(step)]) for st, ssl, scratch in pairs.values()]


def markdown(pairs: dict[int, tuple]) -> str:
    """One row per step: each subset's SSL / scratch mIoU and the lead."""
    seeds = list(pairs)
    steps = common_steps(pairs)
    head = "| step | " + " | ".join(f"subset {s}: ssl-spark / scratch (lead)" for s in seeds)
    lines = [head + " | mean lead |", "|---|" + "---|" * (len(seeds) + 1)]
    for step in steps:
        at = scores_at(pairs, step)
        cells = [f"{a:.1f} / {b:.1f} ({a - b:+.1f})" for a, b in at]
        mean = sum(a - b for a, b in at) / len(at)
        lines.append(f"| {step} | " + " | ".join(cells) + f" | {mean:+.1f} |")
    return "\n".join(lines)


def plot(pairs: dict[int, tuple], out: Path, hold: int = 100) -> Path:
    """Write the two-panel PNG; ``hold`` is the step the backbone starts training at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    steps = common_steps(pairs)
    means: dict[str, list[float]] = {"ssl-spark": [], "scratch": [], "lead": []}
    for step in steps:
        at = scores_at(pairs, step)
        means["ssl-spark"].append(sum(a for a, _ in at) / len(at))
        means["scratch"].append(sum(b for _, b in at) / len(at))
        means["lead"].append(sum(a - b for a, b in at) / len(at))
    for st, ssl, scratch in pairs.values():
        left.plot(st, ssl, "-", color="C0", lw=0.8, alpha=0.35)
        left.plot(st, scratch, "--", color="C1", lw=0.8, alpha=0.35)
        lead = [a - b for a, b in zip(ssl, scratch, strict=True)]
        right.plot(st, lead, "-", color="C2", lw=0.8, alpha=0.35)
    n = len(pairs)
    left.plot(
        steps,
        means["ssl-spark"],
        "-o",
        color="C0",
        ms=3,
        label=f"ssl-spark (mean of {n} subsets; thin: each)",
    )
    left.plot(
        steps,
        means["scratch"],
        "--s",
        color="C1",
        ms=3,
        label=f"scratch (mean of {n} subsets; thin: each)",
    )
    right.plot(steps, means["lead"], "-o", color="C2", ms=3, label=f"mean of {n} subsets")
    left.set(xlabel="fine-tuning step (batch 8)", ylabel="mIoU on 100 validation faces (%)")
    left.set_title("K = 10: validation mIoU during the fine-tune")
    for ax in (left, right):
        ax.axvline(hold, color="grey", lw=0.8, ls=":", label="backbone released")
    left.legend(fontsize=8)
    right.axhline(5, color="grey", lw=0.8, ls="--", label="target +5")
    right.axhline(0, color="black", lw=0.6)
    right.set(xlabel="fine-tuning step (batch 8)", ylabel="ssl-spark − scratch, mIoU")
    right.set_title("The SSL start's lead")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save_png(fig, out)


def main(argv: list[str] | None = None) -> int:
    ap = argument_parser(__doc__)
    ap.add_argument(
        "results",
        nargs="?",
        default=str(results_dir("k10_curves") / "k10_curves.jsonl"),
        help="the curves' records",
    )
    ap.add_argument(
        "--out", default=str(results_dir("k10_curves") / "k10_curves.png"), help="the plot"
    )
    ap.add_argument("--hold", type=int, default=100, help="the runs' --head-only-steps")
    ap.add_argument("--markdown", action="store_true", help="print the table BENCHMARKS quotes")
    args = ap.parse_args(argv)
    pairs = paired(collect(Path(args.results)))
    if not pairs:
        raise SystemExit(f"{args.results}: no ssl-spark / scratch curve pairs")
    if args.markdown:
        print(markdown(pairs))
    print(plot(pairs, Path(args.out), args.hold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
