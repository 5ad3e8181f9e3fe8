"""The shared strategy suite: every registered strategy runs it automatically."""

from __future__ import annotations

import numpy as np
import pytest

from greenrunner.api import select
from greenrunner.budget import Budget, BudgetUnit
from greenrunner.candidates import Candidate
from greenrunner.engine import run_selection
from greenrunner.errors import ConfigError
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import DEFAULT, Strategy, create, describe, names, strategy_class
from tests._helpers import KNOWN_STOPS, RecordingEvaluator, Replay, make_replay

ALL = names()
SEARCHING = [n for n in ALL if not create(n).baseline]


def test_registry_lists_the_required_strategies() -> None:
    required = {
        "default",
        "epsilon_greedy",
        "ucb",
        "thompson",
        "sequential_halving",
        "racing",
        "top_two_thompson",
        "brute_force",
        "benchmark",
    }
    assert required <= set(ALL)
    assert ALL[0] == "default"
    assert len(ALL) == len(set(ALL))
    assert DEFAULT in ALL and DEFAULT != "default"


def test_describe_has_one_line_per_strategy() -> None:
    rows = describe()
    assert [name for name, _ in rows] == ALL
    for _, summary in rows:
        assert summary.strip()
        assert "\n" not in summary


@pytest.mark.parametrize("name", ALL)
def test_create_returns_a_fresh_strategy(name: str) -> None:
    a, b = create(name), create(name)
    assert isinstance(a, Strategy)
    assert a is not b
    assert isinstance(a.params(), dict)
    assert strategy_class(name) is type(a)


@pytest.mark.parametrize("unit", ["calls", "macs"])
@pytest.mark.parametrize("name", ALL)
def test_runs_respects_the_budget_and_recommends(
    name: str, unit: BudgetUnit, small_replay: Replay, paper_weights: Weights
) -> None:
    budget = Budget(0.25, unit)
    ev = RecordingEvaluator(small_replay.evaluator())
    result = select(small_replay.candidates, ev, paper_weights, strategy=name, budget=budget)
    assert result.recommended in small_replay.names
    assert 1 <= len(result.top) <= 3
    assert result.stop_reason in KNOWN_STOPS
    assert result.calls == len(ev.log)
    assert result.macs is not None
    assert result.brute_force_macs is not None
    if name == "brute_force":
        assert result.calls == result.brute_force_calls
        return
    if unit == "calls":
        assert result.calls <= 0.25 * result.brute_force_calls
    else:
        assert result.macs <= 0.25 * result.brute_force_macs * (1 + 1e-9)


@pytest.mark.parametrize("name", ALL)
def test_edge_sized_problems(name: str, paper_weights: Weights) -> None:
    # One candidate; one or two samples: every strategy must still finish and recommend.
    for accuracies, n in (([0.7], 10), ([0.7, 0.6, 0.5], 1), ([0.7, 0.6, 0.5], 2)):
        replay = make_replay(accuracies, n, seed=0)
        for budget in (Budget(0.5), Budget(1.0, "macs"), Budget(1e-9), Budget(1)):
            ev = RecordingEvaluator(replay.evaluator())
            result = select(replay.candidates, ev, paper_weights, strategy=name, budget=budget)
            assert result.recommended in replay.names
            assert len(set(ev.log)) == len(ev.log)
            assert result.stop_reason in KNOWN_STOPS


@pytest.mark.parametrize("name", ALL)
def test_deterministic_per_seed(name: str, small_replay: Replay, paper_weights: Weights) -> None:
    def once(seed: int) -> dict[str, object]:
        return select(
            small_replay.candidates,
            small_replay.evaluator(),
            paper_weights,
            strategy=name,
            budget=Budget(0.3, "macs"),
            seed=seed,
        ).to_dict()

    assert once(7) == once(7)


@pytest.mark.parametrize("name", ALL)
def test_a_reused_instance_repeats_a_fresh_run(name: str, small_replay: Replay) -> None:
    reward = RewardModel(Weights.parse("accuracy=1"), small_replay.candidates)
    strategy = create(name)

    def once(chosen: Strategy) -> list[int]:
        history, _ = run_selection(
            small_replay.candidates,
            small_replay.evaluator(),
            reward,
            chosen,
            Budget(0.3),
            4,
            prune=not chosen.baseline,
        )
        return [int(x) for x in history.pulls]

    first = once(strategy)
    assert once(strategy) == first
    assert once(create(name)) == first


@pytest.mark.parametrize("name", SEARCHING)
def test_finds_a_clear_winner_at_30_percent(name: str, easy_replay: Replay) -> None:
    weights = Weights.parse("accuracy=1")
    best = easy_replay.best(weights)
    assert best == "m1"
    hits = sum(
        select(
            easy_replay.candidates,
            easy_replay.evaluator(),
            weights,
            strategy=name,
            budget=Budget(0.3),
            seed=seed,
        ).recommended
        == best
        for seed in range(20)
    )
    assert hits >= 15, f"{name} found the clear winner in only {hits}/20 runs"


@pytest.mark.parametrize("name", SEARCHING)
def test_finds_a_clear_winner_under_a_mac_budget(name: str) -> None:
    # The winner is also the most expensive model, so MAC-aware allocation must still pay.
    replay = make_replay([0.55, 0.9, 0.6, 0.5], 100, seed=8, mmacs=[100.0, 4000.0, 200.0, 50.0])
    weights = Weights.parse("accuracy=1")
    hits = sum(
        select(
            replay.candidates,
            replay.evaluator(),
            weights,
            strategy=name,
            budget=Budget(0.3, "macs"),
            seed=seed,
        ).recommended
        == "m1"
        for seed in range(10)
    )
    assert hits >= 7, f"{name} found the clear winner in only {hits}/10 runs"


