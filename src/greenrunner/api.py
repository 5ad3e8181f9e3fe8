"""The Python API: one call from candidates, an evaluator and weights to a result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.engine import ProgressCallback, run_selection
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import EvaluationError, Evaluator
from greenrunner.result import SelectionResult, build_result
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import create
from greenrunner.strategies.baselines import Benchmark, BruteForce


def select(
    candidates: Sequence[Candidate],
    evaluator: Evaluator,
    weights: Weights,
    *,
    strategy: str = "default",
    budget: Budget | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    **params: Any,
) -> SelectionResult:
    """Select the best candidate for ``weights`` on the evaluator's target samples.

    ``budget`` defaults to 10% of brute force's calls. ``params`` go to the strategy
    (for example ``epsilon=0.2`` for ``epsilon_greedy``).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    chosen = create(strategy, **params)
    if isinstance(chosen, BruteForce):
        budget = Budget(1.0, budget.unit if budget else "calls")
    budget = budget or Budget(0.1)
    if isinstance(chosen, Benchmark):
        missing = [c.name for c in candidates if c.benchmark_accuracy is None]
        if missing:
            raise ConfigError(
                "the benchmark baseline needs every model's card accuracy, unknown for "
                f"{', '.join(missing[:5])}; add benchmark_accuracy to models.csv"
            )
    reward = RewardModel(weights, candidates)
    history, stop = run_selection(
        candidates,
        evaluator,
        reward,
        chosen,
        budget,
        seed,
        progress=progress,
        prune=not isinstance(chosen, BruteForce | Benchmark),
    )
    if not history.contenders.any():
        reasons = "; ".join(
            f"{candidates[k].name}: {why}" for k, why in sorted(history.reasons.items())
        )
        raise EvaluationError(
            f"every candidate model failed to evaluate, so none can be recommended ({reasons})"
        )
    return build_result(
        candidates,
        history,
        strategy=chosen.name,
        strategy_params=chosen.params(),
        seed=seed,
        budget=budget,
        stop_reason=stop,
        card_accuracy=isinstance(chosen, Benchmark),
        estimate=chosen.estimate(history),
    )
