"""The study: repeated seeded runs of each (strategy, budget) scored against brute force."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from greenrunner.api import select
from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError
from greenrunner.reward import Weights
from greenrunner.study import StudyRow, run_study, true_rewards
from tests._helpers import Replay, make_replay

ROW_KEYS = {
    "strategy",
    "budget",
    "budget_unit",
    "repeats",
    "p_best",
    "p_eps",
    "eps",
    "mean_regret",
    "mean_calls_fraction",
    "mean_macs_fraction",
}


def _study(
    replay: Replay, strategies: list[str], budgets: list[Budget], **kw: Any
) -> list[StudyRow]:
    return run_study(
        replay.candidates,
        replay.correct,
        Weights.parse("accuracy=1"),
        strategies,
        budgets,
        workers=1,
        **kw,
    )


def test_rows_have_the_documented_keys_and_order(small_replay: Replay) -> None:
    rows = _study(
        small_replay,
        ["default", "thompson"],
        [Budget(0.1), Budget(0.3)],
        repeats=4,
        eps=0.05,
    )
    assert [(r.strategy, r.budget) for r in rows] == [
        ("default", 0.1),
        ("default", 0.3),
        ("thompson", 0.1),
        ("thompson", 0.3),
    ]
    for r in rows:
        d = r.as_dict()
        assert set(d) == ROW_KEYS
        assert d["repeats"] == 4
        assert d["eps"] == 0.05
        assert d["budget_unit"] == "calls"
        assert 0 <= d["p_best"] <= d["p_eps"] <= 1
        assert d["mean_regret"] >= 0
        assert 0 < d["mean_calls_fraction"] <= r.budget + 1e-9
        assert d["mean_macs_fraction"] is not None


def test_brute_force_and_benchmark_rows(small_replay: Replay) -> None:
    rows = {
        r.strategy: r
        for r in _study(small_replay, ["brute_force", "benchmark"], [Budget(1.0)], repeats=3)
    }
    bf = rows["brute_force"]
    assert bf.p_best == 1.0
    assert bf.p_eps == 1.0
    assert bf.mean_regret == 0.0
    assert bf.mean_calls_fraction == pytest.approx(1.0)
    bench = rows["benchmark"]
    assert bench.mean_calls_fraction == 0.0
    assert bench.mean_macs_fraction == 0.0


def test_brute_force_is_exact_at_any_study_budget() -> None:
    # The true best is the last model, which a budget-capped brute force never reaches.
    replay = make_replay([0.5, 0.55, 0.6, 0.9], 50, seed=3)
    (row,) = _study(replay, ["brute_force"], [Budget(0.2)], repeats=3)
    assert row.p_best == 1.0
    assert row.mean_regret == 0.0
    assert row.mean_calls_fraction == pytest.approx(1.0)


def test_benchmark_matches_card_ranking() -> None:
    # Cards point at m0, the target's best is m3: the benchmark's regret is known exactly.
    replay = make_replay([0.5, 0.6, 0.7, 0.9], 50, cards=[0.9, 0.8, 0.7, 0.6])
    (row,) = _study(replay, ["benchmark"], [Budget(0.1)], repeats=2)
    truth = true_rewards(replay.candidates, replay.correct, Weights.parse("accuracy=1"))
    assert row.p_best == 0.0
    assert row.mean_regret == pytest.approx(float(truth.max() - truth[0]))


def test_regret_is_measured_on_the_full_pool(easy_replay: Replay) -> None:
    (row,) = _study(easy_replay, ["sequential_halving"], [Budget(0.5)], repeats=5, eps=0.0)
    assert row.p_best == 1.0
    assert row.p_eps == 1.0
    assert row.mean_regret == 0.0


def test_study_is_deterministic_and_independent_of_workers(small_replay: Replay) -> None:
    kwargs: dict[str, Any] = {"repeats": 6, "eps": 0.02, "seed": 17}
    one = run_study(
        small_replay.candidates,
        small_replay.correct,
        Weights.parse("accuracy=0.63,size=0.25,complexity=0.21"),
        ["thompson", "racing"],
        [Budget(0.2, "macs")],
        workers=1,
        **kwargs,
    )
    again = run_study(
        small_replay.candidates,
        small_replay.correct,
        Weights.parse("accuracy=0.63,size=0.25,complexity=0.21"),
        ["thompson", "racing"],
        [Budget(0.2, "macs")],
        workers=2,
        **kwargs,
    )
    assert [r.as_dict() for r in one] == [r.as_dict() for r in again]


def test_repeats_split_into_chunks_merge_back(small_replay: Replay) -> None:
    # 100 repeats are run as several chunks; the row must still count every repeat once.
    (row,) = _study(small_replay, ["benchmark"], [Budget(0.1)], repeats=100)
    assert row.repeats == 100


def test_same_value_in_two_units_gives_two_rows(small_replay: Replay) -> None:
    rows = _study(small_replay, ["uniform"], [Budget(0.2, "calls"), Budget(0.2, "macs")], repeats=2)
    assert [(r.budget, r.budget_unit, r.repeats) for r in rows] == [
        (0.2, "calls", 2),
        (0.2, "macs", 2),
    ]


def test_macs_fraction_is_null_without_macs() -> None:
    replay = make_replay([0.7, 0.6, 0.5], 30)
    cands = [Candidate(c.name, benchmark_accuracy=c.benchmark_accuracy) for c in replay.candidates]
    rows = run_study(
        cands,
        replay.correct,
        Weights.parse("accuracy=1"),
        ["ucb"],
        [Budget(0.3)],
        repeats=2,
        workers=1,
    )
    assert rows[0].mean_macs_fraction is None


@pytest.mark.parametrize("repeats", [0, -3])
def test_bad_repeats(repeats: int, small_replay: Replay) -> None:
    with pytest.raises(ConfigError, match="repeats"):
        _study(small_replay, ["ucb"], [Budget(0.1)], repeats=repeats)


@pytest.mark.parametrize("eps", [-0.01, math.nan, math.inf])
def test_bad_eps(eps: float, small_replay: Replay) -> None:
    with pytest.raises(ConfigError, match="eps"):
        _study(small_replay, ["ucb"], [Budget(0.1)], repeats=2, eps=eps)


def test_unknown_strategy_is_refused_before_any_work(small_replay: Replay) -> None:
    with pytest.raises(ConfigError, match="'nope'"):
        _study(small_replay, ["ucb", "nope"], [Budget(0.1)], repeats=2)


def test_weights_the_candidates_cannot_support(small_replay: Replay) -> None:
    cands = [Candidate(c.name) for c in small_replay.candidates]
    with pytest.raises(ConfigError, match="size"):
        run_study(
            cands,
            small_replay.correct,
            Weights.parse("accuracy=1,size=1"),
            ["ucb"],
            [Budget(0.1)],
            repeats=2,
            workers=1,
        )


def test_true_rewards_use_the_full_pool(small_replay: Replay, paper_weights: Weights) -> None:
    truth = true_rewards(small_replay.candidates, small_replay.correct, paper_weights)
    assert np.allclose(truth, small_replay.true_rewards(paper_weights))


@pytest.mark.parametrize("strategy", ["thompson", "sequential_halving", "racing"])
def test_study_agrees_with_single_selections(strategy: str, small_replay: Replay) -> None:
    # The study's fast path must score exactly what select() would recommend per seed.
    weights = Weights.parse("accuracy=0.63,size=0.25,complexity=0.21")
    budget = Budget(0.15, "macs")
    (row,) = run_study(
        small_replay.candidates,
        small_replay.correct,
        weights,
        [strategy],
        [budget],
        repeats=5,
        eps=0.01,
        seed=30,
        workers=1,
    )
    truth = small_replay.true_rewards(weights)
    best = small_replay.best(weights)
    picks, regrets, calls = [], [], []
    for seed in range(30, 35):
        r = select(
            small_replay.candidates,
            small_replay.evaluator(),
            weights,
            strategy=strategy,
            budget=budget,
            seed=seed,
        )
        picks.append(r.recommended == best)
        regrets.append(float(truth.max() - truth[small_replay.names.index(r.recommended)]))
        calls.append(r.calls / r.brute_force_calls)
    assert row.p_best == pytest.approx(np.mean(picks))
    assert row.mean_regret == pytest.approx(np.mean(regrets))
    assert row.mean_calls_fraction == pytest.approx(np.mean(calls))
