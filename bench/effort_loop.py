"""Does fine-tuning on N corrected faces of a new convention cut the effort on the next faces?
(issue 32 §4)

The new convention: the neck is skin (CelebAMask-HQ class 17; the starter parser, like LaPa,
calls it background). N = 5, 10, 25 faces are drawn (seeded, nested) from the study's validation
faces, labeled in that convention, and the app's own fine-tuning job
(``faceparse_app.training.run_finetune_job``: the starter parser, 30 epochs of batch 4, a fifth
held out to pick the epoch) trains on them. Every parser, the starter included, then pre-labels
the same fixed test faces (never in any draw), and the simulated annotator
(``bench.annotator_sim``) corrects each pre-label to the truth: the effort is compared.

Faces of a new kind (``--kind helen``): each of the 6 HELEN faces (another dataset, never
trained on by the starter) is left out in turn, the app fine-tunes on the other five (it holds
one out, so four train: N = 5 is all HELEN has), and the simulated annotator corrects the
left-out face's pre-label from the starter and from the fine-tuned parser.

Stages are cached (a fine-tune's done marker under ``bench/out/effort_loop/``); a rerun resumes.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python -m bench.effort_loop          # all of it
    .venv/bin/python -m bench.effort_loop --stage finetune | --stage effort
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python -m bench.effort_loop --kind helen
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.app_finetune import NeckAsSkin
from bench.recipes import STUDY_OUT

EXPERIMENT = "effort_loop"
NS = (5, 10, 25)
TEST_FACES = 12  # the last faces of the seeded order; never in a draw (the first --test are scored)


def face_order(names: list[str], seed: int) -> list[str]:
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(names))
    return [sorted(names)[i] for i in order]


def faces(data: Path, seed: int, test: int) -> tuple[Any, list[str], list[str]]:
    """(the val faces in the neck-skin convention, the draw order for training, the test names)."""
    from trainer.data.lapa import LapaDataset

    val = NeckAsSkin(LapaDataset(data, split="val"))
    order = face_order(list(val.names), seed)
    return val, order[:-test], order[-test:]


def finetune_stage(
    out: Path, val: Any, order: list[str], n: int, seed: int, quick: bool, tag: str = ""
) -> Path:
    """Fine-tune the starter parser on the first ``n`` faces of ``order`` (cached)."""
    from faceparse_app.training import run_finetune_job
    from trainer.starter import STARTER_PARSER

    stage = out / f"finetune_{tag}N{n}_s{seed}"
    settings = {"n": n, "seed": seed, "faces": order[:n], "quick": quick}
    done = harness.load_done(stage, settings)
    if done is not None:
        if "app_activates" not in done:  # a marker from before the gate was recorded
            harness.mark_done(stage, settings, {**done, **app_gate(Path(done["best_path"]), val, done["held_out"])})
        return Path(done["best_path"])
    t0 = time.perf_counter()
    result = run_finetune_job(
        val.select(order[:n]),
        stage / "run",
        init_backbone=STARTER_PARSER,
        max_steps=2 if quick else None,
        device="cpu",
        seed=seed,
    )
    harness.mark_done(
        stage,
        settings,
        {
            "best_path": str(result.best_path),
            "held_out": result.val_names,
            "best_epoch": result.metrics.get("epoch"),
            "held_out_miou": result.metrics.get("miou"),
            "train_seconds": round(time.perf_counter() - t0, 1),
            **app_gate(Path(result.best_path), val, result.val_names),
        },
    )
    return Path(result.best_path)


def app_gate(candidate: Path, val: Any, held_out: list[str]) -> dict[str, Any]:
    """What the app does with the fine-tuned parser: it scores it and the parser in use (the
    starter) on the held-out faces, the same way, and makes it active only if it is no worse
    (``faceparse_app.training.compare_on_holdout``); otherwise pre-labels stay the starter's."""
    from faceparse_app.training import candidate_wins, compare_on_holdout
    from trainer.starter import STARTER_PARSER

    if not held_out:
        return {"app_activates": True}
    scores = compare_on_holdout(candidate, (STARTER_PARSER, "starter"), val.select(held_out), "cpu")
    return {
        "baseline_mean_f1": round(scores["baseline_mean_f1"], 4),
        "candidate_mean_f1": round(scores["candidate_mean_f1"], 4),
        "app_activates": candidate_wins(scores),
    }


