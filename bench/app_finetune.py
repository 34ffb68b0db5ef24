"""Does the app's fine-tuning make the next pre-label better? (issue 5 §3)

The app starts fine-tuning from the starter parser by default, with its own recipe
(``faceparse_app.training.run_finetune_job``: 30 epochs of batch 4, a fifth of the labeled faces
held out to pick the best epoch; a parser start at lr 1e-3, 1e-2 before 2026-11-30), and the new
version becomes the active one at once. This script runs exactly that code on K new labeled
faces, at the rates given, and scores the published checkpoint on faces nobody trained on,
beside the parser it started from.

The start is the starter build's held-out parser (``bench.build_starters`` stage 3: the
study's SSL backbone fine-tuned on the pool minus 10 faces), which never saw a validation face.
The new faces are drawn (seeded) from the study's 100 validation faces and every score is on
the other 100 - K, plus the 6 HELEN faces; or, with ``--faces helen --k 5``, each HELEN face is
left out in turn (seeds 0-5) and scored after a fine-tune on the other five. With
``--convention neck-skin`` the new and the scored faces label the neck as skin (the parser calls
it background, as LaPa does): does the fine-tune learn a team's own convention? The parser alone
is scored on the same faces, and on the faces the app holds out, so a rule such as "publish only
when the held-out faces improve" can be checked from the results.

Usage (needs bench.build_starters's stage 3 and bench.study's data stage):
    .venv/bin/python -m bench.app_finetune --quick    # the pipeline, in a minute
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.app_finetune --lrs 1e-4,1e-3,1e-2 --threads 1
    ... --faces helen --k 5 --subsets 0-5 | --convention neck-skin [--k 25]   (the same --lrs)
    ... --score-last --lrs 1e-3,1e-2 (same case flags): the runs' last weights, scored alike
    .venv/bin/python -m bench.app_finetune --summary [--faces helen --k 5 | --convention ...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.finetunes import score_checkpoint
from bench.harness import (
    ENVELOPE,
    SHARED,
    append_jsonl,
    argument_parser,
    command_line,
    experiment_of,
    int_range,
    jsonl_record,
    out_dir,
    read_jsonl,
    record_output,
    require,
    results_dir,
)
from bench.recipes import STUDY_OUT
from faceparse_app.training import run_finetune_job
from trainer.data.imageio import read_label
from trainer.data.lapa import LapaDataset
from trainer.data.sample import NamedSamples, Sample
from trainer.evaluate import evaluate
from trainer.predict import Predictor
from trainer.run_files import RunFiles
from trainer.subsets import select_labeled_subset

EXPERIMENT = "app_finetune"
JSONL_NOTE = "one record per fine-tune or parser score; each record holds the command that wrote it"
# What a --score-last record does not copy from the run it re-scores: the envelope (written anew)
# and the fields records had in its place before it.
ENVELOPE_AND_OLD = (*ENVELOPE, "name", "date")
PARSER = RunFiles(out_dir("starters") / "parser_pool_minus_k10", "finetune").last
DATA = STUDY_OUT / "data"
CELEBA_MASKS = SHARED / "celebamask-hq-dev" / "masks"
NECK, SKIN = 17, 1  # CelebAMask-HQ's neck; LaPa's skin


def run_name(lr: float | None, args: argparse.Namespace, seed: int) -> str:
    """``parser_K10_s0`` for the start alone, ``app_lr0.01_K10_s0`` for a fine-tune; tagged
    ``helen-`` for new faces from HELEN, ``neck-skin-`` for the convention, ``quick-``."""
    arm = "parser" if lr is None else f"app_lr{lr:g}"
    tag = "quick-" * args.quick + "helen-" * (args.faces == "helen")
    tag += f"{args.convention}-" * (args.convention != "none")
    return f"{tag}{arm}_K{args.k}_s{seed}"


def new_faces(names: list[str], k: int, seed: int) -> list[str]:
    """The seeded draw of K new faces; with K = N - 1, seed s leaves out the s-th face (sorted),
    so seeds 0..N-1 are a leave-one-out pass."""
    if k == len(names) - 1:
        left = sorted(names)[seed % len(names)]
        return [n for n in sorted(names) if n != left]
    return select_labeled_subset(names, num_labeled=k, seed=seed)


class NeckAsSkin(NamedSamples):
    """CelebA faces labeled by a team whose convention differs from the starter parser's: the
    neck (CelebAMask-HQ class 17, background in LaPa) is skin. ``only_neck`` keeps just the neck
    pixels (the rest 255, ignored), so a score's pixel accuracy is the share of neck called skin."""

    def __init__(self, faces: NamedSamples, only_neck: bool = False) -> None:
        self.faces, self.names, self.only_neck = faces, faces.names, only_neck

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        sample = self.faces[i]
        neck = read_label(CELEBA_MASKS / f"{sample.name}.png") == NECK
        label = np.full_like(sample.label, 255) if self.only_neck else sample.label.copy()
        label[neck] = SKIN
        return replace(sample, label=label)


