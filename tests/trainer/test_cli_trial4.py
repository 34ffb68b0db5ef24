"""Defects found in a fourth user trial of the ``faceparse`` CLI, README and --help in hand:
``--overwrite`` runs that end early, failed runs, read-only folders. Each test asserts what the
user noticed: the message, the exit code, the files left."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from PIL import Image

from tests.trainer.cli_trial_helpers import digests, run, signal_a_run, small_lapa


def _finetune(data: Path, out: Path, *more: str) -> list[str]:
    return ["finetune", "--data", str(data), "--preset", "tiny", "--batch-size", "2",
            "--device", "cpu", "--no-progress-bar", "--out-dir", str(out), *more]  # fmt: skip


def _run_files(out: Path) -> dict[str, str]:
    """The folder as a user lists it (``ls``: hidden lock and set-aside files not shown)."""
    return {name: digest for name, digest in digests(out).items() if not name.startswith(".")}


def test_an_overwrite_that_fails_on_its_input_keeps_the_earlier_run_whole(
    tmp_path: Path, capsys
) -> None:
    """`finetune --overwrite` into the folder of an earlier run, on data with a label of the
    wrong size: the one-line error came after the new run had deleted the earlier run's logs,
    leaving its checkpoints without them (and the earlier run not replaced either)."""
    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "run"
    code, _, err = run(capsys, *_finetune(data, out, "--max-steps", "2"))
    assert code == 0, err
    earlier = _run_files(out)
    assert {"finetune_best.safetensors", "finetune_log.jsonl", "finetune_val.jsonl"} <= set(earlier)

    label = next((data / "train" / "labels").iterdir())
    good = label.read_bytes()
    Image.open(label).resize((32, 32), Image.Resampling.NEAREST).save(label)
    code, _, err = run(capsys, *_finetune(data, out, "--max-steps", "3", "--overwrite"))
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].endswith("label is 32×32 but its image is 64×64")
    assert _run_files(out) == earlier  # the earlier run as it was, logs included
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".finetune.lock"]

    # On good data it replaces the earlier run, and nothing of it is left aside.
    label.write_bytes(good)
    code, _, err = run(capsys, *_finetune(data, out, "--max-steps", "3", "--overwrite"))
    assert code == 0, err
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".finetune.lock"]
    assert (out / "finetune_log.jsonl").read_text().count("\n") == 3


def test_an_overwrite_killed_before_its_first_checkpoint_never_mixes_two_runs(
    tmp_path: Path, capsys, caplog
) -> None:
    """`finetune --overwrite` into the folder of an earlier run, killed (kill -9, the OOM
    killer) before its first checkpoint: the folder held the earlier run's checkpoints beside
    the new run's log, one folder that looked like one run but mixed two. The next command
    into the folder must find the earlier run whole."""
    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "run"
    code, _, err = run(capsys, *_finetune(data, out, "--max-steps", "1"))  # a log of one line
    assert code == 0, err
    earlier = _run_files(out)

    # No validation and 100,000 epochs: its only checkpoints would come at the end.
    argv = _finetune(data, out, "--epochs", "100000", "--val-every", "100000", "--overwrite")
    code, _, _ = signal_a_run(argv, out / "finetune_log.jsonl", signal.SIGKILL)
    assert code == -signal.SIGKILL
    after_kill = _run_files(out)
    assert after_kill["finetune_log.jsonl"] != earlier["finetune_log.jsonl"]  # the new run's
    assert not any(name.endswith(".safetensors") for name in after_kill)  # none of the other's

    # The next run into the folder puts the earlier run back before it judges the folder.
    code, _, err = run(capsys, *_finetune(data, out, "--max-steps", "3"))
    assert code == 2 and "Traceback" not in err, err
    assert "trained 1 steps" in err.strip().splitlines()[-1]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("put back the earlier run" in w for w in warnings), warnings
    assert _run_files(out) == earlier


def test_pretrain_overwrite_replaces_a_stopped_run_as_it_does_a_finished_one(
    tmp_path: Path, capsys
) -> None:
    """`pretrain --overwrite` into the folder of a run stopped short (Ctrl-C, a preemption) was
    refused with "start a new run in another --out-dir": the flag the user gave to reuse the
    folder was ignored, and the message never said why."""
    import json

    from tests.trainer.cli_trial_helpers import user_photos

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "run"
    argv = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--batch-size", "1",
            "--device", "cpu", "--checkpoint-every", "1", "--out-dir", str(out)]  # fmt: skip
    code, _, _ = signal_a_run([*argv, "--epochs", "100000"], out / "pretrain_log.jsonl",
                              signal.SIGTERM)  # fmt: skip
    assert code == 130

    code, _, err = run(capsys, *argv, "--max-steps", "2", "--seed", "1")
    assert code == 2 and "Traceback" not in err
    assert "--overwrite" in err.strip().splitlines()[-1]  # the refusal names the way out

    code, _, err = run(capsys, *argv, "--max-steps", "2", "--seed", "1", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        ".pretrain.lock", "pretrain_last.safetensors", "pretrain_log.jsonl",
        "pretrain_step1.safetensors",  # the new run's own; the last is pretrain_last
    ]  # fmt: skip
    steps = [json.loads(line)["step"] for line in (out / "pretrain_log.jsonl").open()]
    assert steps == [1, 2]


def test_a_finetune_that_fails_on_its_start_makes_no_run_folder(tmp_path: Path, capsys) -> None:
    """A mistyped --init (or a damaged checkpoint) gave its one-line error but left a new,
    empty-looking --out-dir behind (holding only the hidden lock), which the next `ls runs/`
    showed as a run."""
    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "runs" / "ft"
    missing = tmp_path / "pretrain_lats.safetensors"
    code, _, err = run(capsys, *_finetune(data, out, "--init", f"ssl:{missing}"))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(f"{missing}: checkpoint not found")
    assert not out.exists()


@pytest.mark.parametrize("command", ["pretrain", "finetune", "predict"])
def test_a_read_only_out_folder_is_named_not_its_hidden_lock_file(
    parser_ckpt: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """`--out-dir` on a read-only folder (a mounted share): the error named
    `/abs/path/ro/.finetune.lock`, a file the user never heard of, in place of the folder."""
    import errno

    import filelock

    from tests.trainer.cli_trial_helpers import user_photos

    def read_only(self: filelock.BaseFileLock, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", self.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    out = tmp_path / "ro"
    out.mkdir()
    photos = user_photos(tmp_path / "photos")
    argv = {
        "pretrain": ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--max-steps",
                     "1", "--device", "cpu", "--out-dir", str(out)],
        "finetune": _finetune(small_lapa(tmp_path / "lapa"), out, "--max-steps", "1"),
        "predict": ["predict", str(parser_ckpt), str(photos), str(out), "--runtime", "torch"],
    }[command]  # fmt: skip
    code, _, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line == (
        f"faceparse {command}: error: {out}: cannot write here (Read-only file system); "
        "choose a folder you can write to"
    )


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_torchrun_pretraining_prints_its_summary_once(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, rank: str
) -> None:
    """`torchrun --nproc_per_node 2 -m trainer pretrain ...` printed "images: N found" and
    "pretrained checkpoint: ..." once per process; rank 0 alone speaks for the run (as
    predict does), the other ranks print nothing."""
    import trainer.pretrain
    from tests.trainer.cli_trial_helpers import user_photos
    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model, get_preset

    out = tmp_path / "run"
    written = save_checkpoint(out / "pretrain_last.safetensors",
                              build_model(get_preset("tiny"), ("reconstruction",)),
                              stage="pretrain", meta={"num_images": 3})  # fmt: skip
    monkeypatch.setattr(trainer.pretrain, "pretrain", lambda config, resume: written)
    monkeypatch.setenv("RANK", rank)
    photos = user_photos(tmp_path / "photos")
    code, stdout, err = run(capsys, "pretrain", "--image-dirs", str(photos), "--preset", "tiny",
                            "--out-dir", str(tmp_path / "new"), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    expected = f"images: 3 found\npretrained checkpoint: {written}\n"
    assert stdout == (expected if rank == "0" else "")


def test_evaluate_says_it_cannot_write_its_json_before_scoring_not_after(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`evaluate --json` into a folder it cannot write (read-only, or a file where the folder
    should be) scored the whole split, printed the table, and only then failed: on a LaPa test
    set, minutes of work for an error it could have given at once."""
    data = small_lapa(tmp_path / "lapa")
    (tmp_path / "notes").write_text("a file, not a folder")
    target = tmp_path / "notes" / "val.json"
    code, stdout, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(data),
                            "--split", "val", "--json", str(target), "--device", "cpu")  # fmt: skip
    assert code == 2 and "Traceback" not in err, err
    assert stdout == ""  # no table: nothing was scored
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"faceparse evaluate: error: {tmp_path / 'notes'}")


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--batch-size", "0"], "--epochs and --batch-size must be at least 1"),
        (["--fraction", "0"], "--fraction must lie in (0, 1], got 0.0"),
        (["--max-steps", "0"], "--max-steps must be at least 1, got 0"),
    ],
)
def test_a_rejected_setting_is_named_as_the_flag_the_user_typed(
    tmp_path: Path, capsys, flags: list[str], said: str
) -> None:
    """`--batch-size 0` answered "epochs and batch_size must be at least 1": the names of the
    run config's fields, not the flags of the command the user typed."""
    code, _, err = run(capsys, *_finetune(small_lapa(tmp_path / "lapa"), tmp_path / "run"),
                       *flags)  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"faceparse finetune: error: {said}"


