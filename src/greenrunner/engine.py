"""The one selection loop: ask the strategy, evaluate, record, prune; until a stop.

The CLI, the study, the web app and distributed executors all run selections through
:func:`run_selection`; none of them re-implements it.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Sequence

import numpy as np

from greenrunner.budget import Budget
from greenrunner.candidates import Candidate, check_unique_names
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import EvaluationError, Evaluator
from greenrunner.evaluation.executors import (
    Executor,
    InProcessExecutor,
    Outcome,
    checked_outcome,
)
from greenrunner.history import History, Status
from greenrunner.reward import RewardModel
from greenrunner.strategies._base import Strategy

log = logging.getLogger(__name__)

ProgressCallback = Callable[[History], None]


def brute_force_cost(candidates: Sequence[Candidate], n_samples: int) -> tuple[int, float | None]:
    """Calls and MACs of evaluating every candidate on every sample (MACs None if unknown)."""
    calls = len(candidates) * n_samples
    if any(c.macs is None for c in candidates):
        return calls, None
    return calls, float(sum(mac_charge(c) for c in candidates)) * n_samples


def mac_charge(candidate: Candidate) -> float:
    """MACs one call of this candidate is charged; at least 1, so no call is free."""
    return max(float(candidate.macs or 0.0), 1.0)


def cost_per_call(candidates: Sequence[Candidate], unit: str) -> np.ndarray:
    if unit == "calls":
        return np.ones(len(candidates))
    missing = [c.name for c in candidates if c.macs is None]
    if missing:
        raise ConfigError(
            f"a MAC budget needs every candidate's MACs, unknown for {', '.join(missing[:5])}; "
            "give them (models.csv column mmacs) or use --budget-unit calls"
        )
    return np.array([mac_charge(c) for c in candidates])


def prune_known_costs(history: History) -> None:
    """Drop candidates that cannot win even if every sample they have not seen is right.

    Uses certain bounds (unseen samples all wrong / all right), so a pruned candidate can
    never be brute force's pick: this saves compute without risking the answer.
    """
    contenders = history.contenders
    if contenders.sum() <= 1:
        return
    low, high = history.accuracy_bounds()
    rm = history.reward
    best_low = float(np.max(rm.reward(low)[contenders]))
    beaten = (rm.reward(high) < best_low - 1e-12) & history.active
    for arm in np.flatnonzero(beaten):
        history.set_status(
            int(arm),
            Status.PRUNED,
            "cannot reach the best lower bound even with every unseen sample right",
        )


def _trim(history: History, pulls: dict[int, int]) -> dict[int, int]:
    """Keep requested pulls of active candidates within their pool and the remaining budget."""
    out: dict[int, int] = {}
    remaining = history.remaining_budget
    active = history.active
    seen = history.pulls
    for arm, count in pulls.items():
        if not (0 <= arm < history.n_arms) or not active[arm] or count <= 0:
            continue
        count = min(int(count), history.n_samples - int(seen[arm]))
        affordable = int(remaining // history.cost_per_call[arm] + 1e-9)
        count = min(count, affordable)
        if count > 0:
            out[arm] = count
            remaining -= count * history.cost_per_call[arm]
    return out


def run_selection(
    candidates: Sequence[Candidate],
    evaluator: Evaluator,
    reward: RewardModel,
    strategy: Strategy,
    budget: Budget,
    seed: int,
    *,
    progress: ProgressCallback | None = None,
    prune: bool = True,
    executor: Executor | None = None,
) -> tuple[History, str]:
    """Run one selection; returns the final history and the stop reason.

    ``executor`` runs each round's evaluations (default: in this process, one after
    another); it never changes the decisions, only where and how parallel they run.
    """
    check_unique_names(candidates)
    n = evaluator.n_samples
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ConfigError(
            f"the evaluator's n_samples must be an integer (the number of target samples); "
            f"got {n!r} from {type(evaluator).__name__}"
        )
    n = int(n)
    if n <= 0:
        raise ConfigError("the target data set has no samples; give at least one labelled sample")
    bf_calls, bf_macs = brute_force_cost(candidates, n)
    limit = budget.limit(bf_calls, bf_macs if bf_macs is not None else float("nan"))
    costs = cost_per_call(candidates, budget.unit)
    # Separate streams, both from the one seed: the sample order and the strategy's choices.
    order_rng, strategy_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    card = np.array(
        [np.nan if c.benchmark_accuracy is None else c.benchmark_accuracy for c in candidates]
    )
    history = History(reward, order_rng.permutation(n), costs, limit, card)
    strategy.start(history, strategy_rng)
    stop = _loop(
        candidates, evaluator, strategy, history, progress, prune, executor or InProcessExecutor()
    )
    log.info("selection stopped (%s) after %d calls", stop, history.calls)
    return history, stop


def _loop(
    candidates: Sequence[Candidate],
    evaluator: Evaluator,
    strategy: Strategy,
    history: History,
    progress: ProgressCallback | None,
    prune: bool,
    executor: Executor,
) -> str:
    while True:
        if prune:
            prune_known_costs(history)
        if not history.active.any():
            return "exhausted"
        if history.reward.w_acc == 0:
            return "decided"  # accuracy has no weight: the known costs decide alone
        # A lone contender left by failures rather than by evidence must still show it runs.
        untried = (history.status == Status.FAILED.value).any() and not history.pulls[
            history.contenders
        ].any()
        if prune and history.contenders.sum() == 1 and not untried:
            return "decided"
        if history.remaining_budget < float(np.min(history.cost_per_call[history.active])):
            return "budget"
        decision = strategy.ask(history)
        for arm, reason in decision.eliminate.items():
            if history.active[arm]:
                history.set_status(arm, Status.ELIMINATED, reason)
        if decision.stop is not None:
            return decision.stop
        pulls = _trim(history, dict(decision.pulls))
        if not pulls:
            if not decision.eliminate:
                return "budget" if decision.pulls else "strategy_done"
            continue
        history.rounds += 1
        # A pull's sample ids depend only on its own model's prefix, so the whole round can
        # be handed out at once and recorded afterwards in the round's order.
        arms = list(pulls)
        work = [(candidates[arm], history.next_samples(arm, pulls[arm])) for arm in arms]
        for arm, outcome in zip(arms, executor.run(evaluator, work), strict=True):
            _record(candidates[arm], history, arm, pulls[arm], outcome)
        if progress is not None:
            progress(history)


def _record(candidate: Candidate, history: History, arm: int, count: int, outcome: Outcome) -> None:
    # Validated here too, whatever executor ran the pull: a probability or NaN cast to
    # bool would count as correct.
    outcome = checked_outcome(outcome, count, candidate.name)
    if isinstance(outcome, EvaluationError):
        log.warning("candidate %s failed: %s", candidate.name, outcome)
        history.set_status(arm, Status.FAILED, str(outcome))
        return
    history.record(arm, outcome)