def face_sets(
    args: argparse.Namespace, seed: int
) -> tuple[NamedSamples, dict[str, Sequence[Sample]], list[str]]:
    """The K new faces, the sets to score on (``unseen``: the source's other faces), and the names
    of the new faces, for ``--faces`` and ``--convention``."""
    celeba = LapaDataset(Path(args.data), split="val")
    helen = LapaDataset(SHARED / "lapa-format-helen", split="test")
    source = helen if args.faces == "helen" else celeba
    new = new_faces(source.names, args.k, seed)
    unseen = source.select([n for n in source.names if n not in set(new)])
    train = source.select(new)
    if args.quick:
        unseen = source.select(unseen.names[:4])
    if args.convention == "neck-skin":  # HELEN's labels have no neck: CelebA faces only
        return (
            NeckAsSkin(train),
            {"unseen": NeckAsSkin(unseen), "neck": NeckAsSkin(unseen, True)},
            new,
        )
    other = {"celeba": celeba} if args.faces == "helen" else {"helen": helen}
    return train, {"unseen": unseen, **({} if args.quick else other)}, new


def scores(checkpoint: Path, sets: dict[str, Sequence[Sample]]) -> dict[str, Any]:
    """mean F1, mIoU and per-class F1 per set; for the ``neck`` set, the share of neck pixels
    predicted as skin."""
    out = score_checkpoint(checkpoint, {k: v for k, v in sets.items() if k != "neck"})
    if "neck" in sets:
        neck = evaluate(
            Predictor.from_checkpoint(checkpoint, device="cpu", framing="whole"),
            sets["neck"],
            batch_size=8,
        )
        out["neck"] = {"as_skin": neck["pixel_accuracy"]}
    return out


def one_subset(args: argparse.Namespace, seed: int, lr: float | None) -> dict[str, Any]:
    """Fine-tune from the parser on one draw of K faces (or, lr None, score the parser alone)."""
    train, sets, new = face_sets(args, seed)
    record: dict[str, Any] = {
        "run": run_name(lr, args, seed),
        "k": args.k,
        "subset_seed": seed,
        "faces": args.faces,
        "convention": args.convention,
        "new_faces": new,
        "start": str(args.parser),
    }
    if lr is None:
        record["scores"] = scores(Path(args.parser), sets)
        return record
    t0 = time.perf_counter()
    result = run_finetune_job(
        train,
        Path(args.out) / record["run"],
        init_backbone=args.parser,
        epochs=args.epochs,
        max_steps=2 if args.quick else None,
        batch_size=args.batch,
        lr=lr,
        device="cpu",
    )
    held_out = train.select(result.val_names)
    record.update(
        lr=lr,
        epochs=args.epochs,
        batch=args.batch,
        train_seconds=round(time.perf_counter() - t0, 1),
        held_out_faces=result.val_names,
        best_epoch=result.metrics.get("epoch"),
        scores=scores(result.best_path, {**sets, "held_out": held_out}),
        start_scores={
            "held_out": score_checkpoint(Path(args.parser), {"held_out": held_out})["held_out"]
        },
    )
    return record


def last_epoch(args: argparse.Namespace, seed: int, run: dict[str, Any]) -> dict[str, Any] | None:
    """The same fine-tune's last weights (epoch 30) scored like its best epoch: would the app do
    better publishing the end of the run than the epoch its held-out faces picked? None when the
    run folder is gone."""
    checkpoint = RunFiles(Path(args.out) / run["run"], "finetune").last
    if not checkpoint.is_file():
        return None
    train, sets, _ = face_sets(args, seed)
    held_out = train.select(run["held_out_faces"])
    payload = {k: v for k, v in run.items() if k not in ENVELOPE_AND_OLD}
    return {
        **payload,
        "run": run["run"].replace("app_lr", "last_lr"),
        "best_epoch": run["epochs"],
        "published": "last epoch",
        "scores": scores(checkpoint, {**sets, "held_out": held_out}),
    }


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    if args.faces == "helen" and args.convention != "none":
        raise SystemExit("--convention needs --faces celeba: HELEN's labels have no neck class")
    require(args.parser, "the held-out parser (python -m bench.build_starters, stage 3)")
    require(Path(args.data) / "val", "the study's data stage (python -m bench.study)")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = Path(args.results)
    command = command_line(__spec__.name, argv)
    experiment = experiment_of(results, EXPERIMENT)
    runs = {r.get("run"): r for r in read_jsonl(results)}  # read once: the last record per name
    record_output(results, command, note=JSONL_NOTE)
    lrs = [None] + [float(x) for x in args.lrs.split(",") if x]
    for seed in int_range(args.subsets):
        for lr in lrs:
            name = run_name(lr, args, seed)
            if args.score_last:
                if lr is None or name not in runs or name.replace("app_lr", "last_lr") in runs:
                    continue
                record = last_epoch(args, seed, runs[name])
                if record is None:
                    continue
            elif name in runs:
                continue
            else:
                record = one_subset(args, seed, lr)
            name = record.pop("run")
            record["threads"] = torch.get_num_threads()
            record = jsonl_record(experiment, name, record, command)
            append_jsonl(results, record)  # whole lines: a second process may append beside it
            print(_line(record), flush=True)
    return 0


