"""The result's shape (shared by the API, the CLI JSON and the web app) and its consistency."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from greenrunner.api import select
from greenrunner.budget import Budget, BudgetUnit
from greenrunner.candidates import Candidate
from greenrunner.result import SelectionResult
from greenrunner.reward import Weights
from tests._helpers import Replay, make_replay

REQUIRED_KEYS = {
    "strategy",
    "seed",
    "weights",
    "budget",
    "top",
    "models",
    "calls",
    "macs",
    "brute_force_calls",
    "brute_force_macs",
    "savings",
    "stop_reason",
}
MODEL_KEYS = {
    "rank",
    "name",
    "accuracy",
    "ci_low",
    "ci_high",
    "reward",
    "size_mb",
    "mmacs",
    "pulls",
}


def _select(replay: Replay, weights: Weights, **kwargs: Any) -> SelectionResult:
    return select(replay.candidates, replay.evaluator(), weights, **kwargs)


@pytest.mark.parametrize("strategy", ["default", "thompson", "brute_force", "benchmark"])
@pytest.mark.parametrize("unit", ["calls", "macs"])
def test_result_keys_and_json(
    strategy: str, unit: BudgetUnit, small_replay: Replay, paper_weights: Weights
) -> None:
    result = _select(
        small_replay, paper_weights, strategy=strategy, budget=Budget(0.2, unit), seed=3
    )
    d = result.to_dict()
    assert set(d) >= REQUIRED_KEYS
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d

    assert d["seed"] == 3
    assert d["weights"] == {"accuracy": 0.63, "size": 0.25, "complexity": 0.21}
    assert set(d["budget"]) == {"value", "unit"}
    assert d["budget"]["unit"] == unit
    assert d["stop_reason"]

    assert 1 <= len(d["top"]) <= 3
    for i, entry in enumerate(d["top"], start=1):
        assert set(entry) >= MODEL_KEYS
        assert entry["rank"] == i
    assert len(d["models"]) == len(small_replay.names)
    assert {m["name"] for m in d["models"]} == set(small_replay.names)
    assert [m["rank"] for m in d["models"]] == list(range(1, len(small_replay.names) + 1))
    for m in d["models"]:
        assert MODEL_KEYS | {"status"} <= set(m)
        if m["pulls"] == 0 and strategy != "benchmark":
            assert m["accuracy"] is None
            assert m["ci_low"] is None and m["ci_high"] is None
        if m["accuracy"] is not None:
            assert m["ci_low"] <= m["accuracy"] <= m["ci_high"]
        c = small_replay.candidates[small_replay.names.index(m["name"])]
        assert m["size_mb"] == pytest.approx(c.size_mb)
        assert m["mmacs"] == pytest.approx(c.mmacs)
    assert d["top"][0]["name"] == result.recommended


def test_top_has_three_entries_when_there_are_enough_contenders(small_replay: Replay) -> None:
    result = _select(small_replay, Weights.parse("accuracy=1"), strategy="uniform")
    assert len(result.top) == 3


def test_top_with_fewer_models(accuracy_weights: Weights) -> None:
    replay = make_replay([0.7, 0.6], 30)
    result = _select(replay, accuracy_weights, strategy="default", budget=Budget(0.5))
    assert 1 <= len(result.top) <= 2


def test_savings_are_consistent_with_calls_and_macs(
    small_replay: Replay, paper_weights: Weights
) -> None:
    units: tuple[BudgetUnit, ...] = ("calls", "macs")
    for unit in units:
        r = _select(small_replay, paper_weights, strategy="ucb", budget=Budget(0.3, unit))
        k, n = len(small_replay.names), small_replay.n_samples
        assert r.brute_force_calls == k * n
        bf_macs = sum(c.macs or 0 for c in small_replay.candidates) * n
        assert r.brute_force_macs == pytest.approx(bf_macs)
        macs = sum(
            (small_replay.candidates[small_replay.names.index(m.name)].macs or 0) * m.pulls
            for m in r.models
        )
        assert r.macs == pytest.approx(macs)
        assert r.calls == sum(m.pulls for m in r.models)
        assert r.savings["calls_fraction"] == pytest.approx(1 - r.calls / r.brute_force_calls)
        assert r.savings["macs_fraction"] == pytest.approx(1 - macs / bf_macs)
        assert r.savings["mmacs"] == pytest.approx((bf_macs - macs) / 1e6)


def test_savings_without_macs_are_null(accuracy_weights: Weights) -> None:
    replay = make_replay([0.7, 0.6, 0.5], 30)
    cands = [Candidate(c.name, size_bytes=c.size_bytes) for c in replay.candidates]
    r = select(cands, replay.evaluator(), accuracy_weights, strategy="uniform")
    d = r.to_dict()
    assert d["macs"] is None
    assert d["brute_force_macs"] is None
    assert d["savings"]["macs_fraction"] is None
    assert d["savings"]["mmacs"] is None
    assert all(m["mmacs"] is None for m in d["models"])
    json.dumps(d, allow_nan=False)


def test_rewards_match_equation_1_for_the_estimates(
    small_replay: Replay, paper_weights: Weights
) -> None:
    r = _select(small_replay, paper_weights, strategy="uniform", budget=Budget(0.5))
    everyone = _select(small_replay, paper_weights, strategy="brute_force")
    offset = {
        m.name: m.reward - 0.63 * m.accuracy
        for m in everyone.models
        if m.reward is not None and m.accuracy is not None
    }
    for m in r.models:
        if m.accuracy is None:
            assert m.reward is None
            continue
        assert m.reward == pytest.approx(0.63 * m.accuracy + offset[m.name])
        assert m.reward_ci_low == pytest.approx(0.63 * (m.ci_low or 0) + offset[m.name])
        assert m.reward_ci_high == pytest.approx(0.63 * (m.ci_high or 0) + offset[m.name])


def test_ranking_is_by_estimated_reward(small_replay: Replay, paper_weights: Weights) -> None:
    r = _select(small_replay, paper_weights, strategy="thompson", budget=Budget(0.3))
    contenders = [m for m in r.models if m.status in ("active", "exact") and m.reward is not None]
    rewards = [float(m.reward or 0.0) for m in contenders]
    assert rewards == sorted(rewards, reverse=True)
    assert r.top[0].name == contenders[0].name


def test_tied_with_top_lists_overlapping_reward_intervals(accuracy_weights: Weights) -> None:
    # Two close leaders and a clear loser, a small budget: the leaders' intervals overlap.
    replay = make_replay([0.72, 0.70, 0.30, 0.25], 200, seed=5)
    r = _select(replay, accuracy_weights, strategy="uniform", budget=Budget(0.2))
    head = r.top[0]
    assert head.reward_ci_low is not None
    expected = [
        m.name
        for m in r.models[1:]
        if m.status in ("active", "exact")
        and m.reward_ci_high is not None
        and m.reward_ci_high >= head.reward_ci_low
    ]
    assert r.tied_with_top == expected
    assert set(r.tied_with_top) & {"m0", "m1"}
    assert head.name not in r.tied_with_top


def test_nothing_is_tied_when_everything_is_exact(small_replay: Replay) -> None:
    r = _select(small_replay, Weights.parse("accuracy=1"), strategy="brute_force")
    best = r.top[0].reward
    assert r.tied_with_top == [m.name for m in r.models[1:] if m.reward == best]


def test_budget_is_reported_as_given(small_replay: Replay, accuracy_weights: Weights) -> None:
    r = _select(small_replay, accuracy_weights, strategy="ucb", budget=Budget(40))
    assert r.to_dict()["budget"] == {"value": 40, "unit": "calls"}
    assert r.calls <= 40


def test_to_dict_has_no_nan(small_replay: Replay) -> None:
    r = _select(small_replay, Weights.parse("accuracy=1"), strategy="ucb", budget=Budget(3))
    d = r.to_dict()

    def walk(x: object) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, float):
            assert math.isfinite(x)

    walk(d)
    json.dumps(d, allow_nan=False)
