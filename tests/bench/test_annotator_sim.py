"""The simulated annotator (bench.annotator_sim) on a cartoon face: it reaches the truth with the
app's own tools, a good start costs less than an empty canvas, and its prices are the KLM's."""

from __future__ import annotations

import numpy as np

from bench.annotator_sim import Face, correct, miou
from bench.effort_policy import BASIC, CLICK, K, M, P, fill_move, wrong_regions
from tests.conftest import synthetic_face


def _face() -> Face:
    image, truth = synthetic_face(96, seed=3)
    return Face("cartoon", image, truth)


def test_a_near_right_start_costs_far_less_than_an_empty_canvas():
    face = _face()
    start = face.truth.copy()
    start[30:36, 30:40] = 10  # one wrong blob of hair on the face
    near = correct(face, start, BASIC)
    empty = correct(face, np.zeros_like(face.truth), BASIC)
    assert near["reached"] and empty["reached"]
    assert near["actions"] <= 3 and near["seconds"] < empty["seconds"] / 5
    # The curve starts at the start's mIoU and climbs with the actions to the end.
    curve = np.array(empty["curve"])
    assert curve[0, 2] == round(miou(np.zeros_like(face.truth), face.truth), 4)
    assert (np.diff(curve[:, 0]) > 0).all() and curve[-1, 2] >= 0.95


def test_a_blob_inside_one_class_is_filled_with_one_click_at_klm_prices():
    face = _face()
    start = face.truth.copy()
    start[22:34, 40:52] = 8  # a blob of inner mouth in the middle of the forehead's skin
    assert miou(start, face.truth) < 0.95
    regions = wrong_regions(start, face.truth, 11)
    assert regions[0].cls == 1 and regions[0].area == 144
    assert fill_move(regions[0]).seconds == CLICK == P + 0.2
    out = correct(face, start, BASIC)
    assert out["reached"] and out["tools"] == {"fill": 1}
    # M to find it, the fill tool and the skin class chosen (a key each), one click.
    assert out["seconds"] == round(M + 2 * K + CLICK, 1) and out["actions"] == 3
