"""A long session of Qt calls must not abort Python.

PySide6 6.12.0 on Python 3.11 drops a reference to None on every void method call and to
True/False on every Signal(bool) emit; after a few thousand calls (seconds of painting) the
interpreter aborts with "Fatal Python error: none_dealloc". pyproject.toml pins a PySide6 without
the bug; this test catches a dependency change that brings it back.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOOP = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import faceparse_app.widgets  # the app's own import path
    from PySide6.QtCore import QObject, QRectF, Signal

    class Flag(QObject):
        changed = Signal(bool)

    rect, flag = QRectF(), Flag()
    flag.changed.connect(lambda value: None)
    for i in range(200_000):  # each call steals a reference on affected PySide6 builds
        rect.setWidth(1.0)
        flag.changed.emit(i % 2 == 0)
    print("alive")
    """
)


def test_many_void_calls_and_bool_signals_do_not_abort_python():
    done = subprocess.run(
        [sys.executable, "-c", LOOP, str(ROOT)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "alive"
