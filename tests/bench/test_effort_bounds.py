"""bench.effort_bounds: the oracle starts repair exactly the errors they claim to, and the
superpixel ceiling is the labeling a perfect superpixel tool reaches."""

from __future__ import annotations

import numpy as np

from bench.annotator_sim import miou
from bench.effort_bounds import error_census, repaired, superpixel_ceiling
from bench.effort_policy import wrong_regions
from tests.conftest import synthetic_face


def _start() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, truth = synthetic_face(96, seed=3)
    start = truth.copy()
    start[22:34, 40:52] = 8  # a blob of 144 px
    start[60, 10:14] = 5  # a sliver of 4 px
    return image, truth, start


def test_repairing_the_big_regions_leaves_only_the_slivers_wrong():
    _, truth, start = _start()
    left = repaired(start, truth, lambda r: r.area < 50)
    assert [r.area for r in wrong_regions(left, truth, 11)] == [4]
    left = repaired(start, truth, lambda r: r.area >= 50)
    assert [r.area for r in wrong_regions(left, truth, 11)] == [144]
    census = error_census(start, truth, 50)
    assert census["regions"] == 2 and census["sliver_px"] == 4 and census["big_px"] == 144
    assert census["sliver_px_by_true_class"][int(truth[60, 10])] == 4


def test_the_superpixel_ceiling_rises_with_finer_superpixels_and_stays_below_one():
    image, truth, _ = _start()
    coarse = superpixel_ceiling(image, truth, "slic", 50)
    fine = superpixel_ceiling(image, truth, "slic", 2000)
    assert coarse[0] < fine[0]
    assert coarse[1] < fine[1] <= 1.0
    assert coarse[1] < miou(truth, truth)
