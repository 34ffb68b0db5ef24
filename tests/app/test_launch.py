"""Launching without a usable display prints one line saying what to do (issue 31: Qt's raw
plugin message and a core dump)."""

from __future__ import annotations

from faceparse_app.__main__ import main
from faceparse_app.display_check import display_problem


def test_no_display_is_one_line_with_the_way_out(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "DISPLAY" in err and "xvfb-run" in err


def test_a_dead_display_and_missing_libraries_are_named():
    dead = display_problem({"DISPLAY": ":987"}, "linux", loads=lambda lib: True)
    assert dead is not None and "DISPLAY=:987" in dead
    missing = display_problem(
        {"DISPLAY": "remote:0"}, "linux", loads=lambda lib: lib != "libxcb-cursor.so.0"
    )
    assert missing is not None and "apt-get install libxcb-cursor0" in missing
    assert display_problem({"DISPLAY": "remote:0"}, "linux", loads=lambda lib: True) is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({}, "darwin") is None
