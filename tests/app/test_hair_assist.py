"""The assisted tools see the crops the pre-label was pasted from, hair zoomed out included: a
click to relabel on hair past the zoomed-out crop has the model's next class to offer."""

from __future__ import annotations

import numpy as np
import torch

from faceparse_app.assist import ClassProbabilities
from trainer.faces import Face
from trainer.models import build_model, get_preset
from trainer.predict import Predictor

HAIR = 10


def test_class_probabilities_cover_the_hair_the_pre_label_adds_past_the_crops() -> None:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",))
    side = int(model.config.input_size)

    def logits(batch):  # hair in the top half of every crop (sure), background below
        out = torch.zeros(len(batch), 11, side, side)
        out[:, HAIR, : side // 2] = 6.0
        out[:, 0, side // 2 :] = 6.0
        out[:, 1] = 3.0  # skin, the runner-up everywhere
        return out

    face = Face(box=(170.0, 170.0, 230.0, 230.0), box_framing=(0.5, 0.5, 1.0))
    predictor = Predictor(model, device="cpu", framing="detect", finder=lambda img: [face])
    predictor.logits = logits
    image = np.full((400, 400, 3), 128, np.uint8)
    label = predictor(image).label
    probs = ClassProbabilities.from_predictor(predictor, image, [face])
    ys, xs = np.array([140, 140, 100]), np.array([200, 130, 200])  # past the 1.5x crop (155..245)
    assert (label[ys[:2], xs[:2]] == HAIR).all() and label[100, 200] == 0
    assert probs.covers(ys, xs).tolist() == [True, True, False]
    here = probs.at(ys[:2], xs[:2])
    assert (here.argmax(axis=0) == HAIR).all() and (np.argsort(here, axis=0)[-2] == 1).all()


def test_relabel_on_hair_the_widest_parse_added_takes_only_that_hair() -> None:
    # Under Xvfb: R, then a click on long hair the 2.5x parse had added below the 1.5x crop,
    # turned all of the woman's hair to background (a sure island is relabeled whole, and the
    # added hair joins the rest by construction). A false extension (a railing taken for hair)
    # must come off alone.
    from faceparse_app.assist import Relabeler
    from faceparse_app.document import LabelDocument

    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), heads=("parsing",))
    side = int(model.config.input_size)

    def logits(batch):  # sure hair in the top half of every crop, background below
        out = torch.zeros(len(batch), 11, side, side)
        out[:, HAIR, : side // 2] = 9.0
        out[:, 0, side // 2 :] = 9.0
        return out

    face = Face(box=(170.0, 170.0, 230.0, 230.0), box_framing=(0.5, 0.5, 1.0))
    predictor = Predictor(model, device="cpu", framing="detect", finder=lambda img: [face])
    predictor.logits = logits
    image = np.full((400, 400, 3), 128, np.uint8)
    doc = LabelDocument(predictor(image).label.copy())
    probs = ClassProbabilities.from_predictor(predictor, image, [face])
    assert doc.label[140, 200] == HAIR and doc.label[180, 200] == HAIR  # added / the face's own
    assert Relabeler().click(doc, probs, 200, 140) is not None
    assert doc.label[140, 200] != HAIR  # the added hair took the next class
    assert (doc.label[160:200, 160:240] == HAIR).all()  # the 1.5x crop's hair is untouched