def test_racing_stops_by_itself_when_confident() -> None:
    replay = make_replay([0.9, 0.5, 0.45, 0.4], 1000, seed=1)
    for seed in range(3):
        result = select(
            replay.candidates,
            replay.evaluator(),
            Weights.parse("accuracy=1"),
            strategy="racing",
            budget=Budget(1.0),
            seed=seed,
        )
        assert result.stop_reason == "confident"
        assert result.recommended == "m0"
        assert result.calls < 0.5 * result.brute_force_calls


def test_brute_force_evaluates_everything(small_replay: Replay, paper_weights: Weights) -> None:
    ev = RecordingEvaluator(small_replay.evaluator())
    # Brute force ignores a smaller budget: it is the exact reference.
    result = select(
        small_replay.candidates, ev, paper_weights, strategy="brute_force", budget=Budget(0.1)
    )
    n, k = small_replay.n_samples, len(small_replay.names)
    assert result.calls == n * k == result.brute_force_calls
    assert len(set(ev.log)) == n * k
    assert all(m.status == "exact" for m in result.models)
    assert result.recommended == small_replay.best(paper_weights)
    assert result.savings["calls_fraction"] == 0
    truth = small_replay.true_rewards(paper_weights)
    for m in result.models:
        assert m.reward == pytest.approx(truth[small_replay.names.index(m.name)])


def test_benchmark_evaluates_nothing_and_ranks_by_card_accuracy(paper_weights: Weights) -> None:
    cards = [0.70, 0.81, 0.76, 0.60]
    replay = make_replay(
        [0.9, 0.3, 0.5, 0.6],  # the target disagrees with the cards on purpose
        50,
        cards=cards,
        sizes_mb=[10.0, 10.0, 10.0, 10.0],
        mmacs=[100.0, 100.0, 100.0, 100.0],
    )
    ev = RecordingEvaluator(replay.evaluator())
    result = select(replay.candidates, ev, paper_weights, strategy="benchmark")
    assert ev.log == []
    assert result.calls == 0
    assert result.macs == 0
    assert result.stop_reason == "no_target_evaluation"
    assert [m.name for m in result.models] == ["m1", "m2", "m0", "m3"]
    assert [m.accuracy for m in result.top] == [0.81, 0.76, 0.70]
    assert result.accuracy_source == "model card"
    assert result.savings["calls_fraction"] == 1


def test_benchmark_needs_card_accuracy(small_replay: Replay) -> None:
    cands = [*small_replay.candidates[:-1], Candidate("m5", size_bytes=1e6, macs=1e6)]
    with pytest.raises(ConfigError, match="m5"):
        select(cands, small_replay.evaluator(), Weights.parse("accuracy=1"), strategy="benchmark")


def test_default_is_the_documented_strategy(small_replay: Replay) -> None:
    result = select(small_replay.candidates, small_replay.evaluator(), Weights.parse("accuracy=1"))
    assert result.strategy == DEFAULT
    assert result.budget == {"value": 0.1, "unit": "calls"}


# --- parameters and names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "needle"),
    [
        ("epsilon_greedy", {"epsilon": 0}, "epsilon"),
        ("epsilon_greedy", {"epsilon": 1}, "epsilon"),
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon"),
        ("epsilon_greedy", {"epsilon": -0.1}, "epsilon"),
        ("epsilon_greedy", {"epsilon": float("nan")}, "epsilon"),
        ("epsilon_greedy", {"batch": 0}, "batch"),
        ("epsilon_greedy", {"batch": 2.5}, "batch"),
        ("ucb", {"batch": -1}, "batch"),
        ("ucb", {"exploration": 0}, "exploration"),
        ("thompson", {"batch": True}, "batch"),
        ("top_two_thompson", {"beta": 1.0}, "beta"),
        ("racing", {"delta": 0}, "delta"),
        ("racing", {"growth": 1.0}, "growth"),
        ("racing", {"tolerance": 1.0}, "tolerance"),
        ("ucb", {"colour": "blue"}, "colour"),
        ("sequential_halving", {"batch": 4}, "batch"),
        ("default", {"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_strategy_parameters_are_refused(
    name: str, params: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        create(name, **params)


def test_good_parameters_are_recorded(small_replay: Replay) -> None:
    result = select(
        small_replay.candidates,
        small_replay.evaluator(),
        Weights.parse("accuracy=1"),
        strategy="epsilon_greedy",
        epsilon=0.25,
        batch=3,
    )
    assert result.strategy_params == {"epsilon": 0.25, "batch": 3}


def test_unknown_strategy_lists_the_names() -> None:
    with pytest.raises(ConfigError) as info:
        create("simulated_annealing")
    message = str(info.value)
    assert "'simulated_annealing'" in message
    for name in ALL:
        assert name in message


def test_unknown_strategy_through_the_api(small_replay: Replay) -> None:
    with pytest.raises(ConfigError, match="unknown strategy"):
        select(
            small_replay.candidates,
            small_replay.evaluator(),
            Weights.parse("accuracy=1"),
            strategy="nope",
        )


def test_strategy_rng_is_the_only_randomness(small_replay: Replay) -> None:
    # Global numpy state must not matter.
    def once() -> list[int]:
        np.random.seed(int(np.random.default_rng().integers(1 << 30)))
        reward = RewardModel(Weights.parse("accuracy=1"), small_replay.candidates)
        history, _ = run_selection(
            small_replay.candidates,
            small_replay.evaluator(),
            reward,
            create("epsilon_greedy", epsilon=0.5),
            Budget(0.3),
            9,
        )
        return [int(x) for x in history.pulls]

    assert once() == once()