def _line(r: dict[str, Any]) -> str:
    s = r["scores"]
    parts = [
        f"neck called skin {100 * v['as_skin']:.1f}%" if k == "neck"
        else f"{k} F1 {100 * v['mean_f1']:.1f} / mIoU {100 * v['miou']:.1f}"
        for k, v in s.items()
    ]  # fmt: skip
    extra = f" ({r['train_seconds']:.0f} s, best epoch {r['best_epoch']})" if "lr" in r else ""
    return f"{r['run']}: " + ", ".join(parts) + extra


def summary(args: argparse.Namespace) -> int:
    """Per arm: mean scores and the mean change from the parser alone on the same faces."""
    same = (args.k, args.faces, args.convention)
    # one record per name (two processes may both have scored the parser alone)
    rows = list({
        r["run"]: r for r in read_jsonl(Path(args.results))
        if (r.get("k"), r.get("faces", "celeba"), r.get("convention", "none")) == same
    }.values())  # fmt: skip
    start = {r["subset_seed"]: r["scores"] for r in rows if "lr" not in r}
    arms: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        arms.setdefault(r["run"].rsplit("_K", 1)[0], []).append(r)
    print(
        f"K = {args.k} new {args.faces} faces, convention {args.convention}: mIoU (change from the parser alone)"
    )
    for arm, rs in sorted(arms.items()):
        line = f"{arm:>20} ({len(rs)} subsets):"
        for part, key in (
            ("unseen", "miou"),
            ("helen", "miou"),
            ("celeba", "miou"),
            ("neck", "as_skin"),
        ):
            got = [
                (100 * r["scores"][part][key], r["subset_seed"]) for r in rs if part in r["scores"]
            ]
            if not got:
                continue
            shift = [v - 100 * start[s][part][key] for v, s in got if s in start]
            label = "neck called skin" if part == "neck" else part
            line += f"  {label} {np.mean([v for v, _ in got]):.1f}"
            if shift and "lr" in rs[0]:
                line += f" ({np.mean(shift):+.2f}, {min(shift):+.1f} to {max(shift):+.1f})"
        if "lr" in rs[0]:
            gate = sum(
                r["scores"]["held_out"]["miou"] > r["start_scores"]["held_out"]["miou"] for r in rs
            )
            line += f"  held-out faces improved in {gate}/{len(rs)}"
            line += f"  {np.mean([r['train_seconds'] for r in rs]):.0f} s"
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argument_parser(__doc__)
    ap.add_argument(
        "--parser",
        default=str(PARSER),
        help="the start: a parser never trained on the validation faces",
    )
    ap.add_argument("--data", default=str(DATA), help="the study's data stage (its val split)")
    ap.add_argument(
        "--faces", choices=("celeba", "helen"), default="celeba",
        help="where the new faces come from: the study's validation faces (the parser's own "
        "kind) or the 6 HELEN faces (another dataset; use --k 5 for leave-one-out)",
    )  # fmt: skip
    ap.add_argument(
        "--convention", choices=("none", "neck-skin"), default="none",
        help="neck-skin: the new faces and the scored ones label the neck as skin (the starter "
        "parser calls it background): does the fine-tune learn a team's own convention?",
    )  # fmt: skip
    ap.add_argument("--k", type=int, default=10, help="new labeled faces")
    ap.add_argument("--subsets", default="0-4", help="subset seeds: '0-4' or '0,3'")
    ap.add_argument(
        "--lrs",
        default="1e-3",
        help="the fine-tunes' learning rates, comma-separated (the app's for a parser start: "
        "1e-3 since 2026-11-30, 1e-2 before)",
    )
    ap.add_argument("--epochs", type=int, default=30, help="the app's default: 30")
    ap.add_argument("--batch", type=int, default=4, help="the app's default: 4")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    ap.add_argument(
        "--out-dir",
        "--out",
        dest="out",
        default=str(out_dir("app-finetune")),
        help="working folder (default %(default)s)",
    )
    ap.add_argument(
        "--results",
        default=str(results_dir(EXPERIMENT) / "app_finetune.jsonl"),
        help="JSON-lines results (default %(default)s)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="2 steps, 4 scored faces: checks the pipeline"
    )
    ap.add_argument(
        "--score-last", action="store_true",
        help="score the last weights of the fine-tunes already in --results (tagged last_lr...)",
    )  # fmt: skip
    ap.add_argument("--summary", action="store_true", help="print the table from --results")
    args = ap.parse_args(argv)
    return summary(args) if args.summary else run(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
