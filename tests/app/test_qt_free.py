"""The app's core imports with no Qt binding: every module but the views and their Qt adapters.

A module of ``faceparse_app`` is Qt-free unless it is listed in ``NEEDS_QT`` below, so a new
module is held to the contract by default (the napari-style import contract of
``tests/trainer/test_qt_free.py``, for the app).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import faceparse_app
from tests.conftest import ROOT

# The widgets, the window, and the Qt adapters that carry the core's work to the GUI thread.
NEEDS_QT = {
    "faceparse_app.__main__",
    "faceparse_app.app",
    "faceparse_app.face_loop",
    "faceparse_app.gui_gc",
    "faceparse_app.label_issue_watch",
    "faceparse_app.main_window",
    "faceparse_app.model_loop",
    "faceparse_app.prelabel_queue",
    "faceparse_app.prelabel_refresh",
    "faceparse_app.session",
    "faceparse_app.training_runs",
    "faceparse_app.workers",
}
NEEDS_QT_PACKAGES = ("faceparse_app.widgets",)

_BLOCK_QT_AND_IMPORT = """
import importlib, importlib.abc, sys
BLOCKED = {{"PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy", "qtawesome"}}
class BlockQt(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{{fullname}} is blocked: this module must not need Qt")
        return None
sys.meta_path.insert(0, BlockQt())
for name in {names!r}:
    importlib.import_module(name)
print("imported", len({names!r}))
"""


def qt_free_modules() -> list[str]:
    names = ["faceparse_app"]
    for info in pkgutil.walk_packages(faceparse_app.__path__, "faceparse_app."):
        if info.name in NEEDS_QT or info.name.startswith(NEEDS_QT_PACKAGES):
            continue
        names.append(info.name)
    return names


def test_every_core_module_of_the_app_imports_with_qt_blocked() -> None:
    names = qt_free_modules()
    # The model in the loop's state, the session's rules, the training requests and jobs,
    # the project store: all of them, and more.
    for core in ("loop_state", "annotation", "training_settings", "training", "project",
                 "model_store", "document", "history", "tools", "uncertainty"):
        assert f"faceparse_app.{core}" in names
    code = textwrap.dedent(_BLOCK_QT_AND_IMPORT.format(names=names))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert f"imported {len(names)}" in result.stdout


def test_the_blocker_really_blocks_qt() -> None:
    code = textwrap.dedent(_BLOCK_QT_AND_IMPORT.format(names=["faceparse_app.session"]))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 and "PySide6 is blocked" in result.stderr


def test_the_training_panel_needs_neither_torch_nor_the_training_code() -> None:
    """The panel is a view: importing it loads no torch (seconds) and no training jobs."""
    code = (
        "import sys, faceparse_app.widgets.train_panel\n"
        "bad = [m for m in ('torch', 'faceparse_app.training', 'faceparse_app.training_runs') "
        "if m in sys.modules]\n"
        "print('loaded:', bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout
