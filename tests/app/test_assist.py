"""The assisted tools' Qt-free core (faceparse_app.assist): relabel blobs, class probabilities
from a parser, edge-snapping paths."""

from __future__ import annotations

import numpy as np
import torch

from faceparse_app.assist import ClassProbabilities, CropProbabilities, EdgeSnapper, Relabeler
from faceparse_app.document import LabelDocument

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _lip_face() -> tuple[LabelDocument, ClassProbabilities, np.ndarray]:
    """Skin with a lip (class 7, rows 30..39); the model hesitated over rows 30..31 (lip 0.6,
    skin 0.35: the pre-label's lip is two rows too tall there) and is sure of the rest."""
    label = np.ones((64, 64), np.uint8)
    label[30:40, 10:50] = 7
    probs = np.zeros((11, 64, 64), np.float32)
    probs[1] = 0.98
    probs[0] = 0.02
    probs[:, 30:40, 10:50] = 0.0
    probs[7, 30:40, 10:50], probs[9, 30:40, 10:50], probs[1, 30:40, 10:50] = 0.95, 0.04, 0.01
    probs[7, 30:32, 10:50], probs[1, 30:32, 10:50], probs[9, 30:32, 10:50] = 0.6, 0.35, 0.05
    band = np.zeros((64, 64), bool)
    band[30:32, 10:50] = True
    return LabelDocument(label), ClassProbabilities(11, [CropProbabilities(probs, IDENTITY)]), band


def test_a_click_on_a_hesitant_band_relabels_the_band_not_the_part():
    doc, probs, band = _lip_face()
    lip = doc.label == 7
    tool = Relabeler()
    assert tool.click(doc, probs, 20, 30) is not None
    assert (doc.label[band] == 1).all()  # the model's second guess there: skin
    assert (doc.label[lip & ~band] == 7).all()  # the lip it was sure of stays
    assert tool.click(doc, probs, 20, 30) is not None
    assert (doc.label[band] == 9).all()  # click again: its third guess, lower lip
    assert len(doc.history) == 2
    doc.undo()
    assert (doc.label[band] == 1).all()


def test_a_sure_island_is_relabeled_whole_and_protected_classes_never():
    doc, probs, band = _lip_face()
    tool = Relabeler()
    tool.click(doc, probs, 20, 36)  # in the lip the model was sure of: the whole lip changes,
    assert (doc.label[30:40, 10:50] == 1).all()  # to its most probable other class over the lip
    doc.undo()
    doc.protected = {7}
    assert Relabeler().click(doc, probs, 20, 30) is None
    assert (doc.label[30:40, 10:50] == 7).all()


class _Parser:
    """A parser stand-in: whole framing, 32-px input, logits that say class 3 everywhere."""

    framing, input_size, num_classes = "whole", 32, 11

    def logits(self, crops):
        out = torch.zeros((len(crops), 11, 32, 32))
        out[:, 3] = 4.0
        return out


def test_probabilities_come_from_the_parsers_logits_over_the_image():
    image = np.zeros((64, 64, 3), np.uint8)
    probs = ClassProbabilities.from_predictor(_Parser(), image)
    mean = probs.mean_over(np.array([0, 10, 63]), np.array([0, 40, 63]))
    assert mean.argmax() == 3 and np.isclose(mean.sum(), 1.0, atol=1e-5)
    assert np.isclose(mean[3], np.exp(4) / (np.exp(4) + 10), atol=1e-4)


def test_the_edge_path_follows_a_step_edge():
    image = np.full((48, 48, 3), 30, np.uint8)
    image[:, 24:] = 220  # a vertical edge between columns 23 and 24
    snapper = EdgeSnapper(image)
    snapper.set_anchor(23, 5)
    path = snapper.path_to(23, 42)
    assert path[0] == (23, 5) and path[-1] == (23, 42)
    assert all(22 <= x <= 24 for x, _ in path)
