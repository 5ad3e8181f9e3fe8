"""The empirical-Bayes posterior behind the default strategy, and MAC-aware allocation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from greenrunner.candidates import Candidate
from greenrunner.history import History
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import create
from greenrunner.strategies._base import allocate, finite_pool_posterior
from greenrunner.strategies._prior import posterior, posterior_pool_mean


def _history(
    cards: Sequence[float | None], n_samples: int, costs: Sequence[float] | None = None
) -> History:
    cands = [Candidate(f"m{i}", benchmark_accuracy=c) for i, c in enumerate(cards)]
    rm = RewardModel(Weights.parse("accuracy=1"), cands)
    cost = np.asarray(costs if costs is not None else [1.0] * len(cards))
    return History(rm, np.arange(n_samples), cost, budget_limit=1e12)


def _record_rate(h: History, arm: int, n: int, rate: float) -> None:
    """Record ``n`` outcomes with ``round(rate * n)`` successes, spread evenly."""
    hits = round(rate * n)
    outcomes = np.zeros(n, dtype=bool)
    outcomes[np.linspace(0, n - 1, hits).astype(int)] = True
    h.record(arm, outcomes)


def test_a_model_seen_on_the_whole_pool_is_exact() -> None:
    h = _history([0.6, 0.7, 0.8, 0.9, 0.5], 50)
    for arm in range(4):
        _record_rate(h, arm, 20, 0.5 + 0.1 * arm)
    _record_rate(h, 4, 50, 0.34)
    assert posterior_pool_mean(h)[4] == pytest.approx(17 / 50)


def test_informative_cards_pull_a_thin_estimate_toward_the_line() -> None:
    # Target accuracy is card - 0.1 for every well-measured model; the last model has seen
    # 8 samples and got them all right, but its card says it is an ordinary model.
    cards = [0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.7]
    h = _history(cards, 1000)
    for arm, card in enumerate(cards[:-1]):
        _record_rate(h, arm, 400, card - 0.1)
    _record_rate(h, 8, 8, 1.0)
    mean, var = posterior(h)
    assert 0.6 <= mean[8] < 0.9  # below the raw 8/8, toward the line's 0.6
    # Well-measured models keep (almost) their own estimate.
    assert mean[3] == pytest.approx(0.6, abs=0.01)
    assert var[8] > var[3]


def test_uninformative_cards_shrink_toward_the_common_mean() -> None:
    rng = np.random.default_rng(0)
    cards = list(rng.permutation(np.linspace(0.5, 0.95, 10)))
    h = _history(cards, 1000)
    for arm in range(9):
        _record_rate(h, arm, 300, 0.7 + (0.01 if arm % 2 else -0.01))
    _record_rate(h, 9, 5, 0.0)
    mean, _ = posterior(h)
    assert mean[9] > 0.4  # five misses do not make a zero-accuracy model among 0.7s
    assert mean[9] < 0.7


def test_models_without_cards_are_handled() -> None:
    h = _history([None, None, None, None, None], 200)
    for arm in range(5):
        _record_rate(h, arm, 40, 0.5 + 0.05 * arm)
    mean, var = posterior(h)
    assert np.all(np.isfinite(mean)) and np.all(var > 0)
    assert np.all(np.diff(mean) > 0)  # the order of the evidence is kept


def test_with_few_models_seen_the_prior_is_wide() -> None:
    h = _history([0.7, 0.8, 0.9], 100)
    _record_rate(h, 0, 10, 0.9)
    mean, var = posterior(h)
    assert mean[0] == pytest.approx(9.5 / 11, abs=0.05)
    assert var[1] == pytest.approx(0.25)  # unseen: the fallback prior's variance


def test_finite_pool_posterior_is_a_point_mass_once_the_pool_is_seen() -> None:
    h = _history([0.7, 0.8], 40)
    _record_rate(h, 0, 40, 0.75)
    _record_rate(h, 1, 10, 0.8)
    draws = finite_pool_posterior(h, np.random.default_rng(1), 200)
    assert np.all(draws[:, 0] == pytest.approx(0.75))
    assert draws[:, 1].std() > 0
    # Ten samples seen out of forty: the pool accuracy includes the seen hits for sure.
    assert draws[:, 1].min() >= 8 / 40


def test_finite_pool_posterior_normal_branch_matches_the_beta_mean() -> None:
    h = _history([0.7], 100_000)
    _record_rate(h, 0, 5_000, 0.3)
    draws = finite_pool_posterior(h, np.random.default_rng(2), 4000)
    assert draws[:, 0].mean() == pytest.approx(0.3, abs=0.005)


def test_allocate_in_macs_buys_fewer_samples_of_an_expensive_model() -> None:
    h = _history([0.7, 0.7], 10_000, costs=[1.0, 10.0])
    picks = allocate(h, np.array([0, 1]), spend=2000.0, rng=np.random.default_rng(0))
    assert picks[0] == 1000 and picks[1] == 100  # equal spend, ten times fewer samples
    assert picks @ np.array([1.0, 10.0]) == pytest.approx(2000.0)


def test_allocate_in_calls_buys_equal_samples() -> None:
    h = _history([0.7, 0.7, 0.7], 10_000)
    picks = allocate(h, np.array([0, 1, 1]), spend=300.0, rng=np.random.default_rng(0))
    assert picks.tolist() == [100, 200, 0]


def test_prior_halving_estimate_is_nan_only_for_unseen_models() -> None:
    h = _history([0.6, 0.7, 0.8, 0.9, 0.5], 100)
    for arm in range(4):
        _record_rate(h, arm, 10, 0.6)
    strategy = create("prior_halving")
    est = strategy.estimate(h)
    assert est is not None
    assert np.isnan(est[4]) and np.all(np.isfinite(est[:4]))