def test_evaluate_on_a_split_the_dataset_lacks_names_the_splits_it_has(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """After `faceparse convert ... --val-fraction 0.15` (the README's), `faceparse evaluate`
    without --split (default test) said "lapa/test: folder not found; expected the LaPa layout
    {root}/{split}/images/ ...", braces and all, and never which splits there were."""
    data = small_lapa(tmp_path / "lapa")  # train and val
    code, _, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(data), "--device", "cpu")
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line == (
        f"faceparse evaluate: error: {data} has no split 'test' (it has train, val); "
        "name one with --split"
    )


@pytest.mark.parametrize("stop_at", ["setting aside", "putting back"])
def test_an_overwrite_stopped_midway_through_its_moves_is_finished_by_the_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: str
) -> None:
    """A kill can land between two of the file moves that set an earlier run aside (or put it
    back): the next command into the folder must still find the earlier run whole, each file
    once, and no new-run file beside it."""
    import os

    from trainer.run_files import RunFiles

    files = RunFiles(tmp_path, "finetune")
    earlier = {"finetune_best.safetensors": b"best", "finetune_last.safetensors": b"last",
               "finetune_log.jsonl": b"log", "finetune_val.jsonl": b"val"}  # fmt: skip
    for name, data in earlier.items():
        (tmp_path / name).write_bytes(data)
    real, moves = os.replace, []

    def killed_after_two(src: object, dst: object) -> None:
        moves.append(src)
        if len(moves) == 3:
            raise KeyboardInterrupt  # as if the process had died here
        real(src, dst)

    if stop_at == "putting back":
        files.set_aside()
        (tmp_path / "finetune_log.jsonl").write_bytes(b"the new run's log")  # no checkpoint
        (tmp_path / "finetune_step9.safetensors").write_bytes(b"not trained")
    monkeypatch.setattr(os, "replace", killed_after_two)
    try:
        files.set_aside() if stop_at == "setting aside" else files.settle_aside()
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(os, "replace", real)

    assert "put back the earlier run" in (files.settle_aside() or "")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == earlier


