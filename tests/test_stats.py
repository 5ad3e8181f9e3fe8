"""Confidence bounds for prefixes of a finite pool (sampling without replacement)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greenrunner.stats import hypergeom_interval, serfling_radius


def test_serfling_radius_endpoints() -> None:
    assert math.isinf(float(serfling_radius(np.array(0), 100, 0.05)))
    assert float(serfling_radius(np.array(100), 100, 0.05)) == 0.0
    assert float(serfling_radius(np.array(150), 100, 0.05)) == 0.0


def test_serfling_radius_is_decreasing_in_n() -> None:
    n = np.arange(1, 201)
    r = serfling_radius(n, 200, 0.05)
    assert np.all(np.isfinite(r))
    assert np.all(np.diff(r) <= 1e-15)
    assert np.all(r[:-1] > 0)


def test_serfling_radius_shrinks_with_looser_confidence_and_scales_with_range() -> None:
    n = np.array([10, 50])
    tight = serfling_radius(n, 100, 0.01)
    loose = serfling_radius(n, 100, 0.2)
    assert np.all(loose < tight)
    assert serfling_radius(n, 100, 0.05, value_range=2.0) == pytest.approx(
        2 * serfling_radius(n, 100, 0.05)
    )


def test_serfling_radius_is_tighter_than_hoeffding_near_the_whole_pool() -> None:
    n, pool, delta = 90, 100, 0.05
    hoeffding = math.sqrt(math.log(2 / delta) / (2 * n))
    assert float(serfling_radius(np.array(n), pool, delta)) < hoeffding / 2


def test_serfling_radius_covers_prefix_means() -> None:
    rng = np.random.default_rng(0)
    pool = rng.random(300) < 0.7
    truth = pool.mean()
    n = 40
    radius = float(serfling_radius(np.array(n), pool.size, 0.05))
    covered = sum(
        abs(pool[rng.permutation(pool.size)[:n]].mean() - truth) <= radius for _ in range(400)
    )
    assert covered >= 0.9 * 400


def test_hypergeom_interval_edges() -> None:
    assert hypergeom_interval(0, 0, 50) == (0.0, 1.0)
    assert hypergeom_interval(30, 50, 50) == (0.6, 0.6)


def test_hypergeom_interval_contains_point_estimate_and_stays_in_bounds() -> None:
    for s, n in [(0, 10), (10, 10), (7, 10), (33, 60), (1, 99)]:
        lo, hi = hypergeom_interval(s, n, 100)
        assert 0.0 <= lo <= hi <= 1.0
        # The pool holds at least the s seen right and at most s plus every unseen sample.
        assert lo >= s / 100 - 1e-12
        assert hi <= (s + 100 - n) / 100 + 1e-12
        assert lo - 0.01 <= s / n <= hi + 0.01


def test_hypergeom_interval_narrows_as_the_prefix_grows() -> None:
    widths = []
    for n in (10, 40, 80, 99):
        lo, hi = hypergeom_interval(round(0.7 * n), n, 100)
        widths.append(hi - lo)
    assert widths == sorted(widths, reverse=True)


def test_hypergeom_interval_coverage_monte_carlo() -> None:
    rng = np.random.default_rng(12345)
    pool = np.zeros(200, dtype=bool)
    pool[:124] = True  # accuracy 0.62
    truth = pool.mean()
    draws, covered = 300, 0
    for _ in range(draws):
        n = int(rng.integers(5, 150))
        prefix = pool[rng.permutation(pool.size)[:n]]
        lo, hi = hypergeom_interval(int(prefix.sum()), n, pool.size, 0.95)
        covered += lo <= truth <= hi
    assert covered >= 0.90 * draws
