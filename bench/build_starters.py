"""Build the starter models the app ships (issue 5 §3) and measure where fine-tuning should start.

Stages (each cached in ``<out>/<stage>/done.json`` like ``bench.study``, so a rerun resumes):
  1. backbone: stage 1 with the study's best recipe (lite preset) on every shared photo: the 700
     ``celebamask-hq-dev`` images and ``faces-unlabeled``; written weights-only to
     ``trainer/assets/models/starter_backbone.safetensors``.
  2. parser: that backbone fine-tuned on all 700 labeled dev faces (LaPa classes, sides fixed as in
     the study) → ``trainer/assets/models/starter_parser.safetensors``. Every CelebA face is training
     data here, so its only unseen check is the 6 HELEN faces (``lapa-format-helen``).
  3. compare: which start is better for K = 10 new labels? With the study's split, a parser is
     fine-tuned on the pool *minus* the study's K = 10 subset (590 faces) from the study's SSL
     backbone, as the starter parser is from the starter backbone; then the K = 10 faces are
     fine-tuned (the study's recipe) from (a) that parser and (b) the SSL backbone. Both are
     scored on the 100 validation faces and the HELEN faces, beside the parser with no
     fine-tuning at all.

Results: ``bench/results/starters/starters.json``; the model card is ``trainer/assets/models/MODEL_CARD.md``.

Usage (after ``bench.study`` has run its data and stage-1 stages with the same stage-1
settings, which default to the study's):
    .venv/bin/python -m bench.build_starters --recipe spark
    # on two cores, stage 3 beside stages 1-2 (one thread each), then a run that gathers results:
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.build_starters --recipe spark --skip-compare &
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.build_starters --recipe spark --compare-only \
        --compare-starts parser   # (--compare-starts backbone in a third, or after the first)
    wait; .venv/bin/python -m bench.build_starters --recipe spark
    # the earlier shipped files (2026-11-28), built with the study's earlier stage 1:
    .venv/bin/python -m bench.build_starters --recipe spark --pretrain-input-size 0 \
        --pretrain-epochs 10 --pretrain-lr 1e-3
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.faces import Joined, prepare_data
from bench.finetunes import score_checkpoint
from bench.harness import (
    SHARED,
    argument_parser,
    command_line,
    load_done,
    machine,
    mark_done,
    out_dir,
    require,
    results_dir,
    setup_logging,
    study_precision,
    utc_now,
    write_json,
)
from bench.recipes import (
    QUICK,
    STUDY_OUT,
    StudySettings,
    finetune_recipe_for,
    finetune_side,
    stage1_tag,
)
from bench.stage1 import run_pretrain
from trainer.configs import FinetuneConfig, FinetuneData, FinetuneRuntime
from trainer.data.lapa import LapaDataset
from trainer.data.sample import Sample
from trainer.finetune import finetune_on_samples
from trainer.recipes import PRETRAIN_RECIPES
from trainer.run_files import RunFiles
from trainer.starter import STARTER_BACKBONE, STARTER_PARSER, write_weights_only
from trainer.subsets import select_labeled_subset

log = logging.getLogger("starters")
LICENCE = (
    "Trained on CelebAMask-HQ-derived images (CelebA-HQ) and public sample photos: for "
    "non-commercial research use only, like CelebA/CelebAMask-HQ themselves."
)


def _finetune(
    stage_dir: Path,
    init: str,
    samples: Sequence[Sample],
    steps: int,
    settings: StudySettings,
    lr_mult: float,
    score_on: dict[str, Sequence[Sample]],
    head_only_steps: int = 0,
    precision: str = "study",
) -> dict[str, Any]:
    """One cached fine-tune with the study's recipe; returns its record (scores included).
    ``head_only_steps``: the study's hold of the backbone, for the K = 10 starts it compares (the
    parsers, hundreds of faces, train every weight from step 1 as when they were first built)."""
    config = FinetuneConfig(
        FinetuneRuntime(
            out_dir=str(stage_dir), progress_bar=False, precision=study_precision("auto", precision)
        ),
        init=init,
        preset=settings.preset,
        input_size=finetune_side(settings),  # not a smaller stage-1 checkpoint's side
        recipe=finetune_recipe_for(
            settings, len(samples), max_steps=steps, backbone_lr_mult=lr_mult,
            head_only_steps=head_only_steps,
        ),
        data=FinetuneData(val_split=None, framing="whole"),  # aligned CelebAMask-HQ crops
    )  # fmt: skip
    key = {**config.flat(), "samples": list(getattr(samples, "names", []))}
    done = load_done(stage_dir, key)
    if done is not None and Path(done["checkpoint"]).is_file():
        return done
    t0 = time.perf_counter()
    result = finetune_on_samples(config, samples, None)
    seconds = time.perf_counter() - t0
    result.best_path.unlink(missing_ok=True)  # no validation: best == last
    record = {
        "init": init,
        "num_faces": len(samples),
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "checkpoint": str(result.last_path),
        "scores": score_checkpoint(result.last_path, score_on),
    }
    log.info("%s: %s", stage_dir.name, _line(record["scores"]))
    return mark_done(stage_dir, key, record)


def _line(scores: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} mean F1 {100 * v['mean_f1']:.1f} / mIoU {100 * v['miou']:.1f}"
        for k, v in scores.items()
    )


def _compare(
    args: argparse.Namespace,
    settings: StudySettings,
    out: Path,
    study_out: Path,
    pool: LapaDataset,
    val: LapaDataset,
    helen: LapaDataset,
    starts: Sequence[str] = ("backbone", "parser"),
) -> dict[str, Any]:
    """Stage 3: K = 10 new labels fine-tuned from the study's SSL backbone and from a parser held
    out from them (``starts`` picks either or both). Needs only the study's stage 1, not the
    starter models."""
    ssl = RunFiles(
        study_out / f"pretrain_{args.recipe}{stage1_tag(settings, args.recipe)}", "pretrain"
    ).last
    k10 = select_labeled_subset(pool.names, num_labeled=10, seed=0)
    rest = [n for n in pool.names if n not in set(k10)]
    sets = {"val": val, "helen": helen}
    new = pool.select(k10)
    steps, hold = settings.finetune_steps, settings.head_only_steps
    result: dict[str, Any] = {"k10_subset": k10}
    if "backbone" in starts:
        result["from_backbone"] = _finetune(
            out / "k10_from_backbone", f"ssl:{ssl}", new, steps, settings,
            args.pretrained_lr_mult, sets, hold,
        )["scores"]  # fmt: skip
    if "parser" in starts:
        held_parser = _finetune(
            out / "parser_pool_minus_k10", f"ssl:{ssl}", pool.select(rest),
            args.heldout_parser_steps, settings, args.pretrained_lr_mult, sets,
        )  # fmt: skip
        result["parser_no_finetune"] = held_parser["scores"]
        result["from_parser"] = _finetune(
            out / "k10_from_parser", f"ckpt:{held_parser['checkpoint']}", new, steps, settings,
            args.pretrained_lr_mult, sets, hold,
        )["scores"]  # fmt: skip
    return result


def _print_compare(compare: dict[str, Any]) -> None:
    for name, scores in compare.items():
        if name != "k10_subset":
            print(f"{name}: {_line(scores)}")


def main(argv: list[str] | None = None) -> int:
    ap = argument_parser(__doc__)
    ap.add_argument("--recipe", choices=sorted(PRETRAIN_RECIPES), default="spark")
    ap.add_argument("--pretrained-lr-mult", type=float, default=1.0)
    ap.add_argument("--pretrain-epochs", type=int, default=StudySettings.pretrain_epochs)
    ap.add_argument(
        "--pretrain-input-size",
        type=int,
        default=StudySettings.pretrain_input_size,
        help="stage 1's side (0 = the preset's)",
    )
    ap.add_argument("--pretrain-lr", type=float, default=StudySettings.pretrain_lr)
    ap.add_argument(
        "--spark-mask-ratio",
        type=float,
        default=StudySettings.spark_mask_ratio,
        help="stage 1's masked share of the central region (spark recipe)",
    )
    # 250 steps (the study's budget) leave 50+ faces underfit (brows and eyes at F1 ~0 for K = 50):
    # the parser that ships gets more.
    ap.add_argument("--parser-steps", type=int, default=1200, help="starter parser: steps of 8")
    ap.add_argument(
        "--heldout-parser-steps", type=int, default=750, help="the comparison's parser: steps of 8"
    )
    ap.add_argument(
        "--out-dir",
        "--out",
        dest="out",
        default=str(out_dir("starters")),
        help="working folder (default %(default)s)",
    )
    ap.add_argument(
        "--study-out", default=str(STUDY_OUT), help="the study's cache (default %(default)s)"
    )
    ap.add_argument(
        "--results",
        default=str(results_dir("starters") / "starters.json"),
        help="results file (default %(default)s)",
    )
    ap.add_argument(
        "--precision",
        choices=("study", "auto", "fp32", "bf16"),
        default="study",
        help="stage 1's and the parser's (the compare keeps the study's); bf16 is how the sparse "
        "recipe's K = 10 study trained on a CPU with native bf16",
    )
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument(
        "--compare-only",
        action="store_true",
        help="run only stage 3 (it needs the study's stage 1, not the starters), e.g. in a second "
        "process beside stages 1-2; a later plain run gathers every cached stage's results",
    )
    ap.add_argument(
        "--compare-starts",
        default="backbone,parser",
        help="stage 3's K = 10 starts (backbone, parser or both), e.g. one per process with "
        "--compare-only",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny budgets, nothing written to assets/: checks the pipeline",
    )
    args = ap.parse_args(argv)
    starts = args.compare_starts.split(",")
    if not starts or set(starts) - {"backbone", "parser"}:
        ap.error(f"--compare-starts: backbone, parser or both, not {args.compare_starts!r}")
    setup_logging()
    settings = replace(
        StudySettings(),
        pretrain_epochs=args.pretrain_epochs,
        pretrain_input_size=args.pretrain_input_size or None,
        pretrain_lr=args.pretrain_lr,
        spark_mask_ratio=args.spark_mask_ratio,
    )
    out, study_out = Path(args.out), Path(args.study_out)
    backbone_dst, parser_dst, results = STARTER_BACKBONE, STARTER_PARSER, Path(args.results)
    if args.quick:
        settings = replace(
            QUICK, pretrain_max_steps=3, finetune_steps=3, split_seed=settings.split_seed
        )
        args.parser_steps = args.heldout_parser_steps = 3
        out = out.with_name(out.name + "-quick")
        backbone_dst, parser_dst = out / backbone_dst.name, out / parser_dst.name
        results = results.with_name(results.stem + "_quick.json")
    data = prepare_data(SHARED / "celebamask-hq-dev", study_out, settings)
    pool = LapaDataset(study_out / "data", split="train")
    val = LapaDataset(study_out / "data", split="val")
    helen = LapaDataset(require(SHARED / "lapa-format-helen", "the HELEN faces"), split="test")
    every_labeled = Joined(pool, val)
    t0 = time.perf_counter()
    if args.compare_only:
        compare = _compare(args, settings, out, study_out, pool, val, helen, starts)
        _print_compare(compare)
        return 0

    # 1. the starter backbone
    unlabeled = SHARED / "faces-unlabeled"
    image_dirs = (
        study_out / "data" / "train" / "images",
        study_out / "data" / "val" / "images",
        unlabeled,
    )
    backbone = run_pretrain(
        args.recipe, out, settings, unlabeled, image_dirs=image_dirs, stage_dir=out / "backbone",
        precision=args.precision,
    )  # fmt: skip
    card = {
        "licence": LICENCE,
        "built_by": command_line(__spec__.name, argv),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    write_weights_only(
        backbone["checkpoint"],
        backbone_dst,
        {
            "model_card": {
                **card,
                "data": f"{backbone['images']} photos: celebamask-hq-dev (700) + faces-unlabeled",
            }
        },
        input_size=finetune_side(settings),
    )

    # 2. the starter parser
    parser = _finetune(
        out / "parser",
        f"ssl:{backbone_dst}",
        every_labeled,
        args.parser_steps,
        settings,
        args.pretrained_lr_mult,
        {"helen": helen},
        precision=args.precision,
    )
    write_weights_only(
        parser["checkpoint"],
        parser_dst,
        {
            "model_card": {
                **card,
                "data": "700 labeled celebamask-hq-dev faces (LaPa classes)",
                "unseen_scores": parser["scores"],
            }
        },
    )

    # 3. fine-tune K = 10 new labels from a parser or from a backbone
    compare = (
        {}
        if args.skip_compare
        else _compare(args, settings, out, study_out, pool, val, helen, starts)
    )
    payload = {
        "what": "starter models (issue 5 §3)",
        "date": utc_now(),
        "machine": machine(),
        "command": card["built_by"],
        "settings": {**asdict(settings), "recipe": args.recipe, "parser_steps": args.parser_steps,
                     "heldout_parser_steps": args.heldout_parser_steps,
                     "pretrained_lr_mult": args.pretrained_lr_mult,
                     "precision": args.precision},
        "data": {k: v for k, v in data.items() if k != "settings"},
        "backbone": {k: v for k, v in backbone.items() if k != "settings"},
        "parser": {k: v for k, v in parser.items() if k != "settings"},
        "sizes_bytes": {p.name: p.stat().st_size for p in (backbone_dst, parser_dst)},
        "compare_k10": compare,
        "seconds_this_invocation": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    write_json(results, payload, card["built_by"])
    print(f"starter parser on HELEN: {_line(parser['scores'])}")
    _print_compare(compare)
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
