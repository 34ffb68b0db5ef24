"""The app's faces (Qt-free): how they are kept, drawn boxes, and the pixels a face change
may touch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceparse_app.faces import (
    coverage,
    face_at,
    faces_from_text,
    faces_to_text,
    union_coverage,
    user_face,
)
from trainer.face_parses import hair_mask
from trainer.faces import LABEL_BOX_FRAMING, Face, hair_transform, parse_transforms
from trainer.paste import paste_logits

POINTS = np.array([[30, 40], [60, 30], [48, 50], [38, 66], [62, 60]], np.float32)


@pytest.mark.parametrize(
    "face",
    [
        Face(box=(10, 10, 70, 80), landmarks=POINTS),  # turned: the crop is a rotated square
        user_face((-20, 5, 40, 70)),  # cut by the left edge
        user_face((5, 5, 60, 50)),
    ],
    ids=["rotated", "cut-by-edge", "upright"],
)
def test_coverage_is_exactly_the_pixels_the_face_can_claim(face):
    shape = (90, 100)
    logits = torch.zeros(11, 16, 16)
    logits[10] = 5.0  # this face says "hair" everywhere in its crops
    main, wide = parse_transforms(face, 16)  # as the predictor parses it: its crop, zoomed out,
    far = hair_transform(face, 16)  # and, hair reaching that crop's edge, zoomed out further
    keep = hair_mask(logits, logits, 10)
    label, _ = paste_logits([logits], [main], shape, fill=([logits], [wide]), hair=([logits], [far], [keep]))
    (x0, y0, x1, y1), mask = coverage(face, shape)
    full = np.zeros(shape, bool)
    full[y0:y1, x0:x1] = mask
    np.testing.assert_array_equal(full, label == 10)


def test_a_face_off_the_photo_covers_nothing_and_union_joins_two():
    assert coverage(user_face((200, 200, 260, 260)), (90, 100)) is None
    a, b = user_face((0, 0, 10, 10)), user_face((75, 65, 90, 80))  # widest crops apart
    (x0, y0, x1, y1), mask = union_coverage([a, b], (90, 100))
    assert mask.shape == (y1 - y0, x1 - x0) and mask.sum() == coverage(a, (90, 100))[1].sum() + coverage(
        b, (90, 100)
    )[1].sum()


def test_a_drawn_box_is_framed_as_the_training_labels_and_kept_with_its_framing():
    face = user_face((50, 60, 10, 4))
    assert face.box == (10, 4, 50, 60) and face.source == "user" and face.landmarks is None
    assert face.box_framing == LABEL_BOX_FRAMING
    found = Face(box=(1, 2, 30, 40), score=0.8, landmarks=POINTS, box_framing=(0.5, 0.5, 1.0))
    back = faces_from_text(faces_to_text([found, face]))
    assert [f.box_framing for f in back] == [(0.5, 0.5, 1.0), LABEL_BOX_FRAMING]
    np.testing.assert_allclose(back[0].landmarks, POINTS)
    assert faces_from_text(None) is None and faces_from_text("[]") == []
    assert faces_from_text("not json") is None


def test_a_click_selects_the_smallest_box_under_it():
    outer, inner = user_face((0, 0, 100, 100)), user_face((40, 40, 60, 60))
    assert face_at([outer, inner], 50, 50) == 1
    assert face_at([outer, inner], 10, 10) == 0
    assert face_at([outer, inner], 150, 10) is None
