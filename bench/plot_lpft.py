"""Fine-tuning with the backbone held for the first steps (LP-FT) against the study's recipe.

Usage:
    .venv/bin/python -m bench.plot_lpft [--markdown] [--prefix lpft100 lpft200] [--epochs 80]

Issue 5 §1, "what the fine-tune keeps". Pairs the probes ``<prefix>_e<epochs>_K<k>_s<seed>``
and ``<prefix>_scratch_K<k>_s<seed>`` (``python -m bench.probe_finetune --head-only-steps N``) with
the same start, K and subset fine-tuned the study's way at the same length (``e<epochs>_…`` and
``scratch_…_<n>steps`` in ``probes.jsonl``, or the study's own runs), prints the Markdown table
BENCHMARKS.md quotes and draws SSL − scratch mIoU for both recipes: one dot per subset seed, a
bar for their mean.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.harness import argument_parser, read_jsonl
from bench.plotting import mean_bar, save_png, signed, target_axes
from bench.runs import collect_by_epochs, probes_file, stage1_length_files

Scores = dict[tuple[int, int, int], tuple[float, float]]  # (epochs or 0, K, seed) -> F1, mIoU


def collect_lpft(probes: Path, prefix: str) -> tuple[Scores, int]:
    """The ``prefix`` probes as (stage-1 epochs or 0, K, seed) -> (mean F1, mIoU) in %, and
    their fine-tune length (one length for all of them)."""
    name = re.compile(rf"^{re.escape(prefix)}_(?:e(\d+)|scratch)_K\d+_s\d+$")
    runs: Scores = {}
    steps = set()
    for r in read_jsonl(probes):
        m = name.match(r["run"])
        if m:
            runs[(int(m.group(1) or 0), r["k"], r["subset_seed"])] = (
                100 * r["mean_f1"],
                100 * r["miou"],
            )
            steps.add(r["steps"])
    if len(steps) != 1:
        raise SystemExit(
            f"{prefix}: expected probes of one fine-tune length, found {steps or 'none'}"
        )
    return runs, steps.pop()


def rows(lpft: Scores, plain: Scores, epochs: int) -> list[dict]:
    """One row per (K, seed) with all four runs: both recipes, SSL and scratch."""
    out = []
    for e, k, seed in sorted(lpft):
        keys = [(epochs, k, seed), (0, k, seed)]
        if e != epochs or not all(key in lpft and key in plain for key in keys):
            continue
        ssl, scratch = (lpft[key] for key in keys)
        ssl0, scratch0 = (plain[key] for key in keys)
        out.append(
            {
                "k": k,
                "seed": seed,
                "ssl": ssl0,
                "scratch": scratch0,
                "ssl_lpft": ssl,
                "scratch_lpft": scratch,
            }
        )
    return out


def markdown(table: list[dict], epochs: int, hold: str) -> str:
    """The per-subset table, then the mean lead per K and recipe."""
    head = [
        "K",
        "subset seed",
        f"SSL ({epochs} ep.)",
        "scratch",
        "SSL − scratch",
        f"SSL, {hold}",
        f"scratch, {hold}",
        "SSL − scratch",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [f"{r[a][0]:.1f} / {r[a][1]:.1f}" for a in ("ssl", "scratch")]
        cells.append(signed(r["ssl"][1] - r["scratch"][1]))
        cells += [f"{r[a][0]:.1f} / {r[a][1]:.1f}" for a in ("ssl_lpft", "scratch_lpft")]
        cells.append(signed(r["ssl_lpft"][1] - r["scratch_lpft"][1]))
        lines.append(f"| {r['k']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines.append("")
    for k in sorted({r["k"] for r in table}):
        sub = [r for r in table if r["k"] == k]
        lines.append(
            f"- K = {k}, {len(sub)} subset(s), mean mIoU: SSL − scratch "
            f"{_mean_gap(sub, 'ssl', 'scratch')} (study's recipe), "
            f"{_mean_gap(sub, 'ssl_lpft', 'scratch_lpft')} ({hold}); "
            f"{hold} against the study's recipe: SSL {_mean_gap(sub, 'ssl_lpft', 'ssl')}, "
            f"scratch {_mean_gap(sub, 'scratch_lpft', 'scratch')}"
        )
        best = [r["ssl_lpft"][1] - max(r["scratch"][1], r["scratch_lpft"][1]) for r in sub]
        lines.append(
            f"- K = {k}, SSL ({hold}) against scratch in its better recipe, per subset: "
            + ", ".join(signed(g) for g in best)
            + f" mIoU (mean {signed(sum(best) / len(best))})"
        )
    return "\n".join(lines)


def _mean_gap(table: list[dict], a: str, b: str) -> str:
    """Mean of ``a`` − ``b`` in mIoU over the rows, signed."""
    return signed(sum(r[a][1] - r[b][1] for r in table) / len(table))


def plot(tables: dict[str, list[dict]], out: Path) -> Path:
    """Bars of the mean SSL − scratch mIoU per K: the study's recipe (from the first table's
    rows), then each hold; a dot per subset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(tables.values()))
    recipes = [("study's recipe", first, "ssl", "scratch")]
    recipes += [(f"backbone {hold}", t, "ssl_lpft", "scratch_lpft") for hold, t in tables.items()]
    colors = ["tab:gray", "tab:blue", "tab:green", "tab:purple"]
    ks = sorted({r["k"] for r in first})
    width = 0.8 / len(recipes)
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for i, (label, table, a, b) in enumerate(recipes):
        for j, k in enumerate(ks):
            lead = [r[a][1] - r[b][1] for r in table if r["k"] == k]
            if not lead:
                continue
            x = j - 0.4 + width * (i + 0.5)
            mean_bar(ax, x, lead, width, colors[i % len(colors)], label if j == 0 else None)
    target_axes(ax, ks)
    ax.set_ylabel("SSL − scratch, mIoU (one identical recipe)")
    ax.set_title("SSL lead over scratch, backbone held for the first steps or not", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return save_png(fig, out)


def main(argv: list[str] | None = None) -> int:
    ap = argument_parser(__doc__)
    ap.add_argument("--prefix", nargs="+", default=["lpft100"], help="probe name prefixes")
    ap.add_argument("--epochs", type=int, default=80, help="stage-1 epochs of the SSL start")
    ap.add_argument("--probes", default=str(probes_file()), help="the probes' records")
    ap.add_argument("--out", default=str(probes_file().with_name("lpft.png")), help="the plot")
    ap.add_argument("--markdown", action="store_true", help="also print the tables")
    args = ap.parse_args(argv)
    plain = collect_by_epochs(stage1_length_files(), Path(args.probes))
    tables: dict[str, list[dict]] = {}
    for prefix in args.prefix:
        lpft, steps = collect_lpft(Path(args.probes), prefix)
        same_length = {(e, k, s): v for (e, k, s, n), v in plain.items() if n == steps}
        table = rows(lpft, same_length, args.epochs)
        if not table:
            raise SystemExit(f"no {prefix} probe has its study-recipe counterparts yet")
        hold = f"held {prefix.removeprefix('lpft')} steps"
        tables[hold] = table
        if args.markdown:
            print(markdown(table, args.epochs, hold) + "\n")
    print(f"wrote {plot(tables, Path(args.out))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
