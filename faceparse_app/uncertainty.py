"""How unsure the model is about a face: per-image scores, a per-pixel map, a heat colouring.

Qt-free numpy. Scores are used to pick the next face to label (the one the model is least sure
of), the map to show annotators where to look. Every score and map grows with uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

_EPS = 1e-12

# Heat ramp from cool to hot (dark purple -> red -> yellow), sampled at evenly spaced stops.
_HEAT_STOPS = np.array(
    [
        [40, 11, 84],
        [120, 28, 109],
        [188, 55, 84],
        [237, 105, 37],
        [252, 180, 25],
        [252, 255, 164],
    ],
    dtype=np.float32,
)


def _check_probs(probs: np.ndarray) -> np.ndarray:
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ValueError(f"expected (C, H, W) class probabilities with C ≥ 2, got shape {probs.shape}")
    return np.asarray(probs, dtype=np.float32)


def uncertainty_map(probs: np.ndarray) -> np.ndarray:
    """Per-pixel normalised entropy.

    Args:
        probs: (C, H, W) class probabilities (summing to 1 over C).

    Returns:
        (H, W) float32 in [0, 1]: 0 where one class has all the mass, 1 where all C are equal.
    """
    p = np.clip(_check_probs(probs), _EPS, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0) / math.log(p.shape[0])
    return np.clip(entropy, 0.0, 1.0).astype(np.float32)


def mean_entropy(probs: np.ndarray) -> float:
    """Mean normalised per-pixel entropy of a (C, H, W) probability map, in [0, 1]."""
    return float(uncertainty_map(probs).mean())


def margin_map(probs: np.ndarray) -> np.ndarray:
    """Per-pixel ``1 - (p1 - p2)`` (top two class probabilities): (H, W) float32 in [0, 1]."""
    p = _check_probs(probs)
    top2 = np.partition(p, p.shape[0] - 2, axis=0)[-2:]
    return np.clip(1.0 - (top2[1] - top2[0]), 0.0, 1.0).astype(np.float32)


def mean_margin(probs: np.ndarray) -> float:
    """Mean of ``1 - (p1 - p2)`` over pixels, in [0, 1]; larger = less sure."""
    return float(margin_map(probs).mean())


def uncertainty_from_confidence(confidence: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-pixel uncertainty from the top-class probability alone (no full probabilities needed).

    Args:
        confidence: (H, W) top-class probability in [1/C, 1] (``Prediction.confidence``).
        num_classes: C.

    Returns:
        (H, W) float32 in [0, 1]: 0 at confidence 1, 1 at confidence 1/C (uniform).
    """
    floor = 1.0 / max(2, num_classes)
    return np.clip((1.0 - confidence) / (1.0 - floor), 0.0, 1.0).astype(np.float32)


def rank_by_uncertainty(scores: Mapping[int, float | None]) -> list[int]:
    """Image ids, least sure first.

    Args:
        scores: image id -> score (larger = less sure); NaN: the model found no face, so a
            person must look first; None: not scored yet (last).

    Returns:
        Ids with no face first, then by descending score, then the unscored; ties by ascending
        id, so the order is stable.
    """

    def key(item: tuple[int, float | None]) -> tuple[int, float, int]:
        image_id, score = item
        if score is None:
            return (2, 0.0, image_id)
        if math.isnan(score):
            return (0, 0.0, image_id)
        return (1, -float(score), image_id)

    return [image_id for image_id, _ in sorted(scores.items(), key=key)]


def heat_rgba(umap: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Colour an uncertainty map as a heat overlay.

    Sure pixels become transparent so only the places to check stand out.

    Args:
        umap: (H, W) values in [0, 1] (e.g. ``uncertainty_map``).
        alpha: opacity of the most uncertain pixels, in [0, 1].

    Returns:
        (H, W, 4) uint8 RGBA (straight, not premultiplied alpha); A = 255 · alpha · umap.
    """
    if umap.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {umap.shape}")
    u = np.clip(np.nan_to_num(np.asarray(umap, dtype=np.float32)), 0.0, 1.0)
    pos = u * (len(_HEAT_STOPS) - 1)
    low = np.minimum(pos.astype(np.int32), len(_HEAT_STOPS) - 2)
    frac = (pos - low)[..., None]
    rgb = _HEAT_STOPS[low] * (1.0 - frac) + _HEAT_STOPS[low + 1] * frac
    out = np.empty(u.shape + (4,), np.uint8)
    out[..., :3] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    out[..., 3] = np.clip(u * (255.0 * float(np.clip(alpha, 0.0, 1.0))) + 0.5, 0, 255).astype(np.uint8)
    return out
