"""Defects found in a user trial of the ``faceparse`` CLI, part 2: what the commands say
(counts, help, metrics a researcher can cite, settings and flags). Each test asserts what the
user noticed: the message, the exit code, the files left."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import synthetic_face
from tests.trainer.cli_trial_helpers import (
    predict_photos,
    run,
    small_celebamask,
    small_lapa,
    user_photos,
)
from trainer.checkpoint import save_checkpoint
from trainer.models import build_model, get_preset


def test_evaluate_on_a_split_without_images_fails_instead_of_scoring_nothing(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """An empty test/images/ printed a table of n/a, '0 images', exit 0, and wrote that JSON."""
    data = small_lapa(tmp_path / "lapa")
    (data / "test" / "images").mkdir(parents=True)
    target = tmp_path / "m.json"
    code, out, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(data), "--device",
                         "cpu", "--json", str(target))  # fmt: skip
    assert code == 2 and "Traceback" not in err and "n/a" not in out
    assert f"{data / 'test' / 'images'}: no images to score" in err
    assert not target.exists()


def test_a_label_without_its_image_is_an_error_not_silently_left_out(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """A LaPa label whose image was lost was skipped without a word: `--num-labeled 4` trained
    on 3 faces, and evaluate scored one face fewer than the labels."""
    data = small_lapa(tmp_path / "lapa")
    lost = data / "train" / "images" / "train_002.png"
    lost.unlink()
    orphan = data / "train" / "labels" / "train_002.png"
    code, _, err = run(capsys, "finetune", "--data", str(data), "--preset", "tiny", "--max-steps",
                       "1", "--num-labeled", "4", "--out-dir", str(tmp_path / "run"),
                       "--device", "cpu", "--no-progress-bar")  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert f"{orphan}: a label without an image" in err and "train_002.<" in err
    assert not (tmp_path / "run").exists()
    code, _, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(data), "--split",
                       "train", "--device", "cpu")  # fmt: skip
    assert code == 2 and f"{orphan}: a label without an image" in err
    # CelebAMask-HQ's merged layout, the same.
    src = small_celebamask(tmp_path / "celeb", n=3)
    (src / "images" / "00001.jpg").unlink()
    code, _, err = run(capsys, "convert", str(src), str(tmp_path / "out"))
    assert code == 2 and f"{src / 'masks' / '00001.png'}: a label without an image" in err


def test_pretrain_says_how_many_photos_it_found_and_how_many_it_could_not_read(
    tmp_path: Path, capsys, caplog
) -> None:
    """On a folder of the user's own photos, pretrain said nothing of what it found: not how
    many photos, not that some were unreadable (only warnings scrolled away mid-run)."""
    import logging

    photos = user_photos(tmp_path / "photos")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (photos / "notes.md").write_text("where these were taken")
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        code, stdout, err = run(capsys, "pretrain", "--image-dirs", str(photos), "--preset",
                                "tiny", "--epochs", "1", "--batch-size", "2", "--out-dir",
                                str(out), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert f"found 4 images under {photos}" in caplog.text
    assert "images: 4 found, 1 of them unreadable and skipped (see the warnings)" in stdout


def test_predict_warns_once_about_each_file_that_is_not_an_image(
    parser_ckpt: Path, tmp_path: Path, capsys, caplog
) -> None:
    """Every non-image file in the photo folder was reported twice."""
    photos = user_photos(tmp_path / "photos")
    (photos / "trip" / "clip.mov").write_bytes(b"a video")
    code, _, err = predict_photos(capsys, parser_ckpt, photos, tmp_path / "labels")
    assert code == 0, err
    assert caplog.text.count("clip.mov: not an image file") == 1


def test_every_option_with_a_default_says_it_in_its_help() -> None:
    """`faceparse evaluate --help` did not say --batch-size is 4, `convert --help` not that
    --val-fraction is 0 or --split train, and no --device said it is auto."""
    import argparse

    from trainer.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    silent = []
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if not action.option_strings or action.help in (None, argparse.SUPPRESS):
                continue
            if action.default is None or action.default is False or action.dest == "help":
                continue
            if "default" not in action.help:
                silent.append(f"{name} {action.option_strings[-1]}")
    assert silent == []


def test_finetune_reports_validation_scores_in_the_tables_units(
    tmp_path: Path, capsys, caplog
) -> None:
    """The per-epoch lines said 'mean F1 0.0235, mIoU 0.0334' (fractions) right above a table
    that said 'mean F1 (fg) 2.35' (percent) for the same validation."""
    import logging
    import re

    data = small_lapa(tmp_path / "lapa")
    with caplog.at_level(logging.INFO):
        code, out, err = run(capsys, "finetune", "--data", str(data), "--preset", "tiny",
                             "--max-steps", "2", "--batch-size", "2", "--out-dir",
                             str(tmp_path / "run"), "--device", "cpu", "--no-progress-bar")  # fmt: skip
    assert code == 0, err
    best = [
        m
        for m in re.finditer(
            r"validation epoch \d+: mean F1 ([\d.]+)%, mIoU ([\d.]+)%.*\(best\)", caplog.text
        )
    ][-1]
    table_f1 = re.search(r"mean F1 \(fg\)\s+([\d.]+)", out).group(1)
    table_miou = re.search(r"mIoU \(all\)\s+([\d.]+)", out).group(1)
    assert (best.group(1), best.group(2)) == (table_f1, table_miou)


def test_the_table_says_when_a_mean_leaves_out_absent_classes() -> None:
    """With no inner mouth in the labels nor the predictions, 'mean F1 (fg)' was the mean of 9
    classes, not of LaPa's 10, and the table did not say so: a researcher would cite it as the
    10-class mean."""
    from trainer.evaluate import format_table
    from trainer.labels import LAPA
    from trainer.metrics import ConfusionMatrix

    label = synthetic_face(64, 0)[1]
    label[label == 8] = 7  # no inner mouth in this set
    cm = ConfusionMatrix(11)
    cm.update(label, label)
    table = format_table(cm.to_dict(LAPA.classes))
    assert "inner_mouth" in table and "n/a" in table
    assert "mean F1 over 9 of the 10 foreground classes" in table
    assert "mIoU over 10 of the 11 classes" in table
    full = synthetic_face(64, 0)[1]
    cm = ConfusionMatrix(11)
    cm.update(full, full)
    assert "of the" not in format_table(cm.to_dict(LAPA.classes))  # every class present


def test_finetune_says_its_validation_took_the_faces_from_the_labels(
    tmp_path: Path, capsys
) -> None:
    """finetune's table of the best checkpoint (mean F1 2.35 on the shared val split) and
    `faceparse evaluate` of that checkpoint on that split (2.38) differ, and nothing said why:
    validation frames the faces the labels hold, evaluate the faces its finder finds."""
    from trainer.checkpoint import read_metadata

    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "run"
    code, text, err = run(capsys, "finetune", "--data", str(data), "--preset", "tiny",
                          "--max-steps", "1", "--batch-size", "2", "--out-dir", str(out),
                          "--device", "cpu", "--no-progress-bar")  # fmt: skip
    assert code == 0, err
    assert "faces framed from the labels; `faceparse evaluate` finds them" in text
    metrics = read_metadata(out / "finetune_best.safetensors")["metrics"]
    assert metrics["faces_from"] == "labels"


def test_evaluate_warns_when_it_scores_faces_the_model_was_trained_on(
    tmp_path: Path, capsys, caplog
) -> None:
    """`finetune --data celeb` (a CelebAMask-HQ folder: no splits) then `evaluate --data celeb
    --split test` scored the model on its own training faces (--split does not apply there)
    and printed the table as if held out."""
    import json

    data, run_dir = small_lapa(tmp_path / "lapa"), tmp_path / "run"
    code, _, err = run(capsys, "finetune", "--data", str(data), "--preset", "tiny", "--max-steps",
                       "1", "--batch-size", "2", "--num-labeled", "3", "--out-dir", str(run_dir),
                       "--device", "cpu", "--no-progress-bar")  # fmt: skip
    assert code == 0, err
    model = run_dir / "finetune_best.safetensors"
    caplog.clear()
    for split, seen in [("train", 3), ("val", 0)]:
        target = tmp_path / f"{split}.json"
        code, out, err = run(capsys, "evaluate", str(model), "--data", str(data), "--split",
                             split, "--device", "cpu", "--json", str(target))  # fmt: skip
        assert code == 0, err
        warned = f"{seen} of the 4 faces scored are among the 3 this model was fine-tuned on"
        assert (warned in caplog.text) == bool(seen)
        assert (f"not held out: {seen} of 4 faces" in out) == bool(seen)
        assert json.loads(target.read_text())["faces_seen_in_training"] == seen
        caplog.clear()


def test_asking_for_more_labeled_faces_than_there_are_is_said(
    tmp_path: Path, capsys, caplog
) -> None:
    """`--num-labeled 10` on 4 training faces trained on 4 with only an INFO line 'training
    on 4 of 4': a label-efficiency curve would have plotted the point at K = 10."""
    data = small_lapa(tmp_path / "lapa")
    code, _, err = run(capsys, "finetune", "--data", str(data), "--preset", "tiny", "--max-steps",
                       "1", "--batch-size", "2", "--num-labeled", "10", "--out-dir",
                       str(tmp_path / "run"), "--device", "cpu", "--no-progress-bar")  # fmt: skip
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("--num-labeled 10 asks for more faces than the 4 of" in w for w in warnings)


