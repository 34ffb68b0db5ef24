"""Defects found in the second user trial of the real window (the t35 trial: the labeling
loop, exporting twice, two windows and kill -9, keyboard-only use, in-the-wild photos), each
driven the way the user met it."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.app.test_gui_canvas import make_project


def _splits(export: Path) -> dict[str, str]:
    """names.csv of an export: original relpath -> split."""
    with open(export / "names.csv", encoding="utf-8", newline="") as f:
        return {row["original"]: row["split"] for row in csv.DictReader(f)}


def test_exporting_again_keeps_every_earlier_image_in_its_split(tmp_path):
    # The trial: six faces exported (val 01a16a.., test 01a64e..), one more labeled, exported
    # again into the same folder: 01a16a.. moved to test, 01a64e.. to train and 01caf8.. to
    # val, so a model trained on the first export's train set was tested on its own images.
    from faceparse_app.export import export_project
    from faceparse_app.project import Project
    from tests.conftest import synthetic_face

    folder = make_project(tmp_path / "project", n=12)
    out = tmp_path / "lapa"
    with Project.open(folder) as project:
        recs = project.images()
        for i, rec in enumerate(recs[:9]):
            project.save_label(rec, synthetic_face(64, seed=i)[1], status="labeled")
        first = export_project(project, out, val_fraction=0.2, test_fraction=0.2)
        before = _splits(out)
        assert first["val"] == 2 and first["test"] == 2
        (out / "train" / "images" / "notes.txt").write_text("mine")  # a foreign file
        for rec in recs[9:]:
            project.save_label(rec, synthetic_face(64, seed=0)[1], status="labeled")
        export_project(project, out, val_fraction=0.2, test_fraction=0.2)
    after = _splits(out)
    assert len(after) == 12
    assert {k: after[k] for k in before} == before  # nothing moved between splits
    assert sorted(after.values()).count("test") >= 2
    assert (out / "train" / "images" / "notes.txt").read_text() == "mine"
    # A new seed is a new split: the user asked for one.
    with Project.open(folder) as project:
        export_project(project, out, val_fraction=0.2, test_fraction=0.2, seed=5)
    assert _splits(out) != after
