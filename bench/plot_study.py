"""Plot the label-efficiency study: mean F1 and mIoU on the validation faces against K, per init.

Usage:
    .venv/bin/python -m bench.plot_study [bench/results/study/study.json] [--out bench/results/study/study.png]

Reads the results file written by ``bench.study`` (seed-0 runs form the curves; where a K has
several subset seeds, their range is drawn as an error bar) and writes a two-panel PNG.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.harness import argument_parser, results_dir
from bench.plotting import save_png, signed
from bench.study_results import read_study


def _steps_text(settings: dict[str, Any]) -> str:
    """ "250" or "250 (K=50: 500, K=600: 750)" from the study's settings."""
    extra = ", ".join(f"K={k}: {n}" for k, n in settings.get("steps_for_k") or [])
    return f"{settings.get('finetune_steps')}" + (f" ({extra})" if extra else "")


def _preset_size(preset: str | None) -> int | str:
    from trainer.models import PRESETS

    return PRESETS[preset].input_size if preset in PRESETS else "?"


def plot(results: dict, out: Path) -> Path:
    """Write the PNG for a study results dict; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    by_arm: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_arm[r["arm"]][r["k"]].append(r)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for ax, metric, title in zip(
        axes, ("mean_f1", "miou"), ("mean F1, 10 fg classes", "mIoU, 11 classes"), strict=True
    ):
        for arm, per_k in by_arm.items():
            ks = sorted(per_k)
            y = [
                100 * next((r[metric] or 0 for r in per_k[k] if r["seed"] == 0), float("nan"))
                for k in ks
            ]
            lo = [100 * min(r[metric] or 0 for r in per_k[k]) for k in ks]
            hi = [100 * max(r[metric] or 0 for r in per_k[k]) for k in ks]
            err = [
                [max(0.0, a - b) for a, b in zip(y, lo, strict=True)],
                [max(0.0, c - a) for a, c in zip(y, hi, strict=True)],
            ]
            ax.errorbar(ks, y, yerr=err, marker="o", capsize=3, label=arm)
        ax.set_xscale("log")
        ax.set_xlabel("labeled faces K")
        ax.set_ylabel("%")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_xticks(sorted({r["k"] for r in runs}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend()
    s = results.get("settings", {})
    fig.suptitle(
        f"{s.get('preset', '?')} preset, {s.get('input_size') or _preset_size(s.get('preset'))} px, "
        f"{_steps_text(s)} fine-tune steps × {s.get('finetune_batch')}"
        + (
            f", backbone held for the first {s['head_only_steps']}"
            if s.get("head_only_steps")
            else ""
        )
        + "; "
        f"bars: range over subset seeds {list(s.get('seeds', []))}",
        fontsize=9,
    )
    return save_png(fig, out)


def best_scratch(runs: list[dict], reference: list[dict], k: int, seed: int) -> float | None:
    """The best scratch mIoU at (K, subset seed) over the study's scratch arms and the reference
    study's scratch runs of the same length: scratch in its better recipe."""
    steps = {r["steps"] for r in runs if r["k"] == k}
    found = [
        r["miou"]
        for r in runs + [r for r in reference if r["steps"] in steps]
        if r["arm"].startswith("scratch") and r["k"] == k and r["seed"] == seed
    ]
    return max(found) if found else None


