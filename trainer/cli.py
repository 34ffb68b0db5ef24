"""The ``faceparse`` command line: pretrain, recon-grid, finetune, recipes, evaluate, predict,
convert, info, export-onnx.

The flags of ``pretrain`` and ``finetune`` are generated from the run configs
(``trainer.configs``; help text from their docstrings, see ``trainer.cli_flags``), so the CLI and
the Python API cannot drift apart; ``--recipe`` names a recipe of ``trainer.recipes``. Errors
this package raises on purpose (``trainer.errors``) and files the system refuses to read or write
(an ``OSError`` naming one) print one line naming the file and exit with code 2; anything else
is a bug and keeps its traceback. Exporting a desktop project is the app's
command (``faceparse-studio export``): this package never imports the app.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from trainer import __version__
from trainer.cli_exits import (
    FULL_DISK,
    finetune_best_kept,
    finetune_kept,
    os_error_line,
    pretrain_kept,
    refuse_unwritable,
    stop_on_sigterm,
)
from trainer.cli_flags import add_run_config_flags, recipe_table, run_config_from_args
from trainer.cli_predict import cmd_predict
from trainer.cli_runs import output_folder, refuse_a_missing_resume, run_folder
from trainer.errors import FaceParseError
from trainer.precision import PRECISIONS

log = logging.getLogger("trainer.cli")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

DEVICE_HELP = (
    "compute device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: "
    "%(default)s)"
)


# ---------------------------------------------------------------------------------------------
# Commands


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from trainer.checkpoint import read_metadata
    from trainer.configs import PretrainConfig
    from trainer.pretrain import pretrain

    config = run_config_from_args(PretrainConfig, args)
    refuse_a_missing_resume(args.resume)
    started = time.time()
    folder = run_folder(
        config.runtime.out_dir, "pretrain", overwrite=args.overwrite, resume=args.resume
    )
    speaks = os.environ.get("RANK", "0") == "0"  # under torchrun rank 0 speaks for the run
    try:
        with folder:
            path = pretrain(config, resume=args.resume)
    except KeyboardInterrupt:
        # The run saved its state on the way out (if it had started); say how to go on.
        if speaks:
            kept = pretrain_kept(config.runtime.out_dir, started, args.resume)
            print(f"faceparse pretrain: {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if not (speaks and exc.errno in FULL_DISK):
            raise
        print(f"faceparse pretrain: error: {os_error_line(exc)}", file=sys.stderr)
        kept = pretrain_kept(config.runtime.out_dir, started, args.resume, how="stopped")
        if "--resume" in kept:  # the run's steps are not lost: say so, and how to go on
            print(f"faceparse pretrain: {kept} once there is space", file=sys.stderr)
        return EXIT_USER_ERROR
    if not speaks:
        return 0
    meta = read_metadata(path)
    total, skipped = meta.get("num_images"), meta.get("skipped_images") or 0
    if isinstance(total, int):
        unread = f", {skipped} of them unreadable and skipped (see the warnings)" if skipped else ""
        print(f"images: {total} found{unread}")
    print(f"pretrained checkpoint: {path}")
    return 0


def _cmd_recon_grid(args: argparse.Namespace) -> int:
    from trainer.outputs import is_reconstruction_grid, refuse_foreign_file
    from trainer.visualize import grid_path, write_reconstruction_grid

    refuse_foreign_file(grid_path(args.out), "recon-grid", is_reconstruction_grid)
    path = write_reconstruction_grid(
        args.checkpoint,
        args.image_dirs,
        args.out,
        num_images=args.num_images,
        seed=args.seed,
        device=args.device,
    )
    print(f"reconstruction grid: {path}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from trainer.configs import FinetuneConfig
    from trainer.finetune import finetune, result_summary
    from trainer.finetune_model import preset_of_start

    args.preset = preset_of_start(args.init, args.preset)  # the one stored is the one trained
    config = run_config_from_args(FinetuneConfig, args)
    started = time.time()
    try:
        with run_folder(config.runtime.out_dir, "finetune", overwrite=args.overwrite, resume=None):
            result = finetune(config)
    except KeyboardInterrupt:
        # The run published its best and last checkpoints on the way out; say which.
        kept = finetune_kept(config.runtime.out_dir, started)
        print(f"faceparse finetune: {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        best = finetune_best_kept(config.runtime.out_dir, started)
        if exc.errno not in FULL_DISK or best is None:
            raise
        print(f"faceparse finetune: error: {os_error_line(exc)}", file=sys.stderr)
        print(f"faceparse finetune: stopped by the full disk; kept {best}", file=sys.stderr)
        return EXIT_USER_ERROR
    if result.metrics:
        from trainer.evaluate import format_table

        faces = (
            "; faces framed from the labels; `faceparse evaluate` finds them, and may score "
            "it a little otherwise"
            if result.metrics.get("faces_from") == "labels"
            else ""
        )
        print(f"validation of the best checkpoint (epoch {result.metrics.get('epoch')}{faces}):")
        print(format_table(result.metrics))
    print(result_summary(result))
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    from trainer.recipes import FINETUNE_RECIPES, PRETRAIN_RECIPES

    print("fine-tuning recipes (faceparse finetune --recipe NAME):")
    print(recipe_table(FINETUNE_RECIPES))
    print("stage-1 recipes (faceparse pretrain --recipe NAME):")
    print(recipe_table(PRETRAIN_RECIPES))
    return 0


def _add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    stage = p.prog.split()[-1]
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} in --out-dir: they are set aside (in .{stage}-overwritten/) until "
        "this run writes a trained checkpoint, and put back if it ends before one (without "
        "--overwrite the run stops before touching them)",
    )


def _add_framing(p: argparse.ArgumentParser) -> None:
    from trainer.predict import DEFAULT_FRAMING, FRAMINGS

    p.add_argument(
        "--framing",
        choices=FRAMINGS,
        default=DEFAULT_FRAMING,
        help="detect: find every face, parse each upright at the model's input size, paste it "
        "back (any photo); whole: the image is one aligned face crop, resized to the input "
        "(default: %(default)s)",
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from trainer.evaluate import evaluate, format_table, seen_in_training
    from trainer.outputs import is_metrics_json, refuse_foreign_file
    from trainer.predict import Predictor

    if args.json:
        refuse_foreign_file(args.json, "evaluate", is_metrics_json)
        refuse_unwritable(args.json)
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, framing=args.framing)
    from trainer.data.labeled import open_split

    _refuse_a_missing_split(Path(args.data), args.split)
    dataset = open_split(args.data, args.split)
    if len(dataset) == 0:  # a table of n/a would read like a result
        folder = getattr(dataset, "images_dir", None) or getattr(dataset, "root", args.data)
        raise FaceParseError(f"{folder}: no images to score (split {args.split!r}){_where_images_are(Path(args.data))}")
    seen = seen_in_training(args.checkpoint, dataset)
    results = evaluate(predictor, dataset, batch_size=args.batch_size)
    results["faces_seen_in_training"] = seen
    results["split"] = getattr(dataset, "split", None)  # None: a folder without splits, all of it
    print(format_table(results))
    print(f"framing: {args.framing}")
    if seen:
        print(f"not held out: {seen} of {len(dataset)} faces scored were fine-tuned on")
    if args.json:
        from trainer.data.imageio import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(results, indent=2) + "\n").encode("utf-8"))
        print(f"metrics written to {args.json}")
    return 0


def _where_images_are(root: Path) -> str:
    """'; the images are in train (4) ...': an export of a few labels puts them all in train."""
    counts = {p.parent.name: sum(1 for f in p.iterdir() if f.is_file()) for p in sorted(root.glob("*/images"))}
    held = ", ".join(f"{split} ({n})" for split, n in counts.items() if n)
    if not held:
        return ""
    return (
        f"; the images are in {held}: name that split with --split (its faces are not held out "
        "if the model was fine-tuned on them), or export again with a larger --val-fraction / "
        "--test-fraction (the export form's shares)"
    )


def _refuse_a_missing_split(root: Path, split: str) -> None:
    """Name the splits a LaPa tree has when asked for one it lacks (a converted CelebAMask-HQ
    has train and val, evaluate's default is test)."""
    splits = sorted(p.parent.name for p in root.glob("*/images") if p.is_dir())
    if splits and split not in splits:
        raise FaceParseError(
            f"{root} has no split {split!r} (it has {', '.join(splits)}); name one with --split"
        )


def _cmd_convert(args: argparse.Namespace) -> int:
    from trainer.convert import convert_celebamask_to_lapa

    with output_folder(args.dst, "convert"):  # one conversion writes a folder at a time
        counts = convert_celebamask_to_lapa(
            args.src,
            args.dst,
            split=args.split,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
        )
    print(", ".join(f"{split}: {n}" for split, n in counts.items()) + f" -> {args.dst}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from trainer.checkpoint import load_checkpoint, read_metadata

    meta = read_metadata(args.checkpoint)
    meta.pop("optimizer", None)  # optimizer bookkeeping is not for people
    print(json.dumps(meta, indent=2))
    load_checkpoint(args.checkpoint)  # the weights too: a damaged file fails here (exit 2)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    # Exporting a project is the desktop app's command; the trainer never imports the app.
    print(
        "faceparse export: moved to the desktop app's command line: faceparse-studio export "
        "PROJECT OUT [--reviewed-only] [--val-fraction F] [--test-fraction F] [--seed N]",
        file=sys.stderr,
    )
    return EXIT_USER_ERROR


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from trainer.onnx_export import export_onnx
    from trainer.outputs import is_faceparse_onnx, refuse_foreign_file

    refuse_foreign_file(args.out, "export-onnx", is_faceparse_onnx)
    path = export_onnx(args.checkpoint, args.out, input_size=args.input_size)
    print(f"exported {args.checkpoint} -> {path} (ONNX Runtime parity checked)")
    return 0


# ---------------------------------------------------------------------------------------------
# Parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The full ``faceparse`` argument parser."""
    from trainer.configs import FinetuneConfig, PretrainConfig
    from trainer.models import PRESETS
    from trainer.recipes import FINETUNE_RECIPES, PRETRAIN_RECIPES

    parser = argparse.ArgumentParser(
        prog="faceparse",
        description="Masked self-supervised pretraining and few-label fine-tuning for face parsing.",
    )
    parser.add_argument("--version", action="version", version=f"faceparse {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "pretrain", help="stage 1: masked self-supervised pretraining on unlabeled faces"
    )
    add_run_config_flags(
        p,
        PretrainConfig,
        PRETRAIN_RECIPES,
        overrides={
            "device": {"help": DEVICE_HELP},
            "preset": {"choices": sorted(PRESETS)},
            "precision": {"choices": PRECISIONS},
        },
    )
    _add_overwrite(
        p, "an earlier pretraining, finished or stopped (its last and step files and log)"
    )
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue a run from its checkpoint (OUT_DIR/pretrain_last.safetensors holds the "
        "newest state, also after a kill or Ctrl-C); with a larger --epochs than it was started "
        "with, the learning rate restarts where the longer schedule would be (a warm restart)",
    )
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("recon-grid", help="PNG grid of masked inputs and reconstructions")
    p.add_argument("checkpoint", help="stage-1 checkpoint (.safetensors)")
    p.add_argument("image_dirs", nargs="+", help="folders of face images (recursive)")
    p.add_argument(
        "--out", required=True,
        help="PNG file to write (an existing file is replaced only if recon-grid wrote it)",
    )  # fmt: skip
    p.add_argument(
        "--num-images", type=_positive_int, default=8, help="faces in the grid (default: 8)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="picks the faces and the masks (default: %(default)s)"
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=_cmd_recon_grid)

    p = sub.add_parser("finetune", help="stage 2: fine-tune a parser on a labeled subset")
    add_run_config_flags(
        p,
        FinetuneConfig,
        FINETUNE_RECIPES,
        overrides={
            "device": {"help": DEVICE_HELP},
            "precision": {"choices": PRECISIONS},
            "preset": {"choices": sorted(PRESETS), "default": None},  # None: see preset_of_start
            "init": {"metavar": "ssl[:CKPT]|imagenet|scratch|ckpt[:CKPT]"},
            "data": {
                "required": True,
                "help": "dataset folder (LaPa layout, or CelebAMask-HQ mapped to LaPa classes)",
            },
        },
    )
    _add_overwrite(p, "an earlier fine-tune's checkpoints and logs")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("evaluate", help="per-class F1, mean F1 and mIoU on a labeled split")
    p.add_argument("checkpoint", help="fine-tuned checkpoint (.safetensors)")
    p.add_argument(
        "--data", required=True, help="LaPa-layout dataset root (or CelebAMask-HQ folder)"
    )
    p.add_argument("--split", default="test", help="LaPa split to score (default: test)")
    p.add_argument(
        "--json", metavar="PATH",
        help="also write the metrics as JSON (an existing file is replaced only if evaluate wrote it)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=_positive_int, default=4,
        help="images per forward pass (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    _add_framing(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="a folder of images -> LaPa 'L' label PNGs")
    p.add_argument("checkpoint", help="fine-tuned checkpoint (.safetensors)")
    p.add_argument("images", help="folder of images (recursive)")
    p.add_argument("out", help="folder for <stem>.png label maps")
    p.add_argument("--overlays", metavar="DIR", help="also write colour overlays here")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--runtime",
        choices=("auto", "torch", "torch-bf16", "onnxruntime"),
        default="auto",
        help="auto: on a CPU, the fastest of torch, ONNX Runtime and (where the CPU runs it "
        "natively) torch in bf16 for this model on this machine, among those that label as "
        "float32 torch does (checked on first use, remembered in the user cache folder) "
        "(default: %(default)s)",
    )
    _add_framing(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("convert", help="CelebAMask-HQ -> LaPa layout and classes")
    p.add_argument(
        "src", help="CelebAMask-HQ folder (merged masks or the official per-part layout)"
    )
    p.add_argument("dst", help="LaPa dataset root to write")
    p.add_argument(
        "--split", default="train", help="split for the images not held out (default: %(default)s)"
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.0,
        help="share of the images written to val/, 0 to 1 (default: %(default)s: no val/)",
    )  # fmt: skip
    p.add_argument(
        "--test-fraction", type=float, default=0.0,
        help="share of the images written to test/, 0 to 1 (default: %(default)s: no test/)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: %(default)s)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("info", help="print a checkpoint's metadata as JSON")
    p.add_argument("checkpoint", help="checkpoint (.safetensors)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("recipes", help="the named recipes of both stages and their settings")
    p.set_defaults(func=_cmd_recipes)

    # Moved to `faceparse-studio export`; kept to say so (any arguments).
    p = sub.add_parser("export", help="moved: use faceparse-studio export")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("export-onnx", help="a fine-tuned checkpoint -> ONNX (parity-checked)")
    p.add_argument("checkpoint", help="fine-tuned checkpoint (.safetensors)")
    p.add_argument(
        "out",
        help=".onnx file to write (an existing file is replaced only if export-onnx wrote it)",
    )
    p.add_argument(
        "--input-size", type=_positive_int, default=None, help="input side (default: the model's)"
    )
    p.set_defaults(func=_cmd_export_onnx)
    for p in sub.choices.values():  # -q after the command too, as every other flag goes
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only warnings and errors (default: off)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, usage, or a file the system
    refused to read or write; 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USER_ERROR
    if args.quiet and getattr(args, "progress_bar", None):
        args.progress_bar = False  # a bar is neither a warning nor an error
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    previous = stop_on_sigterm()
    try:
        return int(args.func(args))
    except FaceParseError as exc:
        print(f"faceparse {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        # `faceparse info x | head`: the reader left; not an error worth a traceback.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's final flush
        return 0
    except OSError as exc:
        if exc.filename is None and exc.errno not in FULL_DISK:
            raise  # not about a file of the user's: a bug, keep its traceback
        print(f"faceparse {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"faceparse {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
