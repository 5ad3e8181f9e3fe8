"""The Python API: one call from candidates, an evaluator and weights to a result."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
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
    weights: Weights | Mapping[str, float] | str,
    *,
    strategy: str = "default",
    budget: Budget | float | str | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    energy: EnergySettings | None = None,
    energy_tracker: TrackerFactory | None = None,
    executor: Executor | None = None,
    **params: Any,
) -> SelectionResult:
    """Select the best candidate for ``weights`` on the evaluator's target samples.

    ``weights``: :class:`Weights`, a mapping (``{"accuracy": 0.63, "size": 0.25}``) or the
    CLI's text (``"accuracy=0.63,size=0.25"``). ``budget``: a :class:`Budget`, a number
    (``Budget(value)``: a fraction of brute force's calls in (0, 1], or a number of calls)
    or the CLI's text (``"20%"``); default 10% of brute force's calls. ``params`` go to the
    strategy (for example ``epsilon=0.2`` for ``epsilon_greedy``). Anything else, and an
    evaluator that returns anything but one bool (or 0/1) per sample, is a ConfigError or
    EvaluationError naming the bad value, never a cast.

    ``energy`` says whether and where to measure the run's energy (default: measure real
    inference when CodeCarbon is installed); ``energy_tracker`` replaces CodeCarbon's
    offline tracker (tests inject fakes).

    ``executor`` runs each round's evaluations (default: in this process; see
    :mod:`greenrunner.evaluation.executors`); the result is the same on any executor. The
    caller closes it.
    """
    _check_inputs(candidates, evaluator, strategy, progress, energy, executor)
    weights = Weights.coerce(weights)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    seed = int(seed)
    budget = None if budget is None else Budget.coerce(budget)
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


def _check_inputs(
    candidates: object,
    evaluator: object,
    strategy: object,
    progress: object,
    energy: object,
    executor: object,
) -> None:
    """Refuse arguments of the wrong kind with what was expected, before any work: a raw
    AttributeError deep in the engine says neither."""
    if isinstance(candidates, str | bytes) or not isinstance(candidates, Sequence):
        raise ConfigError(
            "candidates must be a list of Candidate (e.g. load_replay(...).candidates); "
            f"got {type(candidates).__name__}"
        )
    if not candidates:
        raise ConfigError("candidates is empty; give at least one Candidate")
    for i, c in enumerate(candidates):
        if not isinstance(c, Candidate):
            raise ConfigError(f"candidates[{i}] must be a Candidate; got {c!r}")
    if not isinstance(evaluator, Evaluator):
        raise ConfigError(
            "evaluator must have an n_samples property and an evaluate(candidate, sample_ids) "
            f"method returning one bool per sample (e.g. ReplayEvaluator); got {evaluator!r}"
        )
    if not isinstance(strategy, str):
        raise ConfigError(f"strategy must be a strategy name such as 'thompson'; got {strategy!r}")
    if progress is not None and not callable(progress):
        raise ConfigError(f"progress must be a function of the history, or None; got {progress!r}")
    if energy is not None and not isinstance(energy, EnergySettings):
        raise ConfigError(
            "energy must be EnergySettings (e.g. EnergySettings(mode='off')) or None; "
            f"got {energy!r}"
        )
    from greenrunner.evaluation.executors import Executor

    if executor is not None and not isinstance(executor, Executor):
        raise ConfigError(
            "executor must have run(evaluator, pulls) and close() (e.g. "
            f"create_executor('ray')), or be None; got {executor!r}"
        )


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
    max_image_pixels: int | None = None,
    allow_builders: Sequence[str] = (),
) -> tuple[ModelRepository, TargetDataset, PreparedModels]:
    """Open a model repository and a target dataset, check them, load and measure the models.

    ``label_map`` is a mapping file (target class -> model classes) for one-to-many cases;
    ``restrict`` limits each model's scores to the mapped classes before the argmax;
    ``trust`` allows pickle-based model files and any builder (both can run any code);
    ``max_image_pixels`` bounds each image (None: the default, 64 MP). A manifest's
    builders must be torchvision's, the demo zoo's, your own code (outside site-packages)
    or in ``allow_builders`` (``"module:name"`` or ``"module:*"``), checked before any
    module is imported (see :class:`greenrunner.adapters.builders.BuilderPolicy`).
    Everything the user can get wrong is checked before any inference is spent.
    """
    from greenrunner.adapters.builders import BuilderPolicy
    from greenrunner.datasets import open_dataset
    from greenrunner.datasets._images import DEFAULT_MAX_IMAGE_PIXELS
    from greenrunner.datasets.labels import load_mapping_file, resolve_label_map
    from greenrunner.evaluation.cache import PredictionCache
    from greenrunner.evaluation.inference import prepare_models
    from greenrunner.repositories.models import open_models

    _check_paths(models=models, data=data, label_map=label_map)
    _check_flags(restrict=restrict, trust=trust, use_cache=use_cache)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer; got {batch_size!r}")
    if progress is not None and not callable(progress):
        raise ConfigError(
            f"progress must be a function (stage, done, total, detail) or None; got {progress!r}"
        )
    policy = BuilderPolicy(_builder_entries(allow_builders))
    repo = open_models(models)
    specs = [replace(s, trust=True) for s in repo.specs] if trust else list(repo.specs)
    policy.check_specs(specs)  # before any model's module is imported
    limit = DEFAULT_MAX_IMAGE_PIXELS if max_image_pixels is None else max_image_pixels
    dataset = open_dataset(data, max_image_pixels=limit)
    mapping = load_mapping_file(resolve_label_map(label_map)) if label_map is not None else None
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


def _check_paths(**paths: object) -> None:
    """Paths the caller gives: text or a Path (None only for the optional label map)."""
    for name, value in paths.items():
        if value is None and name == "label_map":
            continue
        if not isinstance(value, str | Path) or (isinstance(value, str) and not value.strip()):
            raise ConfigError(
                f"{name} must be a path (str or pathlib.Path); got {value!r} "
                f"({type(value).__name__})"
            )


def _check_flags(**flags: object) -> None:
    """Options that are True or False: a bool, never a truthy string ("false") or 1."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(
                f"{name} must be True or False; got {value!r} ({type(value).__name__})"
            )


def _builder_entries(entries: object) -> tuple[str, ...]:
    """``allow_builders``: a list of "module:name" / "module:*" strings."""
    if isinstance(entries, str | bytes) or not isinstance(entries, Sequence | frozenset | set):
        raise ConfigError(
            f"allow_builders must be a list of 'module:name' or 'module:*'; got {entries!r}"
        )
    for entry in entries:
        if not isinstance(entry, str):
            raise ConfigError(f"allow_builders entries must be strings; got {entry!r}")
    return tuple(entries)
