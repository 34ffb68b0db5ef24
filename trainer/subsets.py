"""The label-fraction protocol: a seeded subset of the labeled training images.

The subset depends only on the image names, the size asked for and the seed — never on ``--init``
— so the ssl, imagenet and scratch runs of one experiment train on exactly the same faces. Subsets
are nested: for one seed the first K names of a single permutation are taken, so the 5-image subset
lies inside the 10-image one (what a label-efficiency curve needs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def subset_size(total: int, fraction: float | None = None, num_labeled: int | None = None) -> int:
    """How many images a fraction or a count asks for out of ``total``.

    Args:
        total: number of labeled images available (N).
        fraction: share of N in (0, 1]; K = max(1, round(fraction · N)).
        num_labeled: an absolute count K (capped at N).

    Returns:
        K; N when neither is given.

    Raises:
        ValueError: both given, or a value out of range.
    """
    if fraction is not None and num_labeled is not None:
        raise ValueError("give either a fraction or a number of labeled images, not both")
    if total <= 0:
        return 0
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        return max(1, int(round(fraction * total)))
    if num_labeled is not None:
        if num_labeled < 1:
            raise ValueError(f"the number of labeled images must be at least 1, got {num_labeled}")
        return min(int(num_labeled), total)
    return total


def select_labeled_subset(
    names: Sequence[str],
    fraction: float | None = None,
    num_labeled: int | None = None,
    seed: int = 0,
) -> list[str]:
    """Pick the labeled training subset.

    The names are sorted first (so the order a folder is listed in does not matter), permuted with
    ``numpy.random.default_rng(seed)``, and the first K are kept.

    Args:
        names: image names (stems) of the full labeled training split.
        fraction: share of the names to keep, K = max(1, round(fraction · N)).
        num_labeled: number of names to keep (capped at N).
        seed: the subset seed; same seed → same, nested subsets.

    Returns:
        The chosen names, sorted. All names when neither fraction nor num_labeled is given.
    """
    ordered = sorted(set(names))
    k = subset_size(len(ordered), fraction=fraction, num_labeled=num_labeled)
    if k >= len(ordered):
        return ordered
    order = np.random.default_rng(seed).permutation(len(ordered))
    return sorted(ordered[i] for i in order[:k])
