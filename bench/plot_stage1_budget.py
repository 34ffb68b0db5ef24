"""SSL starts of different stage-1 cost under the study's held recipe, subset by subset.

Usage:
    .venv/bin/python -m bench.plot_stage1_budget [--markdown]
        [--starts e10 px128e40 px128e40lr3 e40 e80 px128e40lr6 px128e40m075]
        [--prefix lpft100|lpft200]

Issue 5 §1, "stage-1 length" at a fixed budget. Reads the probes ``lpft100_<start>_K<k>_s<seed>``
and ``lpft100_scratch_K<k>_s<seed>`` (``python -m bench.probe_finetune --head-only-steps 100 --steps
500``; ``lpft200``: held 200) from ``probes.jsonl``, prints the Markdown table BENCHMARKS.md quotes (mIoU per subset and
each start's lead over scratch, then each start's mean lead per K over the subsets it has) and
draws the mean lead per start and K, a dot per subset.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.harness import argument_parser, read_jsonl
from bench.plotting import mean_bar, save_png, signed, target_axes
from bench.runs import probes_file

# Each start's stage 1 (spark recipe, 793 photos, batch 8) and its measured time on this
# machine's two threads (docs/research-log.md, "An 80-epoch stage 1" and "Stage 1 at half the side").
STARTS = {
    "e10": "10 ep. at 256 px (17 min)",
    "px128e40": "40 ep. at 128 px (19 min)",
    "px128e40lr3": "40 ep. at 128 px, lr 3e-3 (19 min)",
    "px128e40lr6": "40 ep. at 128 px, lr 6e-3 (19 min)",
    "px128e40m075": "40 ep. at 128 px, lr 3e-3, 75% masked (19 min)",
    "e40": "40 ep. at 256 px (72 min)",
    "e80": "80 ep. at 256 px (149 min)",
}
# The starts of "Stage 1 at half the side"; the two later rate and masking levers are named
# with --starts (docs/research-log.md, "Two more stage-1 levers").
DEFAULT_STARTS = ["e10", "px128e40", "px128e40lr3", "e40", "e80"]
PREFIX = "lpft100"

Scores = dict[tuple[str, int, int], float]  # (start or "scratch", K, seed) -> mIoU in %


def collect(probes: Path, prefix: str = PREFIX) -> Scores:
    """mIoU of the ``prefix`` probes of 500 steps, by (start, K, subset seed)."""
    name = re.compile(rf"^{re.escape(prefix)}_([a-z0-9]+)_K(\d+)_s(\d+)$")
    runs: Scores = {}
    for r in read_jsonl(probes):
        m = name.match(r["run"])
        if m and r["steps"] == 500:
            runs[(m.group(1), r["k"], r["subset_seed"])] = 100 * r["miou"]
    return runs


def _ks(runs: Scores, starts: list[str]) -> list[int]:
    """The K values with a scratch run and a run of one of ``starts``."""
    scratch = {k for (s, k, _) in runs if s == "scratch"}
    return sorted({k for (s, k, _) in runs if s in starts} & scratch)


def leads(runs: Scores, start: str, k: int) -> dict[int, float]:
    """SSL − scratch mIoU per subset seed where both runs exist."""
    return {
        seed: runs[(start, kk, seed)] - runs[("scratch", kk, seed)]
        for (s, kk, seed) in runs
        if s == start and kk == k and ("scratch", kk, seed) in runs
    }


def markdown(runs: Scores, starts: list[str]) -> str:
    """Per-subset mIoU (lead over scratch), then each start's mean lead over its subsets."""
    ks = _ks(runs, starts)
    head = ["K", "subset seed", "scratch"] + [STARTS.get(s, s) for s in starts]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_k = {k: {s: leads(runs, s, k) for s in starts} for k in ks}
    for k in ks:
        for seed in sorted({sd for (s, kk, sd) in runs if kk == k and s == "scratch"}):
            cells = [f"{runs[('scratch', k, seed)]:.1f}"]
            for s in starts:
                lead = by_k[k][s].get(seed)
                cells.append("" if lead is None else f"{runs[(s, k, seed)]:.1f} ({signed(lead)})")
            lines.append(f"| {k} | {seed} | " + " | ".join(cells) + " |")
    lines.append("")
    for k in ks:
        parts = [
            f"{STARTS.get(s, s)} {signed(sum(lead.values()) / len(lead))} ({len(lead)} subset(s))"
            for s, lead in by_k[k].items()
            if lead
        ]
        lines.append(f"- K = {k}, mean SSL − scratch mIoU: " + "; ".join(parts))
    return "\n".join(lines)


def plot(runs: Scores, starts: list[str], out: Path, held: int = 100) -> Path:
    """Bars of the mean lead per start and K, a dot per subset, the targets dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = _ks(runs, starts)
    width = 0.8 / len(starts)
    colors = ["tab:gray", "tab:orange", "tab:blue", "tab:green", "tab:purple"]
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for i, s in enumerate(starts):
        labelled = False
        for j, k in enumerate(ks):
            lead = list(leads(runs, s, k).values())
            if not lead:
                continue
            x = j - 0.4 + width * (i + 0.5)
            label = None if labelled else STARTS.get(s, s)
            mean_bar(ax, x, lead, width, colors[i % len(colors)], label)
            labelled = True
    target_axes(ax, ks)
    ax.set_ylabel(f"SSL − scratch, mIoU (both held {held} of 500 steps)")
    ax.set_title("SSL lead by stage-1 cost (spark recipe, two CPU threads)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return save_png(fig, out)


def main(argv: list[str] | None = None) -> int:
    ap = argument_parser(__doc__)
    ap.add_argument("--starts", nargs="+", default=DEFAULT_STARTS, help="probe start labels")
    ap.add_argument("--prefix", default=PREFIX, help="probe name prefix: lpft<held steps>")
    ap.add_argument("--probes", default=str(probes_file()), help="the probes' records")
    ap.add_argument(
        "--out", default=None, help="the plot (default stage1_budget[_<prefix>].png beside them)"
    )
    ap.add_argument("--markdown", action="store_true", help="also print the table")
    args = ap.parse_args(argv)
    runs = collect(Path(args.probes), args.prefix)
    starts = [s for s in args.starts if any(key[0] == s for key in runs)]
    if not starts or ("scratch" not in {key[0] for key in runs}):
        raise SystemExit(f"no {args.prefix} probes of 500 steps for {args.starts} and scratch")
    held = int(args.prefix.removeprefix("lpft"))
    suffix = "" if args.prefix == PREFIX else f"_{args.prefix}"
    out = Path(args.out or probes_file().with_name(f"stage1_budget{suffix}.png"))
    if args.markdown:
        print(markdown(runs, starts) + "\n")
    print(f"wrote {plot(runs, starts, out, held)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