def test_a_resume_from_another_folder_never_replaces_the_run_in_out_dir(
    tmp_path: Path, capsys
) -> None:
    """`pretrain --resume runs/a/pretrain_last.safetensors --out-dir runs/b`, runs/b holding a
    finished run of its own: that run's checkpoint was replaced without a word, and its log
    kept its first steps under the resumed run's later ones, one log of two runs."""
    import json

    from tests.trainer.cli_trial_helpers import user_photos

    photos = user_photos(tmp_path / "photos")
    argv = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--batch-size", "1",
            "--device", "cpu", "--no-progress-bar"]  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(capsys, *argv, "--out-dir", str(a), "--max-steps", "2")[0] == 0
    assert run(capsys, *argv, "--out-dir", str(b), "--max-steps", "3", "--seed", "5")[0] == 0
    before = digests(b)

    resume = ("--resume", str(a / "pretrain_last.safetensors"), "--max-steps", "4")
    code, _, err = run(capsys, *argv, "--out-dir", str(b), *resume)
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "a finished pretraining (3 steps)" in line and "--overwrite" in line
    assert digests(b) == before

    code, _, err = run(capsys, *argv, "--out-dir", str(b), *resume, "--overwrite")
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (b / "pretrain_log.jsonl").open()]
    assert steps == [3, 4]  # the resumed run's own steps, none of the replaced run's

    # Resuming a folder's own run needs no --overwrite.
    code, _, err = run(capsys, *argv, "--out-dir", str(b), "--max-steps", "5",
                       "--resume", str(b / "pretrain_last.safetensors"))  # fmt: skip
    assert code == 0, err


