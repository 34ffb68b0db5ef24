"""Training on labeled photos that are not aligned crops: one crop per labeled face, framed as
the predictor frames faces (issue 29 §4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.trainer.test_predict import _photo_with_faces
from trainer.configs import stored_config
from trainer.data.face_crops import FaceCropSamples
from trainer.data.sample import Sample
from trainer.faces import TEMPLATE
from trainer.finetune import FinetuneConfig, finetune_on_samples


def _samples() -> list[Sample]:
    two, two_label, _ = _photo_with_faces([(90, 0.0, (120, 150)), (70, 30.0, (360, 220))])
    one, one_label, _ = _photo_with_faces([(140, -20.0, (250, 170))])
    empty = np.zeros_like(one_label)
    return [
        Sample(two, two_label, "two", Path("two.png"), Path("two-label.png")),
        Sample(one, one_label, "one", Path("one.png"), Path("one-label.png")),
        Sample(one, empty, "nobody", Path("nobody.png"), Path("nobody-label.png")),
    ]


def test_each_labeled_face_is_one_upright_crop_and_faceless_photos_are_left_out() -> None:
    crops = FaceCropSamples(_samples(), 64)
    assert crops.names == ["two", "two#1", "one"]
    assert crops.skipped == ["nobody"]
    for i in range(len(crops)):
        crop = crops[i]
        assert crop.image.shape == (64, 64, 3) and crop.label.shape == (64, 64)
        ys4, xs4 = np.nonzero(crop.label == 4)
        ys5, xs5 = np.nonzero(crop.label == 5)
        assert abs(ys4.mean() - ys5.mean()) < 2.0  # upright, whatever the face's roll
        assert abs((xs4.mean() + 0.5) / 64 - TEMPLATE["left_eye"][0]) < 0.05


def test_finetune_with_detect_framing_trains_on_the_crops(tmp_path: Path) -> None:
    samples = _samples()
    config = FinetuneConfig.from_flat(dict(
        out_dir=str(tmp_path / "run"), preset="tiny", max_steps=3, batch_size=2,
        device="cpu", val_split=None, progress_bar=False, framing="detect",
    ))  # fmt: skip
    result = finetune_on_samples(config, samples, samples[:2])
    from trainer.checkpoint import read_metadata

    meta = read_metadata(result.best_path)
    assert stored_config(meta).data.framing == "detect"
    assert meta["face_crops"] == 3 and meta["photos_without_a_face"] == ["nobody"]
    assert result.metrics["num_images"] == 2