def test_a_stage1_start_of_another_preset_says_which_preset_to_run(tmp_path: Path, capsys) -> None:
    """`pretrain --preset tiny --init starter_backbone.safetensors` said the models do not match,
    not what to run instead."""
    from tests.conftest import ROOT

    starter = ROOT / "trainer" / "assets" / "models" / "starter_backbone.safetensors"
    if not starter.is_file():
        pytest.skip("the starter backbone is not in this checkout")
    photos = user_photos(tmp_path / "photos")
    code, _, err = run(capsys, "pretrain", "--image-dirs", str(photos), "--preset", "tiny",
                       "--init", str(starter), "--max-steps", "1", "--out-dir",
                       str(tmp_path / "run"), "--device", "cpu")  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert "does not match this run's 'tiny'" in err and "run with --preset lite" in err


def test_resuming_with_other_settings_says_which_and_the_checkpoint_keeps_them(
    tmp_path: Path, capsys, caplog
) -> None:
    """`pretrain --resume` with another --batch-size and --lr said 'resuming from step 46 of
    10', trained nothing more and reported success; the checkpoint then recorded the new
    settings as the run's, so the run could not be reproduced from it."""
    from trainer.checkpoint import read_metadata

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "run"
    base = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--epochs", "2",
            "--out-dir", str(out), "--device", "cpu"]  # fmt: skip
    code, _, err = run(capsys, *base, "--batch-size", "1", "--max-steps", "4")
    assert code == 0, err
    last = out / "pretrain_last.safetensors"
    caplog.clear()
    code, _, err = run(capsys, *base, "--batch-size", "2", "--lr", "0.1", "--resume", str(last))
    assert code == 0, err
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "settings that differ from the run's" in warnings
    assert "batch_size 1 -> 2" in warnings and "lr 0.001 -> 0.1" in warnings
    changes = read_metadata(last)["changed_on_resume"]
    assert {"step": 4, "batch_size": [1, 2], "lr": [0.001, 0.1], "max_steps": [4, None]} in changes


