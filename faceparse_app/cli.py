"""The desktop app's commands that need no window: ``faceparse-studio export PROJECT OUT``,
``faceparse-studio import-labels PROJECT LABELS`` and ``faceparse-studio check PROJECT``.

``faceparse-studio [FOLDER]`` opens the window (``faceparse_app.__main__``); a first argument
naming one of :data:`COMMANDS` runs that command instead, without Qt. Errors in the input print
one line and exit with code 2, as the trainer's ``faceparse`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from trainer.errors import FaceParseError

COMMANDS = ("export", "import-labels", "check")
EXIT_USER_ERROR = 2


def _cmd_export(args: argparse.Namespace) -> int:
    from faceparse_app.export import export_project

    counts = export_project(
        args.project, args.out, reviewed_only=args.reviewed_only,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        per_face=args.per_face,
    )  # fmt: skip
    print(f"exported {json.dumps(counts)} -> {args.out}")
    return 0


def _cmd_import_labels(args: argparse.Namespace) -> int:
    from faceparse_app.import_labels import import_labels

    report = import_labels(args.project, args.labels, fmt=args.format)
    print("\n".join(report.lines()))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from faceparse_app.label_review import check_command

    return check_command(args.project)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the app's window-less commands."""
    parser = argparse.ArgumentParser(
        prog="faceparse-studio",
        description="FaceParse Studio's commands that need no window "
        "(faceparse-studio [FOLDER] opens the window).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("export", help="a project's labeled faces -> LaPa layout")
    p.add_argument("project", help="project folder (read only; it may be open in a window)")
    p.add_argument("out", help="LaPa dataset root to write (new, empty, or an earlier export)")
    p.add_argument("--reviewed-only", action="store_true", help="only images marked reviewed")
    p.add_argument(
        "--per-face", action="store_true",
        help="one image per face, as LaPa has: each face of a photo cropped square with its "
        "hair and chin (upright, at the photo's resolution) and its own landmarks, named after "
        "the photo with the face's number added (1, 2, ... left to right), all in the photo's "
        "split; a photo with no "
        "face gives none (default: each photo whole)",
    )  # fmt: skip
    p.add_argument(
        "--val-fraction", type=float, default=0.1, metavar="SHARE",
        help="share of the images written to val/, 0 to 1 (default: 0.1)",
    )  # fmt: skip
    p.add_argument(
        "--test-fraction", type=float, default=0.1, metavar="SHARE",
        help="share of the images written to test/, 0 to 1 (default: 0.1)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the split (default: 0)")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser(
        "import-labels",
        help="existing labels (LaPa, our export, CelebAMask-HQ masks) -> a project's photos",
        description="Import existing labels into a project's photos: each becomes a person's label, "
        "status labeled, needs review. A photo with a label of its own (in progress, labeled, "
        "reviewed) keeps it; a label of the wrong size or values is skipped. Refused while a "
        "window edits the project.",
    )  # fmt: skip
    p.add_argument("project", help="project folder (its photos)")
    p.add_argument(
        "labels", help="LaPa labels folder or tree root, a FaceParse Studio export, or CelebAMask-HQ masks",
    )  # fmt: skip
    p.add_argument(
        "--format", choices=("auto", "lapa", "celebamask"), default="auto",
        help="label values: LaPa 0..10 or CelebAMask-HQ 0..18 (default: auto, from the folder's layout)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_import_labels)
    p = sub.add_parser(
        "check", help="a project's saved labels -> one line per issue; exit 1 when there are any",
        description="Check the labels worked on, labeled or reviewed: left/right swapped (the "
        "person's left labeled as LaPa's, the viewer's), pinholes, stray pieces of a part. One "
        "line per finding; exit code 1 when there are any, 0 when none.",
    )  # fmt: skip
    p.add_argument("project", help="project folder (read only; it may be open in a window)")
    p.set_defaults(func=_cmd_check)
    return parser


def commands_text() -> str:
    """One line per window-less command, its positional arguments and what it does (for the
    window's --help)."""
    lines = []
    for action in build_parser()._subparsers._group_actions:  # type: ignore[union-attr]
        for choice in action._choices_actions:
            command = action.choices[choice.dest]
            args = [a.dest.upper() for a in command._actions if not a.option_strings]
            lines.append(f"  faceparse-studio {' '.join([choice.dest, *args])}: {choice.help}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run one of the app's commands; returns the exit code (0 ok, 1 label issues found by
    check, 2 bad input or usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USER_ERROR
    try:
        return int(args.func(args))
    except (FaceParseError, ValueError) as exc:
        print(f"faceparse-studio {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
