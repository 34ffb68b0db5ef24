"""The study's results file: ``<stem>.json`` (every run, per-class scores, timings, settings) and
``<stem>.csv`` (one row per run), the summary they hold and the table the study prints.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from bench.harness import record_output, write_bytes
from bench.recipes import StudySettings
from trainer.labels import LAPA


def read_study(path: str | Path) -> dict[str, Any]:
    """A study results file (``bench.study``, ``bench.ssl_length``) as written."""
    return json.loads(Path(path).read_text())


def summarize(runs: list[dict[str, Any]], settings: StudySettings) -> dict[str, Any]:
    """Headline table (seed 0 per arm and K), per-class F1 at K = 10, the seed spread."""
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in runs:
        if r["seed"] == 0:
            table.setdefault(str(r["k"]), {})[r["arm"]] = {
                "mean_f1": r["mean_f1"],
                "miou": r["miou"],
            }
    spread: dict[str, Any] = {}
    k_min = min(settings.ks)
    for arm in arms:
        vals = [r for r in runs if r["arm"] == arm and r["k"] == k_min]
        if len(vals) >= 2:
            f1s = [r["mean_f1"] or 0.0 for r in vals]
            ious = [r["miou"] or 0.0 for r in vals]
            spread[arm] = {
                "k": k_min,
                "seeds": [r["seed"] for r in vals],
                "mean_f1_mean": statistics.mean(f1s),
                "mean_f1_std": statistics.stdev(f1s),
                "mean_f1_range": [min(f1s), max(f1s)],
                "miou_mean": statistics.mean(ious),
                "miou_std": statistics.stdev(ious),
                "miou_range": [min(ious), max(ious)],
            }
    per_class_k10 = {r["arm"]: r["f1"] for r in runs if r["k"] == 10 and r["seed"] == 0}
    return {"arms": arms, "table": table, "seed_spread": spread, "per_class_f1_k10": per_class_k10}


def _pct(v: float | None) -> str:
    return "  n/a" if v is None else f"{100 * v:5.1f}"


def format_summary(summary: dict[str, Any], pretrain: dict[str, Any]) -> str:
    """The study's closing printout: mean F1 / mIoU per K and arm, per-class F1 at K = 10, the
    seed spread and each stage 1's masked share and final loss."""
    lines = []
    arms = summary["arms"]
    head = f"{'K':>5} | " + " | ".join(f"{a:>16}" for a in arms)
    lines += ["mean F1 (10 fg) / mIoU (11), validation faces", head, "-" * len(head)]
    for k in sorted(summary["table"], key=int):
        row = summary["table"][k]
        cells = []
        for a in arms:
            v = row.get(a)
            cells.append(f"{_pct(v['mean_f1'])} / {_pct(v['miou'])}".rjust(16) if v else " " * 16)
        lines.append(f"{k:>5} | " + " | ".join(cells))
    if summary["per_class_f1_k10"]:
        classes = LAPA.classes[1:]
        lines += [
            "",
            "per-class F1 at K = 10",
            f"{'class':<14}" + "".join(f"{a:>16}" for a in summary["per_class_f1_k10"]),
        ]
        for c in classes:
            lines.append(
                f"{c:<14}"
                + "".join(f"{_pct(f.get(c)):>16}" for f in summary["per_class_f1_k10"].values())
            )
    for arm, s in summary["seed_spread"].items():
        lines.append(
            f"K={s['k']} {arm}: seeds {s['seeds']}: mean F1 {100 * s['mean_f1_mean']:.1f} ± "
            f"{100 * s['mean_f1_std']:.1f} (range {100 * s['mean_f1_range'][0]:.1f}–"
            f"{100 * s['mean_f1_range'][1]:.1f}), mIoU {100 * s['miou_mean']:.1f} ± {100 * s['miou_std']:.1f}"
        )
    for recipe, p in pretrain.items():
        share = p.get("masked_share_of_center")
        lines.append(
            f"stage 1 {recipe}: {p.get('steps')} steps on {p.get('images')} images, masked share of the "
            f"central region {100 * share:.1f}%, final loss {p.get('final_loss'):.4f}"
            + (
                f" (finished at the fine-tune's side after {p['first'].get('steps')} steps, "
                f"final loss then {p['first'].get('final_loss') or float('nan'):.4f})"
                if p.get("first")
                else ""
            )
            if share is not None and p.get("final_loss") is not None
            else f"stage 1 {recipe}: {p.get('steps')} steps, checkpoint {p.get('checkpoint')}"
        )
    return "\n".join(lines)


def write_results(path: Path, payload: dict[str, Any], command: str | None = None) -> None:
    """Write ``<path>.json`` (the payload) and ``<path>.csv`` (one row per run: arm, K, seed,
    mean F1, mIoU and per-class F1 in %) atomically, and name both in their manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path.with_suffix(".json"), json.dumps(payload, indent=1).encode())
    buf = io.StringIO()
    classes = LAPA.classes[1:]
    writer = csv.writer(buf)
    writer.writerow(["arm", "k", "seed", "mean_f1", "miou", *[f"f1_{c}" for c in classes]])
    for r in payload["runs"]:
        writer.writerow(
            [
                r["arm"],
                r["k"],
                r["seed"],
                _round(r["mean_f1"]),
                _round(r["miou"]),
                *[_round(r["f1"].get(c)) for c in classes],
            ]
        )
    write_bytes(path.with_suffix(".csv"), buf.getvalue().encode())
    for suffix in (".json", ".csv"):
        record_output(path.with_suffix(suffix), command or payload.get("command"))


def _round(v: float | None) -> float | str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else round(100 * v, 2)