@pytest.mark.parametrize(
    ("command", "flag", "value", "says"),
    [
        ("pretrain", "--lr", "-1", "--lr"),
        ("pretrain", "--mask-ratio", "2", "--mask-ratio"),
        ("pretrain", "--max-steps", "0", "--max-steps"),
        ("pretrain", "--num-patches", "0", "--num-patches"),
        ("finetune", "--lr", "-0.01", "--lr"),
        ("finetune", "--dice-weight", "-1", "--dice-weight"),
        ("recon-grid", "--num-images", "0", "--num-images"),
        ("finetune", "--num-workers", "-1", "--num-workers"),
        ("finetune", "--input-size", "0", "--input-size"),
        ("pretrain", "--input-size", "-32", "--input-size"),
        ("finetune", "--val-limit", "0", "--val-limit"),
    ],
)
def test_an_impossible_flag_value_is_one_line_not_a_traceback(
    tmp_path: Path, capsys, command: str, flag: str, value: str, says: str
) -> None:
    """`--lr -1` and `--mask-ratio 2` ended in a ValueError traceback from torch / the masker,
    `recon-grid --num-images 0` in a RuntimeError; `--max-steps 0` 'pretrained' nothing."""
    photos, data = user_photos(tmp_path / "photos"), small_lapa(tmp_path / "lapa")
    out = str(tmp_path / "run")
    argv = {
        "pretrain": ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--out-dir", out],
        "finetune": ["finetune", "--data", str(data), "--preset", "tiny", "--out-dir", out],
        "recon-grid": ["recon-grid", str(tmp_path / "ssl.safetensors"), str(photos), "--out",
                       str(tmp_path / "g.png")],
    }[command]  # fmt: skip
    if command == "recon-grid":
        model = build_model(get_preset("tiny"), ("reconstruction",))
        save_checkpoint(tmp_path / "ssl.safetensors", model, stage="pretrain")
    code, _, err = run(capsys, *argv, flag, value, "--device", "cpu")
    assert code == 2 and "Traceback" not in err, err
    assert says in err and value in err
    assert len(err.strip().splitlines()) == 1 or err.startswith("usage:")  # argparse's own
    assert not (tmp_path / "run").exists()


def test_predict_says_how_many_faces_it_parsed(parser_ckpt: Path, tmp_path: Path, capsys) -> None:
    """On a folder of group photos, predict said 'wrote 8 label maps' and nothing of the faces:
    how many it found, and how many photos had none (their label maps all background)."""
    photos = user_photos(tmp_path / "photos")
    code, out, err = predict_photos(capsys, parser_ckpt, photos, tmp_path / "labels")
    assert code == 0, err
    assert "wrote 3 label maps" in out and "3 faces parsed, 0 photos without a face" in out
    code, out, err = predict_photos(
        capsys, parser_ckpt, photos, tmp_path / "whole", "--framing", "whole"
    )
    assert code == 0, err
    assert "faces parsed" not in out  # whole framing parses each image as one face crop
