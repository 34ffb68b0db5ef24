"""The paired K = 10 lead's statistics: mean, standard error, a t 95% interval and a bootstrap
one (no SciPy in the venv: Student's t from a table and a Cornish-Fisher expansion).
"""

from __future__ import annotations

import math

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (no SciPy in the venv).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: int) -> float:
    """Two-sided 95% quantile of Student's t (a table to 30, Cornish-Fisher beyond)."""
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def lead_stats(leads: list[float], target: float = 5.0, seed: int = 0) -> dict[str, float]:
    """Mean paired lead, its standard error, a t 95% interval and a percentile-bootstrap one
    (the bootstrap runs narrow with few subsets: read the t interval there)."""
    import numpy as np

    x = np.asarray(leads, dtype=float)
    n = len(x)
    if n < 2:
        raise ValueError(f"the lead's spread needs at least two subsets, got {n}")
    sd = float(x.std(ddof=1))
    se = sd / math.sqrt(n)
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, n, size=(10_000, n))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {
        "n": n,
        "mean": float(x.mean()),
        "sd": sd,
        "se": se,
        "t95": (float(x.mean()) - t975(n - 1) * se, float(x.mean()) + t975(n - 1) * se),
        "ci95": (float(lo), float(hi)),
        "share_at_target": float((x >= target).mean()),
        "bootstrap_share_at_target": float((boots >= target).mean()),
    }