def markdown(results: dict, reference: dict | None = None) -> str:
    """The study's tables as Markdown: mean F1 / mIoU per K and arm (seed 0) with each SSL arm's
    mIoU lead over scratch (and, given a reference study with another recipe, over the better
    scratch of the two), the seed spread at the smallest K, and per-class F1 at K = 10."""
    runs = results["runs"]
    ref_runs = reference["runs"] if reference else []
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    ssl_arms = [a for a in arms if a.startswith("ssl-")] if "scratch" in arms else []
    ks = sorted({r["k"] for r in runs})
    seed0 = {(r["arm"], r["k"]): r for r in runs if r["seed"] == 0}
    leads = [f"{a} − scratch, mIoU" for a in ssl_arms]
    if reference:
        leads += [f"{a} − better scratch, mIoU" for a in ssl_arms]
    lines = ["| K | steps | " + " | ".join([f"{a} mean F1 / mIoU" for a in arms] + leads) + " |"]
    lines.append("|---" * (len(arms) + len(leads) + 2) + "|")
    for k in ks:
        cells = []
        for a in arms:
            r = seed0.get((a, k))
            cells.append(f"{100 * r['mean_f1']:.1f} / {100 * r['miou']:.1f}" if r else "")
        base = seed0.get(("scratch", k))
        for a in ssl_arms:
            r = seed0.get((a, k))
            cells.append(signed(100 * (r["miou"] - base["miou"])) if r and base else "")
        best = best_scratch(runs, ref_runs, k, 0)
        for a in ssl_arms if reference else []:
            r = seed0.get((a, k))
            cells.append(signed(100 * (r["miou"] - best)) if r and best is not None else "")
        steps = sorted({r["steps"] for r in runs if r["k"] == k})
        lines.append(f"| {k} | {'/'.join(map(str, steps))} | " + " | ".join(cells) + " |")
    k_min = min(ks)
    spread = []
    for a in arms:
        rs = sorted((r for r in runs if r["arm"] == a and r["k"] == k_min), key=lambda r: r["seed"])
        if len(rs) > 1:
            f1 = [100 * r["mean_f1"] for r in rs]
            iou = [100 * r["miou"] for r in rs]
            spread.append(
                f"- K = {k_min}, {a}, subset seeds {[r['seed'] for r in rs]}: mean F1 "
                + ", ".join(f"{v:.1f}" for v in f1)
                + f" (mean {sum(f1) / len(f1):.1f}, range {max(f1) - min(f1):.1f}); mIoU "
                + ", ".join(f"{v:.1f}" for v in iou)
                + f" (mean {sum(iou) / len(iou):.1f})"
            )
    for a in ssl_arms:
        pairs = [
            (r, o)
            for r in runs
            for o in runs
            if r["arm"] == a
            and o["arm"] == "scratch"
            and r["k"] == o["k"] == k_min
            and r["seed"] == o["seed"]
        ]
        if len(pairs) > 1:
            leads = [
                100 * (r["miou"] - o["miou"]) for r, o in sorted(pairs, key=lambda p: p[0]["seed"])
            ]
            spread.append(
                f"- K = {k_min}, {a} − scratch per subset: "
                + ", ".join(map(signed, leads))
                + f" mIoU (mean {signed(sum(leads) / len(leads))})"
            )
            if reference:
                better = [
                    100 * (r["miou"] - (best_scratch(runs, ref_runs, k_min, r["seed"]) or 0.0))
                    for r, _ in sorted(pairs, key=lambda p: p[0]["seed"])
                ]
                spread.append(
                    f"- K = {k_min}, {a} − scratch in its better recipe per subset: "
                    + ", ".join(map(signed, better))
                    + f" mIoU (mean {signed(sum(better) / len(better))})"
                )
    if spread:
        lines += ["", *spread]
    at10 = [a for a in arms if (a, 10) in seed0]
    if at10:
        classes = list(seed0[(at10[0], 10)]["f1"])[1:]
        lines += ["", "| F1 at K = 10 | " + " | ".join(at10) + " |", "|---" * (len(at10) + 1) + "|"]
        for c in classes:
            lines.append(
                f"| {c} | "
                + " | ".join(f"{100 * seed0[(a, 10)]['f1'][c]:.1f}" for a in at10)
                + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "results",
        nargs="?",
        default=str(results_dir("study") / "study.json"),
        help="a study results file",
    )
    parser.add_argument("--out", default=None, help="PNG path (default: beside the results, .png)")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    parser.add_argument(
        "--reference",
        default=None,
        help="results of the same study with another recipe: adds SSL − the better scratch",
    )
    args = parser.parse_args(argv)
    path = Path(args.results)
    if args.markdown:
        reference = read_study(args.reference) if args.reference else None
        print(markdown(read_study(path), reference))
    out = Path(args.out) if args.out else path.with_suffix(".png")
    print(plot(read_study(path), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
