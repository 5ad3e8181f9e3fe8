"""Engine invariants that must hold for every strategy, plus pruning, failures and stopping."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from greenrunner.api import select
from greenrunner.budget import Budget, BudgetUnit
from greenrunner.candidates import Candidate
from greenrunner.engine import brute_force_cost, cost_per_call, run_selection
from greenrunner.errors import ConfigError
from greenrunner.evaluation import ReplayEvaluator
from greenrunner.history import History, Status
from greenrunner.result import ranking, recommend
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import create, names
from tests._helpers import (
    KNOWN_STOPS,
    FailingEvaluator,
    RecordingEvaluator,
    Replay,
    make_replay,
    run,
)

# Every strategy that evaluates something ("benchmark" evaluates nothing by design).
EVALUATING = [n for n in names() if n != "benchmark"]
SEARCHING = [n for n in names() if not create(n).baseline]

BUDGETS = [
    Budget(0.3, "calls"),
    Budget(0.3, "macs"),
    Budget(50, "calls"),
    Budget(2e10, "macs"),
    Budget(1.0, "calls"),
]
BUDGET_IDS = ["calls-0.3", "macs-0.3", "calls-50", "macs-2e10", "calls-1.0"]


def _check_invariants(
    replay: Replay, history: History, stop: str, log: list[tuple[str, int]], budget: Budget
) -> None:
    # No (model, sample) pair is evaluated twice.
    assert len(set(log)) == len(log)
    # Every model's samples are exactly a prefix of the run's one order, in that order.
    by_model: dict[str, list[int]] = defaultdict(list)
    for name, sample in log:
        by_model[name].append(sample)
    order = history.order.tolist()
    assert sorted(order) == list(range(replay.n_samples))
    for k, name in enumerate(replay.names):
        seen = by_model.get(name, [])
        assert seen == order[: len(seen)]
        assert len(seen) == int(history.pulls[k])
        assert int(history.successes[k]) == int(replay.correct[seen, k].sum())
    assert history.calls == len(log)
    # The budget is never exceeded, counted independently of the engine's own books.
    bf_calls, bf_macs = brute_force_cost(replay.candidates, replay.n_samples)
    assert bf_macs is not None
    limit = budget.value * (bf_calls if budget.unit == "calls" else bf_macs)
    if not budget.is_fraction:
        limit = budget.value
    unit_cost = cost_per_call(replay.candidates, budget.unit)
    spent = sum(unit_cost[replay.names.index(name)] for name, _ in log)
    assert spent <= limit * (1 + 1e-9)
    assert history.spent == pytest.approx(spent)
    assert stop in KNOWN_STOPS


@pytest.mark.parametrize("budget", BUDGETS, ids=BUDGET_IDS)
@pytest.mark.parametrize("strategy", EVALUATING)
def test_engine_invariants(strategy: str, budget: Budget, small_replay: Replay) -> None:
    for weights in (Weights.parse("accuracy=1"), Weights.parse("accuracy=1,size=0.3")):
        history, stop, ev = run(small_replay, strategy, budget, seed=3, weights=weights)
        _check_invariants(small_replay, history, stop, ev.log, budget)
        assert history.calls > 0


@pytest.mark.parametrize("strategy", EVALUATING)
def test_same_seed_same_run_and_different_seeds_differ(strategy: str, small_replay: Replay) -> None:
    budget = Budget(0.3)
    h1, stop1, ev1 = run(small_replay, strategy, budget, seed=11)
    h2, stop2, ev2 = run(small_replay, strategy, budget, seed=11)
    assert ev1.log == ev2.log
    assert stop1 == stop2
    assert h1.pulls.tolist() == h2.pulls.tolist()
    assert h1.successes.tolist() == h2.successes.tolist()
    assert h1.status.tolist() == h2.status.tolist()
    assert recommend(h1) == recommend(h2)
    others = [run(small_replay, strategy, budget, seed=s)[2].log for s in (12, 13, 14)]
    assert any(log != ev1.log for log in others)


def test_sample_order_depends_only_on_the_seed(small_replay: Replay) -> None:
    orders = {
        name: run(small_replay, name, Budget(0.2), seed=5)[0].order.tolist()
        for name in ("ucb", "racing", "brute_force")
    }
    assert len({tuple(o) for o in orders.values()}) == 1
    other = run(small_replay, "ucb", Budget(0.2), seed=6)[0].order.tolist()
    assert other != orders["ucb"]


def test_history_views_are_read_only(small_replay: Replay) -> None:
    history, _, _ = run(small_replay, "default", Budget(0.3))
    for view in (history.pulls, history.successes, history.order, history.outcomes):
        with pytest.raises(ValueError):
            view[0] = 0


# --- recommendation -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", EVALUATING)
def test_recommendation_is_the_best_estimate_among_contenders(
    strategy: str, small_replay: Replay, paper_weights: Weights
) -> None:
    for seed in range(3):
        history, _, _ = run(small_replay, strategy, Budget(0.25), seed=seed, weights=paper_weights)
        pick = recommend(history)
        est = history.estimated_reward()
        eligible = history.contenders & (history.pulls > 0)
        assert eligible[pick]
        assert est[pick] == pytest.approx(float(np.max(est[eligible])))


def _hand_history(n: int = 100) -> History:
    cands = [Candidate("many"), Candidate("few"), Candidate("dropped")]
    rm = RewardModel(Weights.parse("accuracy=1"), cands)
    return History(rm, np.arange(n), np.ones(3), budget_limit=10_000)


def test_recommendation_is_by_reward_not_by_pull_count() -> None:
    h = _hand_history()
    h.record(0, np.arange(80) % 10 < 6)  # 80 pulls at 0.6
    h.record(1, np.arange(10) < 8)  # 10 pulls at 0.8
    h.record(2, np.ones(5, dtype=bool))  # 5 pulls at 1.0, but eliminated
    h.set_status(2, Status.ELIMINATED, "test")
    assert recommend(h) == 1
    assert ranking(h).tolist() == [1, 0, 2]


def test_unevaluated_candidates_rank_after_evaluated_ones() -> None:
    h = _hand_history()
    h.record(0, np.zeros(3, dtype=bool))  # evaluated, accuracy 0
    assert ranking(h).tolist()[0] == 0


def test_accuracy_bounds_are_certain() -> None:
    h = _hand_history(10)
    h.record(0, np.array([True, False, True, True]))
    low, high = h.accuracy_bounds()
    assert low[0] == pytest.approx(0.3)
    assert high[0] == pytest.approx(0.9)
    assert (low[1], high[1]) == (0.0, 1.0)


# --- known-cost pruning -------------------------------------------------------------------


def test_pruning_never_drops_brute_force_pick() -> None:
    rng = np.random.default_rng(2024)
    weight_options = [
        "accuracy=1",
        "accuracy=0.63,size=0.25,complexity=0.21",
        "accuracy=0.3,size=1",
        "accuracy=0.5,complexity=0.5",
        "accuracy=0.2,size=0.4,complexity=0.4",
    ]
    strategies = SEARCHING
    pruned_total = 0
    for case in range(60):
        k = int(rng.integers(2, 8))
        n = int(rng.integers(8, 50))
        replay = make_replay(
            rng.uniform(0.2, 0.95, size=k).tolist(),
            n,
            seed=case,
            sizes_mb=np.exp(rng.uniform(0, 6, size=k)).tolist(),
            mmacs=np.exp(rng.uniform(2, 9, size=k)).tolist(),
        )
        weights = Weights.parse(weight_options[case % len(weight_options)])
        unit: BudgetUnit = "calls" if rng.random() < 0.5 else "macs"
        budget = Budget(float(rng.choice([0.2, 0.5, 1.0])), unit)
        strategy = strategies[case % len(strategies)]
        history, _, _ = run(replay, strategy, budget, seed=case, weights=weights)
        truth = replay.true_rewards(weights)
        best = float(truth.max())
        status = history.status
        for j in range(k):
            if status[j] == Status.PRUNED.value:
                pruned_total += 1
                assert truth[j] < best, (case, strategy, replay.names[j])
    assert pruned_total > 0  # the property was exercised


@pytest.mark.parametrize("strategy", SEARCHING)
def test_a_model_that_can_never_win_is_never_evaluated(strategy: str) -> None:
    replay = make_replay([0.7, 0.6, 0.65, 0.99], 60, seed=4, sizes_mb=[10.0, 11.0, 12.0, 1000.0])
    weights = Weights.parse("accuracy=0.1,size=1")
    history, _, ev = run(replay, strategy, Budget(0.5), weights=weights)
    assert int(history.pulls[3]) == 0
    assert history.status[3] == Status.PRUNED.value
    assert all(name != "m3" for name, _ in ev.log)
    assert history.calls > 0  # the others were worth evaluating


@pytest.mark.parametrize("strategy", names())
def test_accuracy_weight_zero_evaluates_nothing_and_cheapest_wins(strategy: str) -> None:
    replay = make_replay(
        [0.9, 0.5, 0.7], 40, sizes_mb=[50.0, 5.0, 20.0], mmacs=[900.0, 80.0, 300.0]
    )
    ev = RecordingEvaluator(replay.evaluator())
    result = select(
        replay.candidates,
        ev,
        Weights.parse("accuracy=0,size=0.5,complexity=0.5"),
        strategy=strategy,
        budget=Budget(0.5),
    )
    assert ev.log == []
    assert result.calls == 0
    assert result.recommended == "m1"
    assert result.stop_reason in KNOWN_STOPS


def test_without_pruning_everything_stays_active(small_replay: Replay) -> None:
    reward = RewardModel(Weights.parse("accuracy=0.1,size=1"), small_replay.candidates)
    history, _ = run_selection(
        small_replay.candidates,
        small_replay.evaluator(),
        reward,
        create("uniform"),
        Budget(0.2),
        0,
        prune=False,
    )
    assert Status.PRUNED.value not in history.status.tolist()


# --- exact models, failures ---------------------------------------------------------------


def test_history_marks_a_model_exact_once_it_has_seen_the_pool() -> None:
    h = _hand_history(10)
    h.record(0, np.ones(6, dtype=bool))
    assert h.status[0] == Status.ACTIVE.value
    h.record(0, np.zeros(4, dtype=bool))
    assert h.status[0] == Status.EXACT.value
    assert not h.active[0]
    assert h.contenders[0]
    assert h.accuracy_bounds()[0][0] == h.accuracy_bounds()[1][0] == pytest.approx(0.6)


@pytest.mark.parametrize("strategy", ["brute_force", "uniform"])
def test_a_model_seen_on_the_whole_pool_is_exact(strategy: str) -> None:
    # Close accuracies on a tiny pool, so uniform runs some models to the end.
    replay = make_replay([0.6, 0.6, 0.5, 0.5], 8, seed=0)
    result = select(
        replay.candidates,
        replay.evaluator(),
        Weights.parse("accuracy=1"),
        strategy=strategy,
        budget=Budget(1.0),
    )
    exact = [m for m in result.models if m.pulls == replay.n_samples]
    assert exact
    for m in exact:
        assert m.status == "exact"
        assert m.exact
        assert m.ci_low == m.ci_high == m.accuracy
        assert m.accuracy == pytest.approx(replay.correct[:, replay.names.index(m.name)].mean())


@pytest.mark.parametrize("strategy", EVALUATING)
def test_a_failing_model_is_marked_failed_and_the_run_goes_on(
    strategy: str, easy_replay: Replay
) -> None:
    # m1 is the true best; m0 fails. The run must still find m1.
    ev = FailingEvaluator(easy_replay.evaluator(), frozenset({"m0"}))
    result = select(
        easy_replay.candidates,
        ev,
        Weights.parse("accuracy=1"),
        strategy=strategy,
        budget=Budget(0.5),
        seed=1,
    )
    failed = {m.name: m for m in result.models}["m0"]
    assert failed.status == "failed"
    assert "could not be loaded" in failed.note
    assert failed.pulls == 0
    assert result.recommended != "m0"
    assert {name for name, _ in ev.log} >= {"m1"}
    assert result.calls == len(ev.log)


def test_a_wrong_shaped_answer_marks_the_model_failed(easy_replay: Replay) -> None:
    ev = FailingEvaluator(easy_replay.evaluator(), frozenset({"m2"}), wrong_shape=True)
    result = select(easy_replay.candidates, ev, Weights.parse("accuracy=1"), strategy="uniform")
    m2 = {m.name: m for m in result.models}["m2"]
    assert m2.status == "failed"
    assert "shape" in m2.note
    assert m2.pulls == 0


# --- configuration errors at the engine boundary -------------------------------------------


def test_mac_budget_needs_every_models_macs(small_replay: Replay) -> None:
    cands = [*small_replay.candidates[:-1], Candidate("m5", size_bytes=1e6)]
    with pytest.raises(ConfigError, match="m5"):
        select(
            cands, small_replay.evaluator(), Weights.parse("accuracy=1"), budget=Budget(0.2, "macs")
        )


def test_duplicate_candidate_names_are_refused(small_replay: Replay) -> None:
    cands = [*small_replay.candidates[:-1], Candidate("m0")]
    ev = ReplayEvaluator(small_replay.correct, [f"x{i}" for i in range(6)])
    with pytest.raises(ConfigError, match="m0"):
        run_selection(
            cands,
            ev,
            RewardModel(Weights.parse("accuracy=1"), cands),
            create("ucb"),
            Budget(0.2),
            0,
        )


@pytest.mark.parametrize("seed", [-1, True, 1.5, "0"])
def test_bad_seed_is_refused(seed: object, small_replay: Replay) -> None:
    with pytest.raises(ConfigError, match="seed"):
        select(
            small_replay.candidates,
            small_replay.evaluator(),
            Weights.parse("accuracy=1"),
            seed=seed,  # type: ignore[arg-type]
        )


def test_a_tiny_absolute_budget_still_recommends_an_evaluated_model(
    small_replay: Replay,
) -> None:
    result = select(
        small_replay.candidates,
        small_replay.evaluator(),
        Weights.parse("accuracy=1"),
        strategy="ucb",
        budget=Budget(2),
    )
    assert result.calls <= 2
    assert result.top[0].pulls > 0
    assert result.stop_reason == "budget"


def test_an_absolute_budget_above_brute_force_is_capped_by_the_pool(small_replay: Replay) -> None:
    history, stop, _ = run(small_replay, "epsilon_greedy", Budget(10**9))
    assert history.calls <= len(small_replay.names) * small_replay.n_samples
    assert stop in KNOWN_STOPS


def test_progress_callback_sees_every_round(small_replay: Replay) -> None:
    seen: list[int] = []
    select(
        small_replay.candidates,
        small_replay.evaluator(),
        Weights.parse("accuracy=1"),
        strategy="uniform",
        budget=Budget(0.3),
        progress=lambda h: seen.append(h.calls),
    )
    assert seen
    assert seen == sorted(seen)


def test_brute_force_under_a_mac_budget_with_a_zero_mac_model() -> None:
    replay = make_replay([0.7, 0.6, 0.5], 20, mmacs=[0.0, 1.0, 2.0])
    result = select(
        replay.candidates,
        replay.evaluator(),
        Weights.parse("accuracy=1"),
        strategy="brute_force",
        budget=Budget(1.0, "macs"),
    )
    assert all(m.status == "exact" for m in result.models)
    assert result.calls == result.brute_force_calls


@pytest.mark.parametrize("strategy", ["default", "epsilon_greedy"])
def test_when_every_model_fails_nothing_failed_is_recommended(strategy: str) -> None:
    from greenrunner.errors import GreenRunnerError

    replay = make_replay([0.7, 0.6, 0.5], 20)
    ev = FailingEvaluator(replay.evaluator(), frozenset(replay.names))
    try:
        result = select(
            replay.candidates,
            ev,
            Weights.parse("accuracy=1"),
            strategy=strategy,
            budget=Budget(0.5),
        )
    except GreenRunnerError:
        return
    assert result.top[0].status != "failed"
    assert result.top[0].pulls > 0
