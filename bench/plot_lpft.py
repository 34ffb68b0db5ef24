"""Fine-tuning with the backbone held for the first steps (LP-FT) against the study's recipe.

Usage:
    .venv/bin/python bench/plot_lpft.py [--markdown] [--prefix lpft100 lpft200] [--epochs 80]

Issue 5 §1, "what the fine-tune keeps". Pairs the probes ``<prefix>_e<epochs>_K<k>_s<seed>``
and ``<prefix>_scratch_K<k>_s<seed>`` (``bench/probe_finetune.py --head-only-steps N``) with
the same start, K and subset fine-tuned the study's way at the same length (``e<epochs>_…`` and
``scratch_…_<n>steps`` in ``probes.jsonl``, or the study's own runs), prints the Markdown table
BENCHMARKS.md quotes and draws SSL − scratch mIoU for both recipes: one dot per subset seed, a
bar for their mean.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from plot_finetune_length import _signed, collect_by_epochs  # noqa: E402
from plot_stage1_length import SOURCES  # noqa: E402

Scores = dict[tuple[int, int, int], tuple[float, float]]  # (epochs or 0, K, seed) -> F1, mIoU


def collect_lpft(probes: Path, prefix: str) -> tuple[Scores, int]:
    """The ``prefix`` probes as (stage-1 epochs or 0, K, seed) -> (mean F1, mIoU) in %, and
    their fine-tune length (one length for all of them)."""
    from trainer.engine import read_jsonl

    name = re.compile(rf"^{re.escape(prefix)}_(?:e(\d+)|scratch)_K\d+_s\d+$")
    runs: Scores = {}
    steps = set()
    for r in read_jsonl(probes):
        m = name.match(r["name"])
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
        cells.append(_signed(r["ssl"][1] - r["scratch"][1]))
        cells += [f"{r[a][0]:.1f} / {r[a][1]:.1f}" for a in ("ssl_lpft", "scratch_lpft")]
        cells.append(_signed(r["ssl_lpft"][1] - r["scratch_lpft"][1]))
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
            + ", ".join(_signed(g) for g in best)
            + f" mIoU (mean {_signed(sum(best) / len(best))})"
        )
    return "\n".join(lines)


def _mean_gap(table: list[dict], a: str, b: str) -> str:
    """Mean of ``a`` − ``b`` in mIoU over the rows, signed."""
    return _signed(sum(r[a][1] - r[b][1] for r in table) / len(table))


def mean_bar(ax: Any, x: float, values: list[float], width: float, color: str, label: str | None):
    """A bar at the mean of ``values`` and a black dot for each of them."""
    mean = sum(values) / len(values)
    ax.bar(x, mean, width=width * 0.95, color=color, alpha=0.6, label=label)
    ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)


def target_axes(ax: Any, ks: list[int]) -> None:
    """The issue's margins (K = 10: +5, K = 50: +3 mIoU) dashed, a zero line, one tick per K."""
    for j, k in enumerate(ks):
        target = {10: 5, 50: 3}.get(k)
        if target:
            ax.hlines(target, j - 0.45, j + 0.45, colors="tab:red", linestyles="dashed")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(ks)), [f"K = {k}" for k in ks])


def plot(tables: dict[str, list[dict]], out: Path) -> Path:
    """Bars of the mean SSL − scratch mIoU per K: the study's recipe (from the first table's
    rows), then each hold; a dot per subset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from plot_study import save_png

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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", nargs="+", default=["lpft100"], help="probe name prefixes")
    ap.add_argument("--epochs", type=int, default=80, help="stage-1 epochs of the SSL start")
    ap.add_argument("--probes", default=str(RESULTS / "probes.jsonl"))
    ap.add_argument("--out", default=str(RESULTS / "lpft.png"))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    plain = collect_by_epochs([RESULTS / name for name in SOURCES], Path(args.probes))
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
