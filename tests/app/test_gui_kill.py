"""A kill -9 between saves loses at most the last autosave interval of work.

The app runs in a child process (offscreen); a small driver paints with the real widgets and
QTest, then leaves the app idling in its event loop. The parent waits for the autosave timer to
put the label on disk, kills the child with SIGKILL (no close, no atexit), and reads the label.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.app.test_gui_canvas import make_project
from trainer.data.imageio import read_label

ROOT = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent(
    """
    import json, os, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from PySide6.QtTest import QTest
    from faceparse_app.app import Settings, create_application
    from faceparse_app.main_window import MainWindow
    from tests.app.test_gui_canvas import drag

    folder, settings_path, painted_path = sys.argv[2:5]
    app = create_application([])
    settings = Settings(settings_path)
    settings.set_autosave_ms(300)
    window = MainWindow(settings)
    window.show()
    QTest.qWaitForWindowExposed(window)
    assert window.open_project(folder)
    session = window.session
    window.state.set_class(9)
    window.state.set_radius(3)
    drag(window.canvas, [(8, 8), (50, 8), (50, 50)])
    np.save(painted_path, session.document.label)
    print(json.dumps({"label": str(session.project.label_path(session.current))}), flush=True)
    sys.exit(app.exec())
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_after_autosave_keeps_the_painted_label(tmp_path):
    folder = make_project(tmp_path / "project", n=2)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    painted_path = tmp_path / "painted.npy"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(ROOT),
            str(folder),
            str(tmp_path / "s.ini"),
            str(painted_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = child.stdout.readline()
        assert line, (
            f"the app did not start: {child.stderr.read() if child.poll() is not None else ''}"
        )
        label_path = Path(json.loads(line)["label"])
        painted = np.load(painted_path)
        assert (painted == 9).sum() > 300
        # Wait for the autosave timer (no switch, no close happened), then kill without warning.
        deadline = time.monotonic() + 30
        while not label_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, "the app must still be running when it is killed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert label_path.exists(), "the autosave timer never wrote the label"
    with Image.open(label_path) as im:
        assert im.format == "PNG" and im.mode == "L" and im.size == (64, 64)
    assert np.array_equal(read_label(label_path), painted)
    leftovers = [p.name for p in label_path.parent.iterdir() if p.name != label_path.name]
    assert not leftovers  # no half-written temp files next to it
