"""Confidence bounds for accuracy measured on a prefix of a finite, shuffled pool.

Every model is evaluated on a prefix of one random order of the N target samples, i.e.
sampling *without* replacement. Bounds for that setting shrink to zero width when the
prefix covers the pool, where the accuracy is exact; with-replacement bounds never do.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def serfling_radius(n: np.ndarray, pool: int, delta: float, value_range: float = 1.0) -> np.ndarray:
    """Hoeffding-Serfling radius for the mean of n draws without replacement from ``pool``.

    With probability at least 1 - delta, |mean of prefix - mean of pool| <= radius
    (two-sided; Bardenet & Maillard 2015, Thm 2.4 with their corrected factor rho_n).
    Infinite for n = 0, zero for n >= pool.
    """
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.minimum(1 - (n - 1) / pool, (1 - n / pool) * (1 + 1 / n))
        radius = value_range * np.sqrt(np.maximum(rho, 0.0) * np.log(2 / delta) / (2 * n))
    radius = np.where(n <= 0, np.inf, radius)
    return np.where(n >= pool, 0.0, radius)


def hypergeom_interval(
    successes: int, n: int, pool: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Exact (Clopper-Pearson style) interval for the pool's accuracy from a prefix.

    Inverts the hypergeometric tails over every possible number of correct samples in the
    pool; exact (zero width) when n == pool. Returns accuracies in [0, 1]; (0, 1) for n == 0.
    """
    if n <= 0:
        return 0.0, 1.0
    if n >= pool:
        acc = successes / pool
        return acc, acc
    alpha = (1 - confidence) / 2
    # Possible totals of correct samples in the pool, given what the prefix showed.
    totals = np.arange(successes, successes + (pool - n) + 1)
    upper_tail = sps.hypergeom.sf(successes - 1, pool, totals, n)  # P(X >= s | total)
    lower_tail = sps.hypergeom.cdf(successes, pool, totals, n)  # P(X <= s | total)
    plausible = (upper_tail > alpha) & (lower_tail > alpha)
    kept = totals[plausible]
    if kept.size == 0:  # cannot happen for alpha < 0.5; keep the point estimate if it does
        acc = successes / n
        return acc, acc
    return float(kept.min() / pool), float(kept.max() / pool)
