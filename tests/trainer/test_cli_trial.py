"""Defects found in a user trial of the ``faceparse`` CLI, part 1: files and processes (a
user's files never replaced, outputs the system refuses, signals, two runs at once). Each test
asserts what the user noticed: the message, the exit code, the files left."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_face
from tests.trainer.cli_trial_helpers import (
    digests,
    predict_photos,
    run,
    signal_a_run,
    small_celebamask,
    small_lapa,
    user_photos,
)
from trainer.checkpoint import save_checkpoint
from trainer.models import build_model, get_preset


def test_predict_into_the_photo_folder_refuses_to_overwrite_the_photos(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`faceparse predict MODEL photos photos` replaced the user's PNG photos by label maps."""
    photos = user_photos(tmp_path / "photos")
    before = digests(photos)
    for out, more in [(photos, ()), (tmp_path / "labels", ("--overlays", str(photos)))]:
        code, _, err = predict_photos(capsys, parser_ckpt, photos, out, *more)
        assert code == 2 and "Traceback" not in err
        assert "is one of the input images" in err and str(photos) in err
        assert digests(photos) == before  # nothing written, nothing replaced


def test_predict_never_replaces_a_file_it_did_not_write(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    photos = user_photos(tmp_path / "photos")
    out = tmp_path / "labels"
    out.mkdir()
    (out / "anna.png").write_bytes(b"my own hand-made label")
    code, _, err = predict_photos(capsys, parser_ckpt, photos, out)
    assert code == 2 and "Traceback" not in err
    assert f"{out / 'anna.png'}: exists and was not written by faceparse predict" in err
    assert (out / "anna.png").read_bytes() == b"my own hand-made label"
    assert sorted(p.name for p in out.iterdir()) == ["anna.png"]  # nothing else written either

    # Its own earlier output is replaced without a question, overlays included, and a second
    # folder of photos predicted into the same place keeps the first one's files its own.
    (out / "anna.png").unlink()
    overlays = ("--overlays", str(tmp_path / "ov"))
    for _ in range(2):
        code, out_text, err = predict_photos(capsys, parser_ckpt, photos, out, *overlays)
        assert code == 0, err
        assert "wrote 3 label maps" in out_text
    more = tmp_path / "more"
    more.mkdir()
    Image.fromarray(synthetic_face(64, 7)[0]).save(more / "dora.jpg")
    code, _, err = predict_photos(capsys, parser_ckpt, more, out)
    assert code == 0, err
    code, _, err = predict_photos(capsys, parser_ckpt, photos, out, *overlays)
    assert code == 0, err


def test_predict_after_an_interrupted_predict_replaces_its_own_files(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """A Ctrl+C'd predict left label maps but no faces.json; the rerun must not call them a
    user's files."""
    from trainer.predict import Predictor
    from trainer.predict_folder import predict_folder

    photos = user_photos(tmp_path / "photos")
    out = tmp_path / "labels"

    def stop_after_one(done: int, total: int, path: Path) -> None:
        raise KeyboardInterrupt

    predictor = Predictor.from_checkpoint(parser_ckpt, device="cpu", framing="whole")
    with pytest.raises(KeyboardInterrupt):
        predict_folder(predictor, photos, out, on_progress=stop_after_one, readers=0)
    assert [p.name for p in out.glob("*.png")] == ["anna.png"] and not (out / "faces.json").exists()
    code, out_text, err = predict_photos(capsys, parser_ckpt, photos, out)
    assert code == 0, err
    assert "wrote 3 label maps" in out_text
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == [".predict.lock"]  # no pending list or temporary file left


def test_predict_into_a_folder_inside_the_photos_leaves_its_own_output_alone(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`predict MODEL photos photos/labels`, run again, took its own label maps for photos: it
    refused them as input images (or, before that check, parsed them into labels/labels/)."""
    photos = user_photos(tmp_path / "photos")
    for _ in range(2):
        code, out, err = predict_photos(capsys, parser_ckpt, photos, photos / "labels", "--overlays",
                                  str(photos / "overlays"))  # fmt: skip
        assert code == 0, err
        assert "wrote 3 label maps" in out and "skipped" not in out
    assert not (photos / "labels" / "labels").exists()
    assert not (photos / "labels" / "overlays").exists()


def test_a_second_predict_into_the_same_folder_is_refused_while_the_first_runs(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """Two predicts into one output folder at once interleaved their label maps and each
    replaced the other's faces.json."""
    from trainer.run_files import hold_folder

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "labels"
    with hold_folder(out, "predict"):
        code, _, err = predict_photos(capsys, parser_ckpt, photos, out)
    assert code == 2 and f"{out}: another faceparse predict is writing this folder" in err
    assert [p.name for p in out.iterdir()] == [".predict.lock"]
    code, _, err = predict_photos(capsys, parser_ckpt, photos, out)
    assert code == 0, err


def test_single_file_outputs_never_replace_a_users_file_but_replace_their_own(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`evaluate --json`, `recon-grid --out` and `export-onnx OUT` overwrote whatever file was
    at that path (a user's notes, photo, model) without a word."""
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    stage1 = tmp_path / "ssl.safetensors"
    save_checkpoint(stage1, build_model(get_preset("tiny"), ("reconstruction",)), stage="pretrain")
    photos, data = user_photos(tmp_path / "photos"), small_lapa(tmp_path / "lapa")
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


def test_converting_again_with_another_split_never_puts_a_face_in_two_splits(
    tmp_path: Path, capsys
) -> None:
    """A second `convert SRC DST --val-fraction 0.3 --seed 1` into the first one's DST said
    'train: 7, val: 3' but left faces of the old val split in train/ and the reverse: the model
    was then validated on faces it trained on."""
    src, dst = small_celebamask(tmp_path / "src"), tmp_path / "lapa"
    code, _, err = run(capsys, "convert", str(src), str(dst), "--val-fraction", "0.3")
    assert code == 0, err
    before = digests(dst)
    code, _, err = run(
        capsys, "convert", str(src), str(dst), "--val-fraction", "0.3", "--seed", "1"
    )
    assert code == 2 and "Traceback" not in err
    assert "is already in split" in err and str(dst) in err
    assert digests(dst) == before  # nothing written
    train = {p.stem for p in (dst / "train" / "images").iterdir()}
    val = {p.stem for p in (dst / "val" / "images").iterdir()}
    assert not train & val
    # The same split again (a rerun) is fine: it rewrites the same files.
    code, _, err = run(capsys, "convert", str(src), str(dst), "--val-fraction", "0.3")
    assert code == 0, err


def test_an_output_path_that_cannot_be_written_is_one_line_not_a_traceback(
    parser_ckpt: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """An output under a file (or a folder on a read-only disk) gave a PermissionError /
    NotADirectoryError traceback from every command that writes."""
    photos, data = user_photos(tmp_path / "photos"), small_lapa(tmp_path / "lapa")
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


def test_a_second_training_into_the_same_run_folder_is_refused_while_the_first_runs(
    tmp_path: Path, capsys
) -> None:
    """Two `pretrain --out-dir runs/x` at once both 'succeeded': the second truncated the first's
    log and each overwrote the other's checkpoint."""
    from trainer.run_files import RunFiles

    photos, data, out = (
        user_photos(tmp_path / "photos"),
        small_lapa(tmp_path / "lapa"),
        tmp_path / "run",
    )
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


def test_sigterm_stops_a_pretraining_as_ctrl_c_does_with_a_resumable_checkpoint(
    tmp_path: Path,
) -> None:
    """`kill PID` (a cluster's preemption, `docker stop`) ended a run at once: no checkpoint
    (the last one up to --checkpoint-minutes old) and no word on how to go on."""
    import json
    import signal

    from trainer.checkpoint import read_metadata

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "run"
    argv = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--epochs", "100000",
            "--batch-size", "1", "--device", "cpu", "--checkpoint-minutes", "0", "--out-dir",
            str(out)]  # fmt: skip
    log = out / "pretrain_log.jsonl"
    code, _, err = signal_a_run(argv, log, signal.SIGTERM)
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

    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "run"
    argv = ["finetune", "--data", str(data), "--preset", "tiny", "--epochs", "100000",
            "--batch-size", "1", "--device", "cpu", "--no-progress-bar", "--out-dir", str(out)]  # fmt: skip
    code, _, err = signal_a_run(argv, out / "finetune_log.jsonl", signal.SIGINT)
    assert code == 130 and "Traceback" not in err, err
    best, last = out / "finetune_best.safetensors", out / "finetune_last.safetensors"
    assert best.is_file() and last.is_file()
    assert "faceparse finetune: interrupted at step" in err
    assert f"kept {best} (epoch" in err and f"and {last}" in err


def test_ctrl_c_before_a_pretraining_starts_does_not_offer_an_earlier_runs_checkpoint(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Ctrl+C while a new run still scanned its photos said 'interrupted at step 4; continue
    with --resume .../pretrain_last.safetensors': the step and file of the earlier run."""
    import trainer.pretrain

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "run"
    base = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--batch-size", "1",
            "--epochs", "2", "--out-dir", str(out), "--device", "cpu"]  # fmt: skip
    code, _, err = run(capsys, *base, "--max-steps", "4")
    assert code == 0, err

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.pretrain, "_make_loader", ctrl_c)
    code, _, err = run(capsys, *base, "--seed", "1", "--overwrite")  # replaces the finished run
    assert code == 130
    assert "--resume" not in err and "interrupted before its first checkpoint" in err
