"""Confusion-matrix metrics against a hand-computed example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.labels import LAPA
from trainer.metrics import ConfusionMatrix

# Rows of the confusion matrix are the target, columns the prediction. Class 3 appears in neither.
TARGET = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
PRED = np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
# By hand: TP = (1, 2, 1), FP = (1, 1, 0), FN = (1, 0, 1)
F1 = [2 / 4, 4 / 5, 2 / 3]  # 2TP / (2TP + FP + FN)
IOU = [1 / 3, 2 / 3, 1 / 2]  # TP / (TP + FP + FN)


def test_hand_computed_f1_iou_and_means() -> None:
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    assert cm.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(cm.f1()[:3], F1)
    np.testing.assert_allclose(cm.iou()[:3], IOU)
    # Class 3 is absent from both: NaN, and left out of the means.
    assert math.isnan(cm.f1()[3]) and math.isnan(cm.iou()[3])
    # Mean F1 excludes background (class 0); mIoU includes it.
    assert cm.mean_f1() == pytest.approx((F1[1] + F1[2]) / 2)
    assert cm.miou() == pytest.approx(sum(IOU) / 3)


def test_batches_and_ignored_pixels_sum_into_one_matrix() -> None:
    cm = ConfusionMatrix(4)
    target = TARGET.copy()
    target[0, 0] = 255  # unlabeled: counted nowhere
    cm.update(np.stack([PRED, PRED]), np.stack([target, TARGET]))
    assert cm.total == 11
    assert cm.matrix[0, 0] == 1  # only the second image's top-left pixel


def test_class_missed_everywhere_scores_zero_not_nan() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), np.uint8), np.array([[0, 0], [0, 2]], np.uint8))
    assert cm.f1()[2] == 0.0 and math.isnan(cm.f1()[1])
    assert cm.mean_f1() == 0.0


def test_shape_mismatch_and_bad_prediction_are_refused() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="resolution"):
        cm.update(np.zeros((2, 2), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="class 7"):
        cm.update(np.full((2, 2), 7, np.uint8), np.zeros((2, 2), np.uint8))


def test_to_dict_names_classes_and_is_json_ready() -> None:
    import json

    cm = ConfusionMatrix(LAPA.num_classes)
    label = np.zeros((4, 4), np.uint8)
    label[1:3, 1:3] = 1
    cm.update(label, label)
    d = cm.to_dict(LAPA.classes)
    assert d["per_class"]["skin"]["f1"] == 1.0
    assert d["per_class"]["hair"]["f1"] is None  # absent: null in JSON, not NaN
    assert d["mean_f1"] == 1.0 and d["miou"] == 1.0
    json.loads(json.dumps(d, allow_nan=False))
