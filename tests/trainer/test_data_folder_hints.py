"""`finetune` and `evaluate` pointed at the wrong folder of a Studio round trip (the project
itself, or one split of its LaPa export) say which folder to pass instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.data.labeled import open_split, open_training_data
from trainer.errors import FaceParseError


def _project(root: Path) -> Path:
    """A FaceParse Studio project as the app leaves it: photos, and its store in .faceparse/."""
    (root / ".faceparse" / "labels").mkdir(parents=True)
    (root / ".faceparse" / "project.sqlite").write_bytes(b"")
    (root / "a.jpg").write_bytes(b"")
    return root


def test_a_studio_project_folder_is_named_with_the_export_to_make_first(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    for folder in (project, project / ".faceparse"):
        with pytest.raises(FaceParseError, match="faceparse-studio export") as training:
            open_training_data(folder)
        assert "FaceParse Studio project" in str(training.value)
        with pytest.raises(FaceParseError, match="faceparse-studio export"):
            open_split(folder, "test")  # evaluate


def test_one_split_of_an_export_says_to_pass_the_dataset_root(tmp_path: Path) -> None:
    export = tmp_path / "exp"
    for sub in ("images", "labels"):
        (export / "train" / sub).mkdir(parents=True)
    with pytest.raises(FaceParseError, match="pass its parent") as caught:
        open_training_data(export / "train")
    assert str(export) in str(caught.value).split("pass its parent", 1)[1]
    with pytest.raises(FaceParseError, match="pass its parent"):
        open_split(export / "train", "train")


def test_evaluate_on_an_export_with_every_label_in_train_names_where_they_are(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """The app's export of 4 labels puts all 4 in train and leaves val/ and test/ empty:
    `evaluate` said only 'exp/test/images: no images to score'."""
    from tests.trainer.cli_trial_helpers import run, small_lapa

    data = small_lapa(tmp_path / "exp")
    for split in ("val", "test"):
        for path in (data / split / "images").glob("*"):
            path.unlink()
        (data / split / "images").mkdir(parents=True, exist_ok=True)
    code, _, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(data), "--device", "cpu")
    assert code == 2 and "Traceback" not in err
    assert "no images to score" in err and "train (4)" in err and "--val-fraction" in err
