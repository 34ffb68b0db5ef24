"""`faceparse-studio [FOLDER]`: open a folder of face images as a project, or the start page.

`faceparse-studio export ...` (and the other names in ``faceparse_app.cli.COMMANDS``) runs a
command that needs no window instead (``faceparse_app.cli``).
"""

from __future__ import annotations

import argparse
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the desktop tool, or one of its window-less commands; returns the exit code."""
    from faceparse_app.app import DEFAULT_AUTOSAVE_MS
    from faceparse_app.cli import COMMANDS, commands_text

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:  # open a folder named like a command as ./export
        from faceparse_app.cli import main as run_command

        return run_command(argv)
    parser = argparse.ArgumentParser(
        prog="faceparse-studio",
        description="Label faces pixel by pixel in LaPa's 11 classes.",
        epilog="Without a window (each has its own --help):\n" + commands_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", nargs="?", help="folder of face images to open as a project")
    parser.add_argument(
        "--settings", metavar="FILE", help="use this INI file for settings instead of the user's"
    )
    parser.add_argument(
        "--autosave-ms", type=int, metavar="MS",
        help="save edits every MS milliseconds while a label has unsaved ones (default: "
        f"{DEFAULT_AUTOSAVE_MS}; kept in the settings)",
    )  # fmt: skip
    parser.add_argument(
        "--device",
        default="auto",
        help="device for pre-labels: auto (GPU when present, else CPU), cpu, cuda, mps",
    )
    args = parser.parse_args(argv)

    from faceparse_app.display_check import display_problem

    problem = display_problem()
    if problem is not None:  # before Qt, which would abort with a core dump
        print(f"faceparse-studio: {problem}", file=sys.stderr)
        return 2

    from faceparse_app.app import Settings, create_application
    from faceparse_app.main_window import MainWindow
    from faceparse_app.training import preload_model_code

    app = create_application([sys.argv[0]])
    # Imported in a worker thread, the model code would hold the GIL for seconds and freeze
    # the window; importing it before the window shows costs the same time once, up front.
    preload_model_code()
    settings = Settings(args.settings)
    if args.autosave_ms:
        settings.set_autosave_ms(args.autosave_ms)
    window = MainWindow(settings, device=args.device)
    window.show_remembered()
    if args.folder:
        window.open_project(args.folder)
    previous = _close_on_signals(window)
    try:
        return app.exec()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _close_on_signals(window) -> dict:
    """Ctrl+C and SIGTERM close the window (saving labels, stopping a training run without
    asking) instead of killing the app.

    Returns:
        the previous handlers, to restore.
    """
    from PySide6.QtCore import QTimer

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: window.close_for_signal())
    # Python runs signal handlers only between bytecodes; an idle tick lets it do so.
    tick = QTimer(window)
    tick.timeout.connect(lambda: None)
    tick.start(250)
    return previous


if __name__ == "__main__":
    raise SystemExit(main())
