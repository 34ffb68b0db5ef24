"""Bad input to the headless half, tried through the ``faceparse`` CLI as a demanding ML
engineer would (trial of 2026-12-07): each test asserts what the user sees, the message and
the files left on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainer.cli_trial_helpers import run, small_lapa


def _finetune(data: Path, out: Path, *more: str) -> list[str]:
    return ["finetune", "--data", str(data), "--preset", "tiny", "--batch-size", "1",
            "--device", "cpu", "--no-progress-bar", "--out-dir", str(out), *more]  # fmt: skip


def _out_of_range(label_path: Path) -> None:
    label = np.array(Image.open(label_path))
    label[:2, :2] = 200
    Image.fromarray(label, "L").save(label_path)


@pytest.mark.parametrize("framing", ["whole", "detect"])
def test_a_bad_validation_label_stops_the_finetune_before_it_trains_not_after_an_epoch(
    tmp_path: Path, capsys, framing: str
) -> None:
    """A validation label with a class value out of range was found at the end of the first
    epoch: the run trained a whole epoch (hours on a real set), then stopped with exit 2 and no
    checkpoint. Every label is checked before the first step."""
    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "runs" / "ft"
    bad = data / "val" / "labels" / "val_001.png"
    _out_of_range(bad)
    code, _, err = run(capsys, *_finetune(data, out, "--epochs", "3", "--framing", framing))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"faceparse finetune: error: {bad}: class value 200 out of range; expected 0..10"
    )
    assert not out.exists()  # no step was trained, no run folder is left to look like a run


def test_an_unreadable_training_photo_stops_the_finetune_before_it_trains(
    tmp_path: Path, capsys
) -> None:
    """With --framing whole a truncated training photo was read only when a batch drew it:
    mid-epoch, after the steps before it were trained and lost."""
    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "runs" / "ft"
    bad = data / "train" / "images" / "train_002.png"
    bad.write_bytes(bad.read_bytes()[:200])
    code, _, err = run(capsys, *_finetune(data, out, "--epochs", "2", "--framing", "whole"))
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"faceparse finetune: error: {bad}: unreadable or truncated image")
    assert not out.exists()


def test_an_unreadable_validation_photo_is_still_skipped_as_evaluate_skips_it(
    tmp_path: Path, capsys, caplog
) -> None:
    """The check before training refuses bad labels, not the validation photos that evaluate
    skips with a warning: the run goes on and validates on the others."""
    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "runs" / "ft"
    bad = data / "val" / "images" / "val_000.png"
    bad.write_bytes(b"")
    code, _, err = run(capsys, *_finetune(data, out, "--max-steps", "2", "--framing", "whole"))
    assert code == 0, err
    assert f"skipping {bad}: the file is empty (0 bytes)" in caplog.text
    assert (out / "finetune_best.safetensors").is_file()


def _edited(path: Path, out: Path, **fields: object) -> Path:
    """A copy of a checkpoint with run fields of its JSON metadata replaced (a hand edit)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["faceparse"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(fields)
    save_file(tensors, str(out), metadata={"faceparse": json.dumps(meta)})
    return out


@pytest.fixture(scope="module")
def stage1_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-step tiny pretraining's checkpoint (resumable)."""
    from tests.trainer.cli_trial_helpers import user_photos
    from trainer.cli import main

    root = tmp_path_factory.mktemp("stage1")
    photos = user_photos(root / "photos")
    assert main(["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--max-steps", "2",
                 "--batch-size", "2", "--device", "cpu", "--no-progress-bar", "-q",
                 "--out-dir", str(root / "ssl")]) == 0  # fmt: skip
    return root / "ssl" / "pretrain_last.safetensors"


def test_evaluate_names_a_label_subset_of_the_wrong_type(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    """`faceparse evaluate` of a checkpoint whose label_subset was edited to a number died with
    "TypeError: 'int' object is not iterable"."""
    data = small_lapa(tmp_path / "lapa")
    bad = _edited(parser_ckpt, tmp_path / "edited.safetensors", label_subset=5)
    code, _, err = run(capsys, "evaluate", str(bad), "--data", str(data), "--split", "val",
                       "--framing", "whole", "--device", "cpu")  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"faceparse evaluate: error: {bad}: bad checkpoint metadata: label_subset 5 is not a "
        "list of face names; the file is damaged or was edited"
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [({"step": "x"}, "step 'x' is not a step count"),
     ({"step": -5}, "step -5 is not a step count"),
     ({"training": "x"}, "training 'x' is not a training config (a JSON object)")],
)  # fmt: skip
def test_resume_and_recon_grid_name_a_run_field_of_the_wrong_type(
    stage1_ckpt: Path, tmp_path: Path, capsys, fields: dict[str, object], problem: str
) -> None:
    """`pretrain --resume` of a checkpoint whose step was edited died with a ValueError from
    int() or from numpy's seeding; `recon-grid` of one whose training config was not an object
    with an AttributeError."""
    from tests.trainer.cli_trial_helpers import user_photos

    photos = user_photos(tmp_path / "photos")
    bad = _edited(stage1_ckpt, tmp_path / "edited.safetensors", **fields)
    line = f"{bad}: bad checkpoint metadata: {problem}; the file is damaged or was edited"
    code, _, err = run(capsys, "pretrain", "--image-dirs", str(photos), "--preset", "tiny",
                       "--resume", str(bad), "--max-steps", "3", "--device", "cpu",
                       "--out-dir", str(tmp_path / "ssl"))  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"faceparse pretrain: error: {line}"
    grid = tmp_path / "grid.png"
    code, _, err = run(capsys, "recon-grid", str(bad), str(photos), "--out", str(grid),
                       "--device", "cpu")  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"faceparse recon-grid: error: {line}"
    assert not grid.exists()


def test_two_photos_of_one_name_say_which_takes_the_label_map(
    parser_ckpt: Path, tmp_path: Path, capsys, caplog
) -> None:
    """face.jpg (truncated) and face.png in one folder: predict said of face.png "another image
    already wrote labels/face.png", though nothing had (face.jpg could not be read), and did not
    name the other photo."""
    from tests.conftest import synthetic_face
    from tests.trainer.cli_trial_helpers import predict_photos

    photos, out = tmp_path / "photos", tmp_path / "labels"
    photos.mkdir()
    Image.fromarray(synthetic_face(64, 0)[0]).save(photos / "face.png")
    Image.fromarray(synthetic_face(64, 1)[0]).save(photos / "face.jpg")
    (photos / "face.jpg").write_bytes((photos / "face.jpg").read_bytes()[:300])
    code, _, err = predict_photos(capsys, parser_ckpt, photos, out, "--framing", "whole")
    assert code == 2, err  # nothing could be written
    assert (
        f"skipping {photos / 'face.png'}: face.jpg has the same name and takes its label map "
        f"{out / 'face.png'}; rename one of them to parse both"
    ) in caplog.text
    assert "already wrote" not in caplog.text
    assert not (out / "face.png").exists()


def test_recon_grid_masks_as_the_run_it_shows_was_trained(tmp_path: Path, capsys) -> None:
    """recon-grid looked for the masking settings at the top of the stored training config,
    where they no longer are (they moved under "recipe"), so every grid masked 40% of the
    centre (and showed a SparK run's per-patch normalised output as pixels) whatever the run
    trained with: here --mask-ratio 0.9."""
    from tests.trainer.cli_trial_helpers import user_photos

    photos = user_photos(tmp_path / "photos")
    out, grid = tmp_path / "ssl", tmp_path / "grid.png"
    code, _, err = run(capsys, "pretrain", "--image-dirs", str(photos), "--preset", "tiny",
                       "--mask-ratio", "0.9", "--max-steps", "1", "--batch-size", "2",
                       "--device", "cpu", "--no-progress-bar", "--out-dir", str(out))  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "recon-grid", str(out / "pretrain_last.safetensors"), str(photos),
                       "--out", str(grid), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    canvas = np.asarray(Image.open(grid).convert("RGB")).astype(int)
    size, centre = 64, (64 * 2 // 3) ** 2  # the tiny preset's side; the central square
    mean = np.array([0.485, 0.456, 0.406]) * 255  # a masked pixel shows the mean colour
    gap = (canvas.shape[1] - 4 * size) // 3
    masked_input = canvas[:size, size + gap : 2 * size + gap]
    share = (np.abs(masked_input - mean).max(axis=-1) <= 1).sum() / centre
    assert share > 0.75  # 0.9 of the centre asked (patches overlap the edge); 0.4 before


def test_a_pretraining_stopped_by_a_full_disk_says_how_to_continue_it(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk filled as pretrain_last was written, just after pretrain_step2: the error said
    only "free some space", and the same command run again (space freed) was refused with
    "holds an earlier run's step checkpoints ... pass --overwrite to replace them", which would
    have thrown the run's steps away; --resume of its step file was never offered."""
    import errno
    import os

    import trainer.pretrain
    from tests.trainer.cli_trial_helpers import user_photos

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "ssl"
    argv = ["pretrain", "--image-dirs", str(photos), "--preset", "tiny", "--max-steps", "3",
            "--batch-size", "2", "--checkpoint-every", "1", "--keep-checkpoints", "0",
            "--device", "cpu", "--no-progress-bar", "--out-dir", str(out)]  # fmt: skip
    real = trainer.pretrain.atomic_write_bytes

    def fills_at_step_2(path: Path, data: bytes) -> None:
        if (
            path.name == "pretrain_last.safetensors"
            and (out / "pretrain_step2.safetensors").exists()
        ):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as the kernel: no file
        real(path, data)

    monkeypatch.setattr(trainer.pretrain, "atomic_write_bytes", fills_at_step_2)
    code, _, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err
    step2 = out / "pretrain_step2.safetensors"
    assert "No space left on device" in err
    assert f"stopped at step 2; continue with --resume {step2} once there is space" in err
    monkeypatch.setattr(trainer.pretrain, "atomic_write_bytes", real)  # space freed
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert f"continue it with --resume {step2}" in err.strip().splitlines()[-1]
    code, _, err = run(capsys, *argv, "--resume", str(step2))
    assert code == 0, err
    from trainer.checkpoint import read_metadata

    assert read_metadata(out / "pretrain_last.safetensors")["step"] == 3


def test_a_finetune_stopped_by_a_full_disk_says_which_checkpoint_it_kept(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk filled as finetune_last was written, after epoch 1's finetune_best: the error
    said only "free some space", though the best epoch was kept whole on disk."""
    import errno
    import os

    import trainer.checkpoint

    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "runs" / "ft"
    real = trainer.checkpoint.atomic_write_bytes

    def full_at_last(path: Path, data: bytes) -> None:
        if path.name == "finetune_last.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(trainer.checkpoint, "atomic_write_bytes", full_at_last)
    code, _, err = run(capsys, *_finetune(data, out, "--epochs", "1", "--framing", "whole"))
    assert code == 2 and "Traceback" not in err
    best = out / "finetune_best.safetensors"
    lines = err.strip().splitlines()
    assert "No space left on device" in lines[-2]
    assert lines[-1].startswith(
        f"faceparse finetune: stopped by the full disk; kept {best} (epoch 1, mean F1 "
    )
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "finetune_best.safetensors", "finetune_log.jsonl", "finetune_val.jsonl"
    ]  # fmt: skip


def test_a_pipe_named_like_a_photo_is_skipped_not_waited_on_forever(
    parser_ckpt: Path, tmp_path: Path
) -> None:
    """A named pipe (mkfifo fifo.png) in the photo folder: predict opened it and waited for a
    writer forever; SIGTERM could not stop it either (the reader thread stayed blocked)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.trainer.cli_trial_helpers import user_photos

    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    photos, out = user_photos(tmp_path / "photos"), tmp_path / "labels"
    os.mkfifo(photos / "fifo.png")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "trainer", "predict", str(parser_ckpt), str(photos), str(out),
            "--device", "cpu", "--runtime", "torch", "--framing", "whole"]  # fmt: skip
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("predict still waiting on the pipe after 120 s")
    assert done.returncode == 0, done.stderr
    assert f"skipping {photos / 'fifo.png'}: not a regular file" in done.stderr
    assert sorted(p.name for p in out.rglob("*.png")) == ["anna.png", "ben.png", "carl.png"]


def test_encoder_weights_that_fit_only_in_part_are_said_to(
    parser_ckpt: Path, tmp_path: Path, capsys, caplog
) -> None:
    """An --encoder-weights file lacking a third of the encoder's tensors (another variant of
    the network, a converter that dropped some) loaded the rest without a word: the run
    trained from a partly random encoder while the user believed it pretrained."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(parser_ckpt), framework="pt") as f:
        encoder = {k: f.get_tensor(k) for k in f.keys() if k.startswith("encoder.")}
    weights = sorted(k for k in encoder if k.endswith(".weight"))
    dropped = weights[: len(encoder) // 3]
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in encoder.items() if k not in dropped}, str(partial))
    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "ft"
    code, _, err = run(capsys, *_finetune(data, out, "--max-steps", "1", "--framing", "whole",
                                          "--encoder-weights", str(partial)))  # fmt: skip
    assert code == 0, err
    first = dropped[0].removeprefix("encoder.")
    assert (
        f"{partial}: {len(dropped)} of the {len(encoder)} tensors of encoder 'mobilenet_v2' are "
        f"missing or of another shape (e.g. {first}); they keep their random start"
    ) in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "emptied"])
def test_a_damaged_faces_json_is_named_as_damaged_not_as_a_users_file(
    parser_ckpt: Path, tmp_path: Path, capsys, damage: str
) -> None:
    """predict's own faces.json cut short (a copy that stopped, a disk error) or emptied: the
    next predict into the folder said "faces.json: exists and was not written by faceparse
    predict", which it was; the user could not tell what was wrong or what to do."""
    from tests.trainer.cli_trial_helpers import digests, predict_photos, user_photos

    photos, out = user_photos(tmp_path / "photos"), tmp_path / "labels"
    code, _, err = predict_photos(capsys, parser_ckpt, photos, out, "--framing", "whole")
    assert code == 0, err
    record = out / "faces.json"
    record.write_bytes(record.read_bytes()[:100] if damage == "truncated" else b"")
    before = digests(out)
    code, _, err = predict_photos(capsys, parser_ckpt, photos, out, "--framing", "whole")
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"faceparse predict: error: {record}: damaged, so the label maps ")
    assert "not written by faceparse predict" not in last
    assert last.endswith(
        "nothing was written: predict into a new folder, or delete the folder's label maps "
        "and faces.json if they are all predict's"
    )
    assert digests(out) == before


def test_a_folder_of_a_killed_finetune_says_the_run_did_not_finish(
    tmp_path: Path, capsys
) -> None:
    """kill -9 of a fine-tune after its first validation leaves finetune_best.safetensors (whole:
    written atomically) and no finetune_last; the next run into the folder said only that it
    "holds a fine-tune's checkpoints (finetune_best.safetensors)", as if the run had finished."""
    data, out = small_lapa(tmp_path / "lapa"), tmp_path / "ft"
    argv = _finetune(data, out, "--max-steps", "2", "--framing", "whole")
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    (out / "finetune_last.safetensors").unlink()  # what the kill left: no last checkpoint
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"faceparse finetune: error: {out} holds a fine-tune's checkpoints "
        "(finetune_best.safetensors, from step 2 of a run that did not finish: no "
        "finetune_last.safetensors), which a new run would replace; choose another --out-dir, "
        "or pass --overwrite to replace it"
    )
