"""The faceparse command line: each subcommand's happy path, and bad input exits 2 in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT, synthetic_face, write_synthetic_lapa
from tests.trainer.test_imageio import write_huge_png
from trainer.checkpoint import read_metadata, save_checkpoint
from trainer.cli import main
from trainer.configs import stored_config
from trainer.models import build_model, get_preset


@pytest.fixture(scope="module")
def lapa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_lapa(
        tmp_path_factory.mktemp("data") / "lapa", {"train": 6, "val": 2, "test": 2}
    )


@pytest.fixture(scope="module")
def parser_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "parser.safetensors"
    return save_checkpoint(path, build_model(get_preset("tiny")), stage="finetune")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_module_entry_point_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "--help"], capture_output=True, text=True, cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("pretrain", "recon-grid", "finetune", "recipes", "evaluate", "predict", "convert", "info"):
        assert command in proc.stdout


def test_pretrain_info_and_recon_grid(lapa: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run(
        capsys, "pretrain", "--image-dirs", str(lapa / "train" / "images"), "--out-dir",
        str(tmp_path / "pre"), "--preset", "tiny", "--batch-size", "2", "--max-steps", "1",
        "--device", "cpu",
    )
    assert code == 0, err
    ckpt = tmp_path / "pre" / "pretrain_last.safetensors"
    assert str(ckpt) in out
    code, out, err = run(capsys, "info", str(ckpt))
    assert code == 0, err
    meta = json.loads(out)
    assert meta["stage"] == "pretrain" and meta["model"]["preset"] == "tiny"
    # --resume continues the run: two steps in all, not one more from scratch.
    code, out, err = run(
        capsys, "pretrain", "--image-dirs", str(lapa / "train" / "images"), "--out-dir",
        str(tmp_path / "pre"), "--preset", "tiny", "--batch-size", "2", "--max-steps", "2",
        "--device", "cpu", "--resume", str(ckpt), "--augment", "affine",
    )
    assert code == 0, err
    assert read_metadata(ckpt)["step"] == 2
    assert stored_config(read_metadata(ckpt)).recipe.augment == "affine"
    grid = tmp_path / "grid.png"
    code, out, err = run(
        capsys, "recon-grid", str(ckpt), str(lapa / "train" / "images"), "--out", str(grid),
        "--num-images", "2", "--device", "cpu",
    )
    assert code == 0, err
    with Image.open(grid) as im:
        assert im.mode == "RGB" and im.size[0] > 64


def test_ctrl_c_during_pretrain_says_how_to_resume(lapa: Path, tmp_path: Path, capsys, monkeypatch):
    import trainer.pretrain

    real = trainer.pretrain.pretrain

    def interrupted_at_step_2(config, **kwargs):
        def ctrl_c(stats: dict) -> None:
            if stats["step"] == 2:
                raise KeyboardInterrupt

        return real(config, on_progress=ctrl_c, **kwargs)

    monkeypatch.setattr(trainer.pretrain, "pretrain", interrupted_at_step_2)
    code, out, err = run(
        capsys, "pretrain", "--image-dirs", str(lapa / "train" / "images"), "--out-dir",
        str(tmp_path / "pre"), "--preset", "tiny", "--batch-size", "2", "--device", "cpu",
    )
    last = tmp_path / "pre" / "pretrain_last.safetensors"
    assert code == 130 and "Traceback" not in err
    assert f"interrupted at step 2; continue with --resume {last}" in err
    assert read_metadata(last)["step"] == 2


def test_finetune_with_a_label_fraction(lapa: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run(
        capsys, "finetune", "--data", str(lapa), "--out-dir", str(tmp_path), "--preset", "tiny",
        "--fraction", "0.5", "--max-steps", "2", "--batch-size", "2", "--device", "cpu",
        "--no-progress-bar", "--class-weighting", "median-frequency",
    )
    assert code == 0, err
    assert "finetune_best.safetensors" in out and "mean F1 (fg)" in out
    meta = read_metadata(tmp_path / "finetune_best.safetensors")
    assert len(meta["label_subset"]) == 3 and meta["fraction"] == 0.5
    assert stored_config(meta).recipe.class_weighting == "median-frequency"
    assert len(meta["class_weights"]) == 11
    code, _, err = run(capsys, "finetune", "--data", str(lapa), "--class-weighting", "inverse")
    assert code != 0 and "median-frequency" in err  # the choices are listed


def test_evaluate_prints_a_table_and_writes_json(lapa: Path, parser_ckpt: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "m.json"
    code, out, err = run(
        capsys, "evaluate", str(parser_ckpt), "--data", str(lapa), "--split", "test", "--json",
        str(target), "--device", "cpu",
    )
    assert code == 0, err
    assert "mean F1 (fg)" in out and "hair" in out
    results = json.loads(target.read_text())
    assert results["num_images"] == 2 and results["pixels"] == 2 * 64 * 64
    assert set(results["per_class"]) >= {"background", "skin", "hair"}


def test_predict_writes_labels_and_overlays(lapa: Path, parser_ckpt: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run(
        capsys, "predict", str(parser_ckpt), str(lapa / "test" / "images"), str(tmp_path / "labels"),
        "--overlays", str(tmp_path / "ov"), "--device", "cpu",
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [
        ".predict.lock",  # one predict writes a folder at a time
        "faces.json",  # the framing, and per image the faces parsed and the model's score
        "test_000.png",
        "test_001.png",
    ]
    with Image.open(tmp_path / "labels" / "test_000.png") as im:
        assert im.mode == "L" and im.size == (64, 64)
    assert (tmp_path / "ov" / "test_001.jpg").is_file()


def test_an_image_over_the_pixel_limit_is_skipped_with_one_line(
    parser_ckpt: Path, tmp_path: Path, capsys, caplog
) -> None:
    root = write_synthetic_lapa(tmp_path / "lapa", {"test": 2})
    (root / "test" / "images" / "test_001.png").unlink()
    write_huge_png(root / "test" / "images" / "test_001.png")
    code, out, err = run(
        capsys, "predict", str(parser_ckpt), str(root / "test" / "images"), str(tmp_path / "o"),
        "--device", "cpu",
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["test_000.png"]
    assert "wrote 1 label map" in out and "Traceback" not in err
    assert "test_001.png: 20000×20000 (400,000,000 pixels)" in caplog.text
    caplog.clear()
    target = tmp_path / "m.json"
    code, out, err = run(
        capsys, "evaluate", str(parser_ckpt), "--data", str(root), "--json", str(target),
        "--device", "cpu",
    )
    assert code == 0, err
    assert "Traceback" not in err and "test_001.png: 20000×20000 (400,000,000 pixels)" in caplog.text
    results = json.loads(target.read_text())
    assert results["num_images"] == 1 and results["skipped_images"] == ["test_001"]
    assert "1 image skipped" in out


def test_convert_celebamask_to_lapa(tmp_path: Path, capsys) -> None:
    src = tmp_path / "celeba"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i in range(3):
        image, _ = synthetic_face(64, i)
        mask = np.zeros((64, 64), np.uint8)
        mask[10:20, 40:50] = 4  # person's left eye, on the image's right
        mask[30:40, 0:5] = 8  # an ear
        Image.fromarray(image).save(src / "images" / f"{i}.jpg")
        pal = Image.fromarray(mask, "P")
        pal.putpalette([v for c in range(256) for v in (c, c, c)])
        pal.save(src / "masks" / f"{i}.png")
    code, out, err = run(capsys, "convert", str(src), str(tmp_path / "lapa"), "--val-fraction", "0.34")
    assert code == 0, err
    labels = sorted((tmp_path / "lapa").glob("*/labels/*.png"))
    assert len(labels) == 3 and len(list((tmp_path / "lapa" / "val" / "labels").glob("*.png"))) == 1
    label = np.asarray(Image.open(labels[0]))
    assert label[15, 45] == 5 and label[35, 2] == 1  # LaPa right eye (viewer's), ear -> skin


def test_export_says_where_it_moved(tmp_path: Path, capsys) -> None:
    # Exporting a desktop project is the app's command: the trainer never imports the app.
    code, out, err = run(capsys, "export", str(tmp_path), str(tmp_path / "out"), "--seed", "1")
    assert code == 2 and "faceparse-studio export PROJECT OUT" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: exit code 2, one line naming the file, no traceback


def _assert_clean_failure(code: int, err: str, *names: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    for name in names:
        assert name in err, err


def test_missing_folders(parser_ckpt: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere"
    code, _, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(missing), "--device", "cpu")
    _assert_clean_failure(code, err, "nowhere")
    code, _, err = run(capsys, "predict", str(parser_ckpt), str(missing), str(tmp_path / "o"), "--device", "cpu")
    _assert_clean_failure(code, err, "nowhere")
    code, _, err = run(
        capsys, "pretrain", "--image-dirs", str(missing), "--out-dir", str(tmp_path / "p"),
        "--preset", "tiny", "--device", "cpu",
    )
    _assert_clean_failure(code, err, "nowhere")


def test_corrupted_checkpoint(lapa: Path, parser_ckpt: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(parser_ckpt.read_bytes()[:1000])
    for argv in (
        ("info", str(broken)),
        ("evaluate", str(broken), "--data", str(lapa), "--device", "cpu"),
        ("predict", str(broken), str(lapa / "test" / "images"), str(tmp_path / "o"), "--device", "cpu"),
        ("finetune", "--data", str(lapa), "--out-dir", str(tmp_path / "f"), "--init", f"ssl:{broken}",
         "--device", "cpu", "--max-steps", "1"),
    ):
        code, _, err = run(capsys, *argv)
        _assert_clean_failure(code, err, "broken.safetensors")


def test_label_of_the_wrong_size(lapa: Path, parser_ckpt: Path, tmp_path: Path, capsys) -> None:
    root = write_synthetic_lapa(tmp_path / "bad", {"test": 2})
    Image.fromarray(np.zeros((32, 32), np.uint8), "L").save(root / "test" / "labels" / "test_001.png")
    code, _, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(root), "--device", "cpu")
    _assert_clean_failure(code, err, "test_001.png", "32×32")


def test_bad_flag_values(lapa: Path, parser_ckpt: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(
        capsys, "finetune", "--data", str(lapa), "--out-dir", str(tmp_path), "--fraction", "1.5",
        "--device", "cpu",
    )
    _assert_clean_failure(code, err, "fraction")
    code, _, err = run(
        capsys, "finetune", "--data", str(lapa), "--out-dir", str(tmp_path), "--init", "imagenet:x.pth"
    )
    _assert_clean_failure(code, err, "--init")
    if not torch.cuda.is_available():
        code, _, err = run(
            capsys, "predict", str(parser_ckpt), str(lapa), str(tmp_path), "--device", "cuda"
        )
        _assert_clean_failure(code, err, "CUDA")
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err


def test_convert_with_a_bad_pair_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    src = tmp_path / "celeba"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i in range(2):
        Image.fromarray(synthetic_face(64, i)[0]).save(src / "images" / f"{i}.jpg")
        Image.fromarray(np.zeros((64, 64), np.uint8), "L").save(src / "masks" / f"{i}.png")
    (src / "images" / "1.jpg").write_bytes(b"not a jpeg")
    code, out, err = run(capsys, "convert", str(src), str(tmp_path / "lapa"))
    _assert_clean_failure(code, err, "1 of 2 pairs skipped", "1.jpg", "convert_skipped.txt")


def test_predict_that_writes_nothing_fails(parser_ckpt: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    write_huge_png(bad / "b.png")
    code, out, err = run(capsys, "predict", str(parser_ckpt), str(bad), str(tmp_path / "o"), "--device", "cpu")
    _assert_clean_failure(code, err, "none of the 2 images could be read")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, "predict", str(parser_ckpt), str(empty), str(tmp_path / "o"), "--device", "cpu")
    _assert_clean_failure(code, err, "empty: no images found")


def test_a_missing_label_says_what_to_do_at_the_command_line(
    parser_ckpt: Path, tmp_path: Path, capsys
) -> None:
    root = write_synthetic_lapa(tmp_path / "lapa", {"test": 2})
    (root / "test" / "labels" / "test_001.png").unlink()
    code, _, err = run(capsys, "evaluate", str(parser_ckpt), "--data", str(root), "--device", "cpu")
    _assert_clean_failure(code, err, "test_001.png: no label", "label it or move it out")
    assert "require_labels" not in err  # a Python argument means nothing at the command line
    src = tmp_path / "celeba"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    Image.fromarray(synthetic_face(64, 0)[0]).save(src / "images" / "0.jpg")
    code, _, err = run(capsys, "convert", str(src), str(tmp_path / "out"))
    _assert_clean_failure(code, err, "0.jpg: no label", "label it or move it out")
    assert "require_labels" not in err