def test_quiet_may_follow_the_command_as_every_other_flag_does(tmp_path: Path, capsys) -> None:
    """`faceparse pretrain ... -q` (where README's "--no-progress-bar (and -q)" leads a user to
    put it) was a usage error, "unrecognized arguments: -q"; only `faceparse -q pretrain ...`
    worked."""
    from tests.trainer.cli_trial_helpers import user_photos

    code, _, err = run(capsys, "pretrain", "--image-dirs", str(user_photos(tmp_path / "photos")),
                       "--preset", "tiny", "--max-steps", "2", "--batch-size", "2", "--device",
                       "cpu", "--out-dir", str(tmp_path / "run"), "-q")  # fmt: skip
    assert code == 0, err
    assert "it/s" not in err and "\r" not in err
    code, out, err = run(capsys, "recipes", "--quiet")
    assert code == 0 and "center:" in out, err


def test_two_conversions_into_one_folder_do_not_run_at_once(tmp_path: Path, capsys) -> None:
    """Two `faceparse convert SRC DST` at once (a second terminal, a re-run script): the one
    that ended first removed DST/convert_unfinished.txt while the other was still writing, and
    the other then failed with "DST/convert_unfinished.txt: No such file or directory". One
    conversion writes a folder at a time; the second is told the folder is busy, and touches
    nothing."""
    from tests.trainer.cli_trial_helpers import small_celebamask
    from trainer.run_files import hold_folder

    src, dst = small_celebamask(tmp_path / "celeba", n=4), tmp_path / "lapa"
    with hold_folder(dst, "convert"):  # the first conversion, going
        code, _, err = run(capsys, "convert", str(src), str(dst))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"faceparse convert: error: {dst}: another faceparse convert is writing this folder; "
        "wait for it to end or choose another output folder"
    )
    assert [p.name for p in dst.iterdir()] == [".convert.lock"]

    # A conversion refused on its source makes no folder.
    code, _, err = run(capsys, "convert", str(tmp_path / "nowhere"), str(tmp_path / "new"))
    assert code == 2 and not (tmp_path / "new").exists()

    code, out, err = run(capsys, "convert", str(src), str(dst))
    assert code == 0 and out.strip() == f"train: 4 -> {dst}", err


def test_an_interrupted_predict_says_what_it_kept_and_how_to_finish(
    parser_ckpt: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during `faceparse predict` said only "faceparse predict: interrupted": not that the
    label maps written so far stay, nor that running it again finishes the folder (the
    training commands say how to go on)."""
    import trainer.predict_folder
    from tests.trainer.cli_trial_helpers import predict_photos, user_photos

    def ctrl_c(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.predict_folder, "predict_folder", ctrl_c)
    code, _, err = predict_photos(capsys, parser_ckpt, user_photos(tmp_path / "photos"),
                                  tmp_path / "labels")  # fmt: skip
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        "faceparse predict: interrupted; the label maps written so far are kept, and the same "
        "command again finishes the folder (it replaces only the files it wrote)"
    )


def test_resuming_a_run_killed_before_its_first_checkpoint_says_why_there_is_none(
    tmp_path: Path, capsys
) -> None:
    """A pretraining killed (kill -9) in its first minutes left only its log, pretrain_last
    being written every --checkpoint-minutes (5): `--resume DIR/pretrain_last.safetensors`, as
    README says, answered "checkpoint not found" and nothing of why, or what to do."""
    from tests.trainer.cli_trial_helpers import user_photos

    out = tmp_path / "run"
    out.mkdir()
    (out / "pretrain_log.jsonl").write_text('{"step": 1}\n{"step": 2}\n')  # what the kill left
    last = out / "pretrain_last.safetensors"
    code, _, err = run(capsys, "pretrain", "--image-dirs", str(user_photos(tmp_path / "photos")),
                       "--preset", "tiny", "--device", "cpu", "--out-dir", str(out),
                       "--resume", str(last))  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"faceparse pretrain: error: {last}: not found: the run in {out} stopped before its "
        "first checkpoint (pretrain_last is written every --checkpoint-minutes, and on Ctrl-C); "
        "start it again without --resume"
    )
