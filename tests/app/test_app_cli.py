"""`faceparse-studio export`: the app's window-less command writes a project in LaPa's layout."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from faceparse_app.__main__ import main
from faceparse_app.project import Project
from tests.conftest import synthetic_face


def test_export_a_project_from_the_command_line(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_face(64, i)[0]).save(folder / f"f{i}.png")
    with Project.open(folder) as project:
        for rec in project.images():
            project.save_label(rec, synthetic_face(64, 0)[1], status="reviewed")
    out = tmp_path / "out"
    code = main(["export", str(folder), str(out), "--val-fraction", "0", "--test-fraction", "0"])
    assert code == 0, capsys.readouterr().err
    assert len(list((out / "train" / "labels").glob("*.png"))) == 3
    assert str(out) in capsys.readouterr().out


def test_bad_export_input_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    code = main(["export", str(tmp_path / "nowhere"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "nowhere" in err
    (tmp_path / "photos").mkdir()  # a folder never opened as a project
    code = main(["export", str(tmp_path / "photos"), str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("faceparse-studio export: error: ") and "no project" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_the_window_help_names_every_command_that_needs_no_window(capsys) -> None:
    """faceparse-studio --help named export only: import-labels and check, which a team runs
    from scripts, could be found only in the README."""
    import pytest

    from faceparse_app.cli import COMMANDS

    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name in COMMANDS:
        assert f"faceparse-studio {name} " in text, name
