"""Predictor: image array in, label map and confidence out, at the image's own size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_face
from trainer.checkpoint import save_checkpoint
from trainer.errors import CheckpointError
from trainer.models import build_model, get_preset
from trainer.predict import Predictor, predict_folder


@pytest.fixture(scope="module")
def parser_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",))
    path = tmp_path_factory.mktemp("ckpt") / "parser.safetensors"
    return save_checkpoint(path, model, stage="finetune", meta={"metrics": {"mean_f1": 0.5}})


@pytest.fixture(scope="module")
def predictor(parser_ckpt: Path) -> Predictor:
    return Predictor.from_checkpoint(parser_ckpt, device="cpu")


def test_label_matches_a_non_square_image(predictor: Predictor) -> None:
    image = np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    pred = predictor(image, return_probs=True)
    assert pred.label.shape == (50, 90) and pred.label.dtype == np.uint8
    assert pred.label.max() < 11
    assert pred.confidence.shape == (50, 90) and pred.confidence.dtype == np.float32
    assert 0.0 <= pred.confidence.min() and pred.confidence.max() <= 1.0
    assert pred.probs is not None and pred.probs.shape == (11, 50, 90)
    np.testing.assert_array_equal(pred.label, pred.probs.argmax(0))
    np.testing.assert_allclose(pred.confidence, pred.probs.max(0), rtol=1e-6)


def test_batch_keeps_each_image_size_and_equals_single_calls(predictor: Predictor) -> None:
    a, _ = synthetic_face(64, 1)
    b, _ = synthetic_face(128, 2)
    batch = predictor.predict_batch([a, b])
    assert [p.label.shape for p in batch] == [(64, 64), (128, 128)]
    np.testing.assert_array_equal(batch[1].label, predictor(b).label)


def test_model_info_and_uncertainty(predictor: Predictor, face) -> None:
    info = predictor.model_info
    assert info["preset"] == "tiny" and info["stage"] == "finetune"
    assert info["classes"][10] == "hair" and info["version"]
    assert info["input_size"] == 64 and info["metrics"] == {"mean_f1": 0.5}
    u = predictor.uncertainty(face[0])
    assert u.shape == (64, 64) and 0.0 <= u.min() and u.max() <= 1.0


def test_rejects_a_non_rgb_array(predictor: Predictor) -> None:
    from trainer.errors import ImageReadError

    with pytest.raises(ImageReadError, match="uint8 RGB"):
        predictor(np.zeros((8, 8), np.uint8))


def test_corrupted_and_stage1_checkpoints_are_refused(parser_ckpt: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    data = parser_ckpt.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        Predictor.from_checkpoint(broken, device="cpu")
    stage1 = save_checkpoint(
        tmp_path / "pre.safetensors",
        build_model(get_preset("tiny"), heads=("reconstruction",)),
        stage="pretrain",
    )
    with pytest.raises(CheckpointError, match="fine-tune"):
        Predictor.from_checkpoint(stage1, device="cpu")


def test_predict_folder_writes_L_pngs_and_overlays(predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(synthetic_face(64, 0)[0]).save(src / "a.jpg")
    Image.fromarray(np.zeros((40, 70, 3), np.uint8)).save(src / "sub" / "b.png")
    (src / "notes.txt").write_text("not an image")
    n = predict_folder(predictor, src, tmp_path / "out", overlay_dir=tmp_path / "ov")
    assert n == 2
    for rel, size in (("a.png", (64, 64)), ("sub/b.png", (70, 40))):
        with Image.open(tmp_path / "out" / rel) as im:
            assert im.mode == "L" and im.size == size
            assert np.asarray(im).max() < 11
        with Image.open(tmp_path / "ov" / rel.replace(".png", ".jpg")) as im:
            assert im.mode == "RGB" and im.size == size


def test_overlay_tints_classes_and_leaves_background_as_photo(face) -> None:
    from trainer.labels import LAPA
    from trainer.predict import overlay

    image, label = face
    mixed = overlay(image, label)
    np.testing.assert_array_equal(mixed[label == 0], image[label == 0])
    skin = label == 1
    expected = (image[skin].astype(int) + np.array(LAPA.palette[1])) / 2
    assert np.abs(mixed[skin].astype(int) - expected).max() <= 1


def test_banded_label_and_confidence_equal_the_full_probability_map(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trainer.predict._BAND_PIXELS", 700)  # many bands of a few rows
    image = np.random.default_rng(1).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    banded = predictor(image)
    full = predictor(image, return_probs=True)
    assert banded.probs is None
    assert (banded.label != full.label).mean() < 1e-3  # only exact ties may differ
    np.testing.assert_allclose(banded.confidence, full.confidence, atol=1e-5)
