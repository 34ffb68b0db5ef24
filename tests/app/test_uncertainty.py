"""Uncertainty scores order faces by how unsure the model is; the heat overlay shows where."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceparse_app.uncertainty import (
    heat_rgba,
    margin_map,
    mean_entropy,
    mean_margin,
    rank_by_uncertainty,
    uncertainty_from_confidence,
    uncertainty_map,
)

C, H, W = 11, 8, 8


def confident(cls: int = 1, p: float = 0.98) -> np.ndarray:
    probs = np.full((C, H, W), (1.0 - p) / (C - 1), np.float32)
    probs[cls] = p
    return probs


def uniform() -> np.ndarray:
    return np.full((C, H, W), 1.0 / C, np.float32)


def torn() -> np.ndarray:
    """Two classes tied at 0.45 each: low entropy-ish but no margin at all."""
    probs = np.full((C, H, W), 0.1 / (C - 2), np.float32)
    probs[1] = probs[2] = 0.45
    return probs


def test_confident_map_scores_lower_than_uniform():
    assert mean_entropy(confident()) < 0.2
    assert mean_entropy(uniform()) == pytest.approx(1.0, abs=1e-5)
    assert mean_margin(confident()) < 0.1
    assert mean_margin(uniform()) == pytest.approx(1.0, abs=1e-5)
    assert mean_entropy(confident()) < mean_entropy(torn()) < mean_entropy(uniform())
    assert mean_margin(torn()) == pytest.approx(1.0, abs=1e-5)  # a tie is as unsure as it gets


def test_map_marks_the_unsure_pixels():
    probs = confident()
    probs[:, 2:4, 5:7] = 1.0 / C  # a patch the model cannot decide on
    umap = uncertainty_map(probs)
    assert umap.shape == (H, W) and umap.dtype == np.float32
    assert umap.min() >= 0.0 and umap.max() <= 1.0
    assert umap[2:4, 5:7].min() > 0.99
    assert umap[0, 0] < 0.2
    assert margin_map(probs)[2, 5] > 0.99 > margin_map(probs)[0, 0]


def test_uncertainty_from_confidence_spans_zero_to_one():
    conf = np.array([[1.0, 1.0 / C], [0.5, 0.99]], np.float32)
    u = uncertainty_from_confidence(conf, C)
    assert u[0, 0] == pytest.approx(0.0)
    assert u[0, 1] == pytest.approx(1.0)
    assert u[1, 1] < u[1, 0]


def test_rank_no_face_first_then_least_sure_with_unscored_last():
    # No face found (NaN) needs a person before any parse does; not scored yet (None) goes last.
    scores = {3: 0.2, 7: 0.9, 1: 0.5, 4: None, 2: 0.5, 9: math.nan}
    assert rank_by_uncertainty(scores) == [9, 7, 1, 2, 3, 4]
    images = {10: confident(), 11: uniform(), 12: torn()}
    ranked = rank_by_uncertainty({k: mean_entropy(v) for k, v in images.items()})
    assert ranked == [11, 12, 10]


def test_heat_rgba_is_transparent_where_sure_and_opaque_where_unsure():
    umap = np.array([[0.0, 0.5, 1.0]], np.float32)
    rgba = heat_rgba(umap, alpha=0.8)
    assert rgba.shape == (1, 3, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0
    assert rgba[0, 2, 3] == round(255 * 0.8)
    assert rgba[0, 0, 3] < rgba[0, 1, 3] < rgba[0, 2, 3]
    # Hotter = brighter (the ramp ends in pale yellow).
    assert rgba[0, 2, :3].astype(int).sum() > rgba[0, 0, :3].astype(int).sum()


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        uncertainty_map(np.zeros((H, W), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        heat_rgba(np.zeros((1, H, W), np.float32))