def helen_stage(args: Any, out: Path) -> None:
    """Leave each HELEN face out in turn: fine-tune on the others, correct it from the starter's
    pre-label and from the fine-tuned one."""
    from bench.annotator_sim import CAP, Face, run_arms
    from trainer.data.lapa import LapaDataset
    from trainer.predict import Predictor
    from trainer.starter import STARTER_PARSER

    helen = LapaDataset(harness.require(harness.SHARED / "lapa-format-helen", "HELEN"), split="test")
    names = sorted(helen.names)[: 2 if args.quick else None]
    results = Path(args.results)
    command = harness.command_line("bench.effort_loop", sys.argv[1:])
    harness.record_output(results, command, note="one record per face, parser and arm")
    done = {(r["run"], r["face"]) for r in harness.read_jsonl(results)}
    starter = Predictor.from_checkpoint(STARTER_PARSER, device="cpu", framing="whole")
    for i, left in enumerate(names):
        others = [n for n in names if n != left]
        ckpt = finetune_stage(out, helen, others, len(others), i, args.quick, tag="helen_")
        tuned = Predictor.from_checkpoint(ckpt, device="cpu", framing="whole")
        sample = helen.select([left])[0]
        for tag, predictor in (("helen-starter:", starter), (f"helen-N{len(others)}:", tuned)):
            face = Face(f"helen/{left}", sample.image, sample.label, predictor)
            run_arms([face], args.arms.split(","), results, command, run_tag=tag,
                     cap=40 if args.quick else CAP, done=done)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(
        __doc__, experiment=EXPERIMENT, out=True, results="effort_loop.jsonl", seed=0,
        seed_help="the draw of the new faces", quick="2 steps, 2 test faces: checks the pipeline",
    )  # fmt: skip
    parser.add_argument("--data", default=str(STUDY_OUT / "data"), help="the study's data stage")
    parser.add_argument("--stage", choices=("all", "finetune", "effort"), default="all")
    parser.add_argument("--ns", default=",".join(map(str, NS)), help="faces to fine-tune on")
    parser.add_argument("--test", type=int, default=6, help=f"test faces scored, of the {TEST_FACES} kept out")
    parser.add_argument("--arms", default="pre-basic", help="bench.annotator_sim arms (comma-separated)")
    parser.add_argument("--kind", choices=("neck", "helen"), default="neck",
                        help="the new faces: CelebA with the neck as skin, or HELEN left out in turn")  # fmt: skip
    args = parser.parse_args(argv)
    harness.setup_logging()
    if args.kind == "helen":
        helen_stage(args, Path(args.out))
        return 0
    data = harness.require(Path(args.data) / "val", "the study's data stage (python -m bench.study)")
    val, order, test = faces(data.parent, args.seed, TEST_FACES)
    test = test[: 2 if args.quick else args.test]
    out = Path(args.out)
    ns = [int(x) for x in args.ns.split(",") if x]
    prefix = run_prefix(args.seed)
    checkpoints: dict[str, Path | None] = {f"{prefix}starter": None}
    if args.stage in ("all", "finetune"):
        for n in ns:
            checkpoints[f"{prefix}N{n}"] = finetune_stage(out, val, order, n, args.seed, args.quick)
            harness.log.info("fine-tuned on %d faces: %s", n, checkpoints[f"{prefix}N{n}"])
    if args.stage in ("all", "effort"):
        from bench.annotator_sim import effort_stage

        for n in ns:
            checkpoints[f"{prefix}N{n}"] = finetune_stage(out, val, order, n, args.seed, args.quick)
        effort_stage(args, out, val, test, checkpoints)
    if not args.quick:
        for line in gated_summary(Path(args.results), out):
            print(line)
    return 0


def run_prefix(seed: int) -> str:
    """The runs' name prefix for a draw: none for seed 0 (the first records), ``s1-`` after."""
    return f"s{seed}-" if seed else ""


def gated_summary(results: Path, out: Path) -> list[str]:
    """Per N, over every draw and test face on record (``pre-basic``, the issue's policy): the
    fine-tuned parser's total seconds against the starter's on the same faces, and what the app
    would show (the fine-tuned parser only where its gate activates it; else the starter's)."""
    rows = [r for r in harness.read_jsonl(results) if r.get("arm") == "pre-basic" and ":" in r["run"]]
    seconds = {(r["run"].split(":")[0], r["face"]): float(r["seconds"]) for r in rows}
    lines = []
    for n in NS:
        tuned = starter = app = 0.0
        draws = []
        named = ((re.fullmatch(rf"finetune_N{n}_s(\d+)", d.name), d) for d in out.glob(f"finetune_N{n}_s*"))
        stages = {int(m[1]): d for m, d in named if m}
        for seed, stage in sorted(stages.items()):
            prefix = run_prefix(seed)
            done = harness.read_done(stage)
            pairs = [(face, t) for (run, face), t in seconds.items() if run == f"{prefix}N{n}"]
            pairs = [(f, t) for f, t in pairs if (f"{prefix}starter", f) in seconds]
            if not pairs or done is None:
                continue
            base = sum(seconds[(f"{prefix}starter", f)] for f, _ in pairs)
            mine = sum(t for _, t in pairs)
            active = bool(done.get("app_activates", True))
            tuned, starter, app = tuned + mine, starter + base, app + (mine if active else base)
            draws.append(f"s{seed}: {mine / base - 1:+.0%}{'' if active else ' (kept starter)'} ({len(pairs)} face{'s' * (len(pairs) != 1)})")
        if starter:
            lines.append(f"N={n}: fine-tuned {tuned / starter - 1:+.1%}, with the app's gate {app / starter - 1:+.1%}; " + ", ".join(draws))
    return lines


if __name__ == "__main__":
    sys.exit(main())
