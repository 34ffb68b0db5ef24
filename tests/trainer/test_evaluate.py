"""evaluate(): one confusion matrix over the set, at each label's own resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_face, write_synthetic_lapa
from trainer.checkpoint import save_checkpoint
from trainer.data.lapa import LapaDataset
from trainer.evaluate import evaluate, format_table
from trainer.labels import LAPA
from trainer.metrics import ConfusionMatrix
from trainer.models import build_model, get_preset
from trainer.predict import Prediction, Predictor


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",))
    path = tmp_path_factory.mktemp("ckpt") / "parser.safetensors"
    save_checkpoint(path, model, stage="finetune")
    return Predictor.from_checkpoint(path, device="cpu")


def test_labels_larger_than_the_input_are_scored_at_full_size(
    predictor: Predictor, tmp_path: Path
) -> None:
    root = write_synthetic_lapa(tmp_path / "lapa", {"test": 3}, size=128)
    dataset = LapaDataset(root, split="test")
    results = evaluate(predictor, dataset, batch_size=2)
    assert predictor.input_size == 64
    assert results["pixels"] == 3 * 128 * 128 and results["num_images"] == 3
    # The same numbers as predicting each face at 128 px and summing one matrix by hand.
    cm = ConfusionMatrix(11)
    for i in range(len(dataset)):
        sample = dataset[i]
        cm.update(predictor(sample.image).label, sample.label)
    assert results["confusion_matrix"] == cm.matrix.tolist()
    assert results["mean_f1"] == pytest.approx(cm.mean_f1())
    assert results["miou"] == pytest.approx(cm.miou())


def test_label_stored_at_another_resolution_than_its_image(predictor: Predictor) -> None:
    image, _ = synthetic_face(64, 3)
    _, label = synthetic_face(96, 3)
    results = evaluate(predictor, [(image, label)])
    assert results["pixels"] == 96 * 96


class _Oracle(Predictor):
    """Answers with the true labels (looked up by image bytes), to pin the scores' meaning."""

    def __init__(self, base: Predictor, truth: dict[bytes, np.ndarray], drop_class: int) -> None:
        self.__dict__.update(base.__dict__)
        self.truth, self.drop_class = truth, drop_class

    def predict_batch(self, images, output_sizes=None, faces=None):  # type: ignore[override]
        out = []
        for image in images:
            label = self.truth[image.tobytes()].copy()
            label[label == self.drop_class] = 0
            out.append(Prediction(label=label, confidence=np.ones(label.shape, np.float32)))
        return out


def test_scores_mean_what_they_say(predictor: Predictor) -> None:
    faces = [synthetic_face(64, s) for s in range(2)]
    truth = {image.tobytes(): label for image, label in faces}
    # Perfect except that hair is never predicted: hair F1 = 0 pulls mean F1 to 9/10.
    results = evaluate(_Oracle(predictor, truth, drop_class=10), faces)
    assert results["per_class"]["hair"]["f1"] == 0.0
    assert results["per_class"]["skin"]["f1"] == 1.0
    assert results["mean_f1"] == pytest.approx(0.9)
    background_iou = results["per_class"]["background"]["iou"]
    assert 0 < background_iou < 1
    assert results["miou"] == pytest.approx((9 + background_iou) / 11)


def test_results_are_json_and_the_table_lists_every_class(predictor: Predictor) -> None:
    results = evaluate(predictor, [synthetic_face(64, 5)])
    text = json.dumps(results, allow_nan=False)
    assert json.loads(text)["model"]["preset"] == "tiny"
    table = format_table(results)
    for name in LAPA.classes:
        assert name in table
    assert "mean F1 (fg)" in table and "mIoU (all)" in table
