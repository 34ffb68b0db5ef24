"""Defects found in a user trial of the ``faceparse`` CLI: each test asserts what the user
noticed (the message, the exit code, the files left)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_face
from trainer.checkpoint import save_checkpoint
from trainer.cli import main
from trainer.models import build_model, get_preset


@pytest.fixture(scope="module")
def parser_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "parser.safetensors"
    return save_checkpoint(path, build_model(get_preset("tiny")), stage="finetune")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }  # fmt: skip


def _predict(capsys: pytest.CaptureFixture[str], ckpt: Path, photos: Path, out: Path, *more: str):
    return run(capsys, "predict", str(ckpt), str(photos), str(out), "--device", "cpu",
               "--runtime", "torch", *more)  # fmt: skip


def _photos(folder: Path) -> Path:
    """Two PNG photos and a JPEG, one in a subfolder: a user's own folder."""
    (folder / "trip").mkdir(parents=True)
    for i, name in enumerate(["anna.png", "trip/ben.png", "carl.jpg"]):
        Image.fromarray(synthetic_face(64, i)[0]).save(folder / name)
    return folder


def test_predict_into_the_photo_folder_refuses_to_overwrite_the_photos(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`faceparse predict MODEL photos photos` replaced the user's PNG photos by label maps."""
    photos = _photos(tmp_path / "photos")
    before = _digests(photos)
    for out, more in [(photos, ()), (tmp_path / "labels", ("--overlays", str(photos)))]:
        code, _, err = _predict(capsys, parser_ckpt, photos, out, *more)
        assert code == 2 and "Traceback" not in err
        assert "is one of the input images" in err and str(photos) in err
        assert _digests(photos) == before  # nothing written, nothing replaced


def test_predict_never_replaces_a_file_it_did_not_write(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "labels"
    out.mkdir()
    (out / "anna.png").write_bytes(b"my own hand-made label")
    code, _, err = _predict(capsys, parser_ckpt, photos, out)
    assert code == 2 and "Traceback" not in err
    assert f"{out / 'anna.png'}: exists and was not written by faceparse predict" in err
    assert (out / "anna.png").read_bytes() == b"my own hand-made label"
    assert sorted(p.name for p in out.iterdir()) == ["anna.png"]  # nothing else written either

    # Its own earlier output is replaced without a question, overlays included, and a second
    # folder of photos predicted into the same place keeps the first one's files its own.
    (out / "anna.png").unlink()
    overlays = ("--overlays", str(tmp_path / "ov"))
    for _ in range(2):
        code, out_text, err = _predict(capsys, parser_ckpt, photos, out, *overlays)
        assert code == 0, err
        assert "wrote 3 label maps" in out_text
    more = tmp_path / "more"
    more.mkdir()
    Image.fromarray(synthetic_face(64, 7)[0]).save(more / "dora.jpg")
    code, _, err = _predict(capsys, parser_ckpt, more, out)
    assert code == 0, err
    code, _, err = _predict(capsys, parser_ckpt, photos, out, *overlays)
    assert code == 0, err


def test_predict_after_an_interrupted_predict_replaces_its_own_files(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """A Ctrl+C'd predict left label maps but no faces.json; the rerun must not call them a
    user's files."""
    from trainer.predict import Predictor
    from trainer.predict_folder import predict_folder

    photos = _photos(tmp_path / "photos")
    out = tmp_path / "labels"

    def stop_after_one(done: int, total: int, path: Path) -> None:
        raise KeyboardInterrupt

    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    with pytest.raises(KeyboardInterrupt):
        predict_folder(predictor, photos, out, on_progress=stop_after_one, readers=0)
    assert [p.name for p in out.glob("*.png")] == ["anna.png"] and not (out / "faces.json").exists()
    code, out_text, err = _predict(capsys, parser_ckpt, photos, out)
    assert code == 0, err
    assert "wrote 3 label maps" in out_text
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == [".predict.lock"]  # no pending list or temporary file left


def _lapa(root: Path) -> Path:
    from tests.conftest import write_synthetic_lapa

    return write_synthetic_lapa(root, {"train": 4, "val": 2})


def test_an_output_path_that_cannot_be_written_is_one_line_not_a_traceback(
    parser_ckpt: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """An output under a file (or a folder on a read-only disk) gave a PermissionError /
    NotADirectoryError traceback from every command that writes."""
    photos, data = _photos(tmp_path / "photos"), _lapa(tmp_path / "lapa")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    under = blocker / "out"
    commands = [
        ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--max-steps", "1",
         "--out-dir", str(under), "--device", "cpu"],
        ["finetune", "--data", str(data), "--preset", "tiny", "--max-steps", "1",
         "--out-dir", str(under), "--device", "cpu", "--no-progress-bar"],
        ["predict", str(parser_ckpt), str(photos), str(under), "--device", "cpu",
         "--runtime", "torch"],
        ["evaluate", str(parser_ckpt), "--data", str(data), "--split", "val", "--device", "cpu",
         "--json", str(under / "m.json")],
        ["export-onnx", str(parser_ckpt), str(under / "m.onnx")],
    ]  # fmt: skip
    for argv in commands:
        code, _, err = run(capsys, *argv)
        assert code == 2, (argv[0], err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"faceparse {argv[0]}: error: {blocker}" in err, err
    assert blocker.read_text() == "a file, not a folder"

    # A folder it may not write in (as on a read-only disk): the folder is named, not the
    # temporary file the atomic write tried first.
    import trainer.data.imageio as imageio

    def read_only(path: Path) -> tuple[int, Path]:
        tmp = path.parent / f".{path.name}.0000.tmp"
        raise PermissionError(13, "Permission denied", str(tmp))

    monkeypatch.setattr(imageio, "_create_temp", read_only)
    target = tmp_path / "metrics.json"
    code, _, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(data), "--split",
                       "val", "--device", "cpu", "--json", str(target))  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path}: cannot write here (Permission denied)" in err and ".tmp" not in err


def _signal_a_run(argv: list[str], log: Path, signum: int) -> tuple[int, str, str]:
    """Run ``python -m trainer ARGV`` and send it ``signum`` once ``log`` holds two steps:
    (exit code, stdout, stderr)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "trainer", *argv], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # A child of a non-interactive shell may start with SIGINT ignored; a terminal's never.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        time.sleep(0.2)
    child.send_signal(signum)
    out, err = child.communicate(timeout=120)
    return child.returncode, out, err


def test_sigterm_stops_a_pretraining_as_ctrl_c_does_with_a_resumable_checkpoint(
    tmp_path: Path,
) -> None:
    """`kill PID` (a cluster's preemption, `docker stop`) ended a run at once: no checkpoint
    (the last one up to --checkpoint-minutes old) and no word on how to go on."""
    import json
    import signal

    from trainer.checkpoint import read_metadata

    photos, out = _photos(tmp_path / "photos"), tmp_path / "run"
    argv = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--epochs", "100000",
            "--batch-size", "1", "--device", "cpu", "--checkpoint-minutes", "0", "--out-dir",
            str(out)]  # fmt: skip
    log = out / "pretrain_log.jsonl"
    code, _, err = _signal_a_run(argv, log, signal.SIGTERM)
    assert code == 130, err
    last = out / "pretrain_last.safetensors"
    assert "interrupted at step" in err and f"--resume {last}" in err and "Traceback" not in err
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert read_metadata(last)["step"] == steps[-1]  # every step it logged is in the checkpoint
    names = sorted(p.name for p in out.iterdir())  # no temporary file left behind
    assert names == [".pretrain.lock", "pretrain_last.safetensors", "pretrain_log.jsonl"]


def test_ctrl_c_during_finetuning_says_what_it_kept(tmp_path: Path) -> None:
    """Ctrl+C during finetune printed only 'faceparse finetune: interrupted', though it had
    written the best and the last checkpoints."""
    import signal

    data, out = _lapa(tmp_path / "lapa"), tmp_path / "run"
    argv = ["finetune", "--data", str(data), "--preset", "tiny", "--epochs", "100000",
            "--batch-size", "1", "--device", "cpu", "--no-progress-bar", "--out-dir", str(out)]  # fmt: skip
    code, _, err = _signal_a_run(argv, out / "finetune_log.jsonl", signal.SIGINT)
    assert code == 130 and "Traceback" not in err, err
    best, last = out / "finetune_best.safetensors", out / "finetune_last.safetensors"
    assert best.is_file() and last.is_file()
    assert "faceparse finetune: interrupted at step" in err
    assert f"kept {best} (epoch" in err and f"and {last}" in err


def test_a_second_training_into_the_same_run_folder_is_refused_while_the_first_runs(
    tmp_path: Path, capsys
) -> None:
    """Two `pretrain --out-dir runs/x` at once both 'succeeded': the second truncated the first's
    log and each overwrote the other's checkpoint."""
    from trainer.run_files import RunFiles

    photos, data, out = _photos(tmp_path / "photos"), _lapa(tmp_path / "lapa"), tmp_path / "run"
    out.mkdir()
    (out / "pretrain_log.jsonl").write_text('{"step": 1}\n')  # the running one's
    (out / "finetune_log.jsonl").write_text('{"step": 1}\n')
    pretrain = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--max-steps", "1",
                "--batch-size", "2", "--out-dir", str(out), "--device", "cpu"]  # fmt: skip
    finetune = ["finetune", "--data", str(data), "--preset", "tiny", "--max-steps", "1",
                "--batch-size", "2", "--out-dir", str(out), "--device", "cpu",
                "--no-progress-bar"]  # fmt: skip
    for stage, argv in [("pretrain", pretrain), ("finetune", finetune)]:
        with RunFiles(out, stage).hold():  # another process's run, as the lock sees it
            code, _, err = run(capsys, *argv)
        assert code == 2 and "Traceback" not in err
        assert f"{out}: another faceparse {stage} is writing this folder" in err
        assert (out / f"{stage}_log.jsonl").read_text() == '{"step": 1}\n'
        assert not list(out.glob("*.safetensors"))
    for argv in (pretrain, finetune):  # once it has ended, the folder is free again
        code, _, err = run(capsys, *argv)
        assert code == 0, err


def test_evaluate_on_a_split_without_images_fails_instead_of_scoring_nothing(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """An empty test/images/ printed a table of n/a, '0 images', exit 0, and wrote that JSON."""
    data = _lapa(tmp_path / "lapa")
    (data / "test" / "images").mkdir(parents=True)
    target = tmp_path / "m.json"
    code, out, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(data), "--device",
                         "cpu", "--json", str(target))  # fmt: skip
    assert code == 2 and "Traceback" not in err and "n/a" not in out
    assert f"{data / 'test' / 'images'}: no images to score" in err
    assert not target.exists()


def test_single_file_outputs_never_replace_a_users_file_but_replace_their_own(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`evaluate --json`, `recon-grid --out` and `export-onnx OUT` overwrote whatever file was
    at that path (a user's notes, photo, model) without a word."""
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    stage1 = tmp_path / "ssl.safetensors"
    save_checkpoint(stage1, build_model(get_preset("tiny"), ("reconstruction",)), stage="pretrain")
    photos, data = _photos(tmp_path / "photos"), _lapa(tmp_path / "lapa")
    commands = {
        "evaluate": lambda out: ["evaluate", str(parser_ckpt), "--data", str(data), "--split",
                                 "val", "--device", "cpu", "--json", str(out)],
        "recon-grid": lambda out: ["recon-grid", str(stage1), str(photos), "--out", str(out),
                                   "--device", "cpu"],
        "export-onnx": lambda out: ["export-onnx", str(parser_ckpt), str(out)],
    }  # fmt: skip
    for (command, argv), name in zip(
        commands.items(), ["notes.json", "me.png", "mine.onnx"], strict=True
    ):
        users = tmp_path / name
        users.write_bytes(b"the user's own file")
        code, _, err = run(capsys, *argv(users))
        assert code == 2 and "Traceback" not in err, err
        assert f"{users}: exists and was not written by faceparse {command}" in err
        assert users.read_bytes() == b"the user's own file"
        ours = tmp_path / f"ours-{name}"
        for _ in range(2):  # a rerun replaces the command's own file
            code, _, err = run(capsys, *argv(ours))
            assert code == 0, err
        assert ours.stat().st_size > 100


def _celebamask(src: Path, n: int = 10) -> Path:
    """n CelebAMask-HQ-style pairs (merged layout: images/*.jpg, masks/*.png)."""
    from trainer.data.imageio import write_image, write_label

    for i in range(n):
        image, label = synthetic_face(32, i)
        write_image(src / "images" / f"{i:05d}.jpg", image)
        write_label(src / "masks" / f"{i:05d}.png", label)  # LaPa ids are CelebAMask ids too
    return src


def test_converting_again_with_another_split_never_puts_a_face_in_two_splits(
    tmp_path: Path, capsys
) -> None:
    """A second `convert SRC DST --val-fraction 0.3 --seed 1` into the first one's DST said
    'train: 7, val: 3' but left faces of the old val split in train/ and the reverse: the model
    was then validated on faces it trained on."""
    src, dst = _celebamask(tmp_path / "src"), tmp_path / "lapa"
    code, _, err = run(capsys, "convert", str(src), str(dst), "--val-fraction", "0.3")
    assert code == 0, err
    before = _digests(dst)
    code, _, err = run(
        capsys, "convert", str(src), str(dst), "--val-fraction", "0.3", "--seed", "1"
    )
    assert code == 2 and "Traceback" not in err
    assert "is already in split" in err and str(dst) in err
    assert _digests(dst) == before  # nothing written
    train = {p.stem for p in (dst / "train" / "images").iterdir()}
    val = {p.stem for p in (dst / "val" / "images").iterdir()}
    assert not train & val
    # The same split again (a rerun) is fine: it rewrites the same files.
    code, _, err = run(capsys, "convert", str(src), str(dst), "--val-fraction", "0.3")
    assert code == 0, err


def test_a_label_without_its_image_is_an_error_not_silently_left_out(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """A LaPa label whose image was lost was skipped without a word: `--num-labeled 4` trained
    on 3 faces, and evaluate scored one face fewer than the labels."""
    data = _lapa(tmp_path / "lapa")
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
    src = _celebamask(tmp_path / "celeb", n=3)
    (src / "images" / "00001.jpg").unlink()
    code, _, err = run(capsys, "convert", str(src), str(tmp_path / "out"))
    assert code == 2 and f"{src / 'masks' / '00001.png'}: a label without an image" in err


def test_pretrain_says_how_many_photos_it_found_and_how_many_it_could_not_read(
    tmp_path: Path, capsys, caplog
) -> None:
    """On a folder of the user's own photos, pretrain said nothing of what it found: not how
    many photos, not that some were unreadable (only warnings scrolled away mid-run)."""
    import logging

    photos = _photos(tmp_path / "photos")
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
    photos = _photos(tmp_path / "photos")
    (photos / "trip" / "clip.mov").write_bytes(b"a video")
    code, _, err = _predict(capsys, parser_ckpt, photos, tmp_path / "labels")
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

    data = _lapa(tmp_path / "lapa")
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

    data, out = _lapa(tmp_path / "lapa"), tmp_path / "run"
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

    data, run_dir = _lapa(tmp_path / "lapa"), tmp_path / "run"
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
    data = _lapa(tmp_path / "lapa")
    code, _, err = run(capsys, "finetune", "--data", str(data), "--preset", "tiny", "--max-steps",
                       "1", "--batch-size", "2", "--num-labeled", "10", "--out-dir",
                       str(tmp_path / "run"), "--device", "cpu", "--no-progress-bar")  # fmt: skip
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("--num-labeled 10 asks for more faces than the 4 of" in w for w in warnings)


def test_predict_into_a_folder_inside_the_photos_leaves_its_own_output_alone(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`predict MODEL photos photos/labels`, run again, took its own label maps for photos: it
    refused them as input images (or, before that check, parsed them into labels/labels/)."""
    photos = _photos(tmp_path / "photos")
    for _ in range(2):
        code, out, err = _predict(capsys, parser_ckpt, photos, photos / "labels", "--overlays",
                                  str(photos / "overlays"))  # fmt: skip
        assert code == 0, err
        assert "wrote 3 label maps" in out and "skipped" not in out
    assert not (photos / "labels" / "labels").exists()
    assert not (photos / "labels" / "overlays").exists()


def test_a_stage1_start_of_another_preset_says_which_preset_to_run(tmp_path: Path, capsys) -> None:
    """`pretrain --preset tiny --init starter_backbone.safetensors` said the models do not match,
    not what to run instead."""
    from tests.conftest import ROOT

    starter = ROOT / "trainer" / "assets" / "models" / "starter_backbone.safetensors"
    if not starter.is_file():
        pytest.skip("the starter backbone is not in this checkout")
    photos = _photos(tmp_path / "photos")
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

    photos, out = _photos(tmp_path / "photos"), tmp_path / "run"
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
        ("pretrain", "--lr", "-1", "lr"),
        ("pretrain", "--mask-ratio", "2", "mask_ratio"),
        ("pretrain", "--max-steps", "0", "max_steps"),
        ("pretrain", "--num-patches", "0", "num_patches"),
        ("finetune", "--lr", "-0.01", "lr"),
        ("finetune", "--dice-weight", "-1", "dice_weight"),
        ("recon-grid", "--num-images", "0", "--num-images"),
        ("finetune", "--num-workers", "-1", "num_workers"),
        ("finetune", "--input-size", "0", "input_size"),
        ("pretrain", "--input-size", "-32", "input_size"),
        ("finetune", "--val-limit", "0", "val_limit"),
    ],
)
def test_an_impossible_flag_value_is_one_line_not_a_traceback(
    tmp_path: Path, capsys, command: str, flag: str, value: str, says: str
) -> None:
    """`--lr -1` and `--mask-ratio 2` ended in a ValueError traceback from torch / the masker,
    `recon-grid --num-images 0` in a RuntimeError; `--max-steps 0` 'pretrained' nothing."""
    photos, data = _photos(tmp_path / "photos"), _lapa(tmp_path / "lapa")
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
    photos = _photos(tmp_path / "photos")
    code, out, err = _predict(capsys, parser_ckpt, photos, tmp_path / "labels")
    assert code == 0, err
    assert "wrote 3 label maps" in out and "3 faces parsed, 0 photos without a face" in out
    code, out, err = _predict(capsys, parser_ckpt, photos, tmp_path / "whole", "--framing", "whole")
    assert code == 0, err
    assert "faces parsed" not in out  # whole framing parses each image as one face crop


def test_a_second_predict_into_the_same_folder_is_refused_while_the_first_runs(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """Two predicts into one output folder at once interleaved their label maps and each
    replaced the other's faces.json."""
    from trainer.run_files import hold_folder

    photos, out = _photos(tmp_path / "photos"), tmp_path / "labels"
    with hold_folder(out, "predict"):
        code, _, err = _predict(capsys, parser_ckpt, photos, out)
    assert code == 2 and f"{out}: another faceparse predict is writing this folder" in err
    assert [p.name for p in out.iterdir()] == [".predict.lock"]
    code, _, err = _predict(capsys, parser_ckpt, photos, out)
    assert code == 0, err


def test_ctrl_c_before_a_pretraining_starts_does_not_offer_an_earlier_runs_checkpoint(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Ctrl+C while a new run still scanned its photos said 'interrupted at step 4; continue
    with --resume .../pretrain_last.safetensors': the step and file of the earlier run."""
    import trainer.pretrain

    photos, out = _photos(tmp_path / "photos"), tmp_path / "run"
    base = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--batch-size", "1",
            "--epochs", "2", "--out-dir", str(out), "--device", "cpu"]  # fmt: skip
    code, _, err = run(capsys, *base, "--max-steps", "4")
    assert code == 0, err

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.pretrain, "_make_loader", ctrl_c)
    code, _, err = run(capsys, *base, "--seed", "1")
    assert code == 130
    assert "--resume" not in err and "interrupted before its first checkpoint" in err
