"""Importing `faceparse predict`'s output (a model's guesses, with its faces.json) into a
project: the labels stay a model's, not an annotator's, and the message says whose they are."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from faceparse_app.import_labels import import_labels
from faceparse_app.project import Project

HELEN = "lapa-format-helen/test"


def _predict_output(shared_data: Path, out: Path) -> list[str]:
    """A copy of the HELEN labels laid out as `faceparse predict` writes them (faces.json)."""
    shutil.copytree(shared_data / HELEN / "labels", out)
    names = sorted(p.name for p in out.glob("*.png"))
    model = {"stage": "finetune", "path": "/runs/ft/finetune_best.safetensors", "framing": "detect"}
    images = {n.replace(".png", ".jpg"): {"label": n, "faces": []} for n in names}
    (out / "faces.json").write_text(json.dumps({"model": model, "framing": "detect", "images": images}))
    return names


def test_predict_output_is_imported_as_a_models_labels_and_said_so(shared_data: Path, tmp_path: Path) -> None:
    photos, labels = tmp_path / "proj", tmp_path / "pred"
    shutil.copytree(shared_data / HELEN / "images", photos)
    names = _predict_output(shared_data, labels)
    with Project.open(photos) as project:
        mine = project.images()[0]
        project.save_label(mine, np.ones((mine.height, mine.width), np.uint8), status="labeled")
        report = import_labels(project, labels)
        assert len(report.imported) == len(names) - 1 and report.kept == [mine.relpath]
        message = report.message(labels.name)
        assert "faceparse predict" in message and "finetune_best.safetensors" in message
        assert any("model's predictions" in line for line in report.lines())
        for rec in project.images():
            if rec.id == mine.id:
                assert project.label_by_hand(rec)  # the annotator's own label is kept, as hers
                continue
            # A model's guess: still to review, but never counted as a hand label (not held out
            # to score a fine-tune, flagged when an export puts it in val/test).
            assert rec.status == "labeled" and rec.needs_review
            assert not project.label_by_hand(rec) and rec.label_source == "model"
            assert not project.may_prelabel(rec)  # no later pre-label replaces it
