"""The trainer package imports and works with no Qt binding installed (napari-style contract)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

_IMPORT_ALL = """
import importlib, pkgutil, sys
import trainer
names = ["trainer"]
for info in pkgutil.walk_packages(trainer.__path__, "trainer."):
    importlib.import_module(info.name)
    names.append(info.name)
print(len(names), "modules")
{after}
"""

_BLOCK_QT = """
import importlib.abc, sys
BLOCKED = {"PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy"}
class BlockQt(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is blocked: trainer must not need Qt")
        return None
sys.meta_path.insert(0, BlockQt())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_trainer_module_imports_with_qt_blocked() -> None:
    code = _BLOCK_QT + _IMPORT_ALL.format(
        after="import PySide6  # the blocker must really be active\n"
    )
    result = _run(code)
    # Everything up to the final sanity import must succeed; only that import may fail.
    assert "modules" in result.stdout, result.stderr
    assert "PySide6 is blocked" in result.stderr, result.stderr
    count = int(result.stdout.split()[0])
    assert count >= 8, result.stdout  # labels, errors, models, checkpoint, data.* ...


def test_importing_trainer_does_not_load_pyside6() -> None:
    code = _IMPORT_ALL.format(
        after="bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'PySide6', 'PyQt5', 'PyQt6', 'shiboken6', 'qtpy'}]\nassert not bad, bad\nprint('clean')"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout
