"""The trainer package never needs Qt or the desktop app (napari-style contract): every module
imports, and every command's help runs, with both blocked; no module names either in an import,
not even one inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

FORBIDDEN = {"PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy", "superqt", "faceparse_app"}

_BLOCK = f"""
import importlib.abc, sys
BLOCKED = {sorted(FORBIDDEN)!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{{fullname}} is blocked: trainer must not need Qt or the app")
        return None
sys.meta_path.insert(0, Block())
"""

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

_EVERY_HELP = """
import contextlib, io
from trainer.cli import build_parser, main
parser = build_parser()
commands = next(a for a in parser._actions if a.dest == "command").choices
for name in commands:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([name, "--help"]) == 0, name
print(len(commands), "commands")
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _imported_roots(path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                roots.add(str(node.args[0].value).split(".")[0])
    return roots


def test_no_trainer_module_names_qt_or_the_app_in_any_import() -> None:
    files = sorted((ROOT / "trainer").rglob("*.py"))
    assert len(files) >= 20
    offenders = {
        str(f.relative_to(ROOT)): sorted(_imported_roots(f) & FORBIDDEN) for f in files
    }
    assert not {f: names for f, names in offenders.items() if names}


def test_every_trainer_module_imports_and_every_command_helps_with_qt_and_the_app_blocked() -> None:
    code = _BLOCK + _IMPORT_ALL.format(after=_EVERY_HELP) + (
        "import faceparse_app  # the blocker must really be active\n"
    )
    result = _run(code)
    # Everything up to the final sanity import must succeed; only that import may fail.
    assert "modules" in result.stdout and "commands" in result.stdout, result.stderr
    assert "faceparse_app is blocked" in result.stderr, result.stderr
    count = int(result.stdout.split()[0])
    assert count >= 20, result.stdout  # labels, errors, models, checkpoint, configs, data.* ...


def test_importing_trainer_does_not_load_pyside6_or_the_app() -> None:
    code = _IMPORT_ALL.format(
        after=f"bad = [m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}]\n"
        "assert not bad, bad\nprint('clean')"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout
