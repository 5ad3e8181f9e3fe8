"""The Python API: one call from candidates, an evaluator and weights to a result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.energy import EnergyRun, EnergySettings, TrackerFactory
from greenrunner.engine import ProgressCallback, run_selection
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import CachingEvaluator, EvaluationError, Evaluator
from greenrunner.result import SelectionResult, build_result
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import create
from greenrunner.strategies.baselines import Benchmark, BruteForce

if TYPE_CHECKING:
    from greenrunner.datasets.base import TargetDataset
    from greenrunner.evaluation.executors import Executor
    from greenrunner.evaluation.inference import PreparedModels, ProgressFn
    from greenrunner.repositories.models import ModelRepository


def select(
    candidates: Sequence[Candidate],
    evaluator: Evaluator,
    weights: Weights,
    *,
    strategy: str = "default",
    budget: Budget | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    energy: EnergySettings | None = None,
    energy_tracker: TrackerFactory | None = None,
    executor: Executor | None = None,
    **params: Any,
) -> SelectionResult:
    """Select the best candidate for ``weights`` on the evaluator's target samples.

    ``budget`` defaults to 10% of brute force's calls. ``params`` go to the strategy
    (for example ``epsilon=0.2`` for ``epsilon_greedy``).

    ``energy`` says whether and where to measure the run's energy (default: measure real
    inference when CodeCarbon is installed); ``energy_tracker`` replaces CodeCarbon's
    offline tracker (tests inject fakes).

    ``executor`` runs each round's evaluations (default: in this process; see
    :mod:`greenrunner.evaluation.executors`); the result is the same on any executor. The
    caller closes it.
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
    meter = EnergyRun(energy or EnergySettings(), evaluator, energy_tracker)
    meter.start()
    try:
        history, stop = run_selection(
            candidates,
            meter.wrap(evaluator),
            reward,
            chosen,
            budget,
            seed,
            progress=progress,
            prune=not isinstance(chosen, BruteForce | Benchmark),
            executor=executor,
        )
    finally:
        meter.stop()
    if not history.contenders.any():
        reasons = "; ".join(
            f"{candidates[k].name}: {why}" for k, why in sorted(history.reasons.items())
        )
        raise EvaluationError(
            f"every candidate model failed to evaluate, so none can be recommended ({reasons})"
        )
    result = build_result(
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
    if isinstance(evaluator, CachingEvaluator):
        result = replace(result, cache=evaluator.cache_stats())
    report = meter.report(
        calls=result.calls,
        macs=result.macs,
        brute_force_macs=result.brute_force_macs,
        cache=result.cache,
    )
    return replace(result, energy=report, energy_note=meter.note)


def open_real(
    models: str | Path,
    data: str | Path,
    *,
    label_map: str | Path | None = None,
    restrict: bool = False,
    trust: bool = False,
    use_cache: bool = True,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
) -> tuple[ModelRepository, TargetDataset, PreparedModels]:
    """Open a model repository and a target dataset, check them, load and measure the models.

    ``label_map`` is a mapping file (target class -> model classes) for one-to-many cases;
    ``restrict`` limits each model's scores to the mapped classes before the argmax;
    ``trust`` allows pickle-based model files. Everything the user can get wrong is checked
    before any inference is spent.
    """
    from greenrunner.datasets import open_dataset
    from greenrunner.datasets.labels import load_mapping_file, resolve_label_map
    from greenrunner.evaluation.cache import PredictionCache
    from greenrunner.evaluation.inference import prepare_models
    from greenrunner.repositories.models import open_models

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer; got {batch_size!r}")
    repo = open_models(models)
    dataset = open_dataset(data)
    mapping = load_mapping_file(resolve_label_map(label_map)) if label_map is not None else None
    specs = [replace(s, trust=True) for s in repo.specs] if trust else list(repo.specs)
    prepared = prepare_models(
        specs,
        dataset,
        mapping=mapping,
        restrict=restrict,
        cache=PredictionCache() if use_cache else None,
        batch_size=batch_size,
        progress=progress,
    )
    if not prepared.candidates:
        reasons = "; ".join(f"{k}: {v}" for k, v in prepared.unavailable.items())
        raise EvaluationError(f"no model could be loaded ({reasons})")
    return repo, dataset, prepared
