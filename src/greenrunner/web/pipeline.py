"""One experiment's run, as the CLI's ``run`` does it: open the source, fit the staged
weights to the candidates, select, and keep the staging record with the result."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.errors import DataError
from greenrunner.reasoning.staging import StagingRecord, fit_to_candidates
from greenrunner.reward import RewardModel, Weights
from greenrunner.web.db import Database, DatasetRow, ExperimentRow, RepositoryRow

if TYPE_CHECKING:
    from greenrunner.evaluation.base import Evaluator
    from greenrunner.web.runner import ProgressWriter
    from greenrunner.web.settings import WebSettings


@dataclass(frozen=True)
class Job:
    """What a run needs, read once from the database at its start."""

    kind: str
    repository: str
    repository_path: str
    description: str
    dataset_path: str | None
    strategy: str
    params: dict[str, Any]
    budget: Budget
    seed: int
    weights: Weights
    decision: str
    suggestion: dict[str, Any] | None


def load_job(db: Database, experiment_id: int) -> Job:
    with db.session() as s:
        row = s.get(ExperimentRow, experiment_id)
        if row is None:
            raise DataError(f"experiment {experiment_id} was deleted")
        repo = s.get(RepositoryRow, row.repository_id)
        data = s.get(DatasetRow, row.dataset_id) if row.dataset_id else None
        if repo is None:
            raise DataError(f"repository {row.repository_id!r} no longer exists")
        return Job(
            kind=repo.kind,
            repository=repo.name,
            repository_path=repo.path,
            description=repo.description,
            dataset_path=data.path if data else None,
            strategy=row.strategy,
            params=dict(row.params or {}),
            budget=Budget(row.budget, row.budget_unit),  # type: ignore[arg-type]
            seed=row.seed,
            weights=Weights(row.weights),
            decision=row.decision,
            suggestion=row.suggestion,
        )


def execute(
    db: Database, settings: WebSettings, experiment_id: int, writer: ProgressWriter
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The result (``SelectionResult.to_dict()``) and the summary (source, note,
    benchmark pick); raises GreenRunnerError for anything the user can fix. A web run
    downloads nothing: torchvision weights load only from the torch cache."""
    from greenrunner.adapters.torchvision import cached_only

    with cached_only():
        return _execute(db, settings, experiment_id, writer)


def _execute(
    db: Database, settings: WebSettings, experiment_id: int, writer: ProgressWriter
) -> tuple[dict[str, Any], dict[str, Any]]:
    from greenrunner.api import select

    job = load_job(db, experiment_id)
    writer.phase("preparing")
    unavailable: dict[str, str] = {}
    cache = None
    evaluator: Evaluator
    if job.kind == "replay":
        from greenrunner.repositories.replay import load_replay

        replay = load_replay(job.repository_path)
        candidates: list[Candidate] = list(replay.candidates)
        evaluator = replay.evaluator
        source = f"replay {replay.name}"
    else:
        models, data = job.repository_path, job.dataset_path
        if job.kind == "bundled-real":
            from greenrunner.demo.build import ensure_demo

            writer.phase("building the demo", "training the digit zoo once (about a minute)")
            folder = ensure_demo(progress=False)
            models, data = str(folder), data or str(folder / "target")
        if data is None:
            raise DataError(f"repository {job.repository} needs a target dataset")
        writer.phase("loading models")
        _, dataset, prepared = _open(models, data, settings, writer)
        candidates, evaluator, unavailable = (
            prepared.candidates,
            prepared.evaluator,
            prepared.unavailable,
        )
        cache = prepared.evaluator.cache
        source = f"models {job.repository} on {dataset.name} ({len(dataset)} samples)"
    try:
        weights, notes = fit_to_candidates(job.weights, candidates)
        writer.names, writer.unit = [c.name for c in candidates], job.budget.unit
        writer.phase("selecting")
        result = select(
            candidates,
            evaluator,
            weights,
            strategy=job.strategy,
            budget=job.budget,
            seed=job.seed,
            progress=writer,
            **job.params,
        )
        writer.flush()
    finally:
        if cache is not None:
            cache.close()
    staging = StagingRecord(None, weights, job.decision, notes).to_dict()  # type: ignore[arg-type]  # decision checked there
    staging["suggestion"] = job.suggestion
    result = replace(result.with_unavailable(unavailable), staging=staging)
    summary = {
        "source": source,
        "note": job.description,
        "benchmark": benchmark_pick(candidates, weights),
    }
    return result.to_dict(), summary


def _open(models: str, data: str, settings: WebSettings, writer: ProgressWriter) -> Any:
    from greenrunner.api import open_real

    # The operator's --allow-builder entries admitted the upload; the run's loader must
    # admit the same builders (a package from site-packages is not the user's own code).
    return open_real(
        Path(models),
        Path(data),
        use_cache=settings.use_cache,
        progress=writer.loading,
        allow_builders=settings.builders,
    )


def benchmark_pick(candidates: list[Candidate], weights: Weights) -> dict[str, Any] | None:
    """The model the benchmark approach picks: Equation 1 with model-card accuracy, at no
    evaluation cost; None when no candidate has a card accuracy."""
    card = np.array(
        [np.nan if c.benchmark_accuracy is None else c.benchmark_accuracy for c in candidates]
    )
    if np.isnan(card).all():
        return None
    known = RewardModel(weights, candidates).reward(np.nan_to_num(card, nan=0.0))
    rewards = np.where(np.isnan(card), -np.inf, known)
    best = int(np.argmax(rewards))
    return {
        "name": candidates[best].name,
        "card_accuracy": float(card[best]),
        "card_reward": float(rewards[best]),
        "missing_cards": int(np.isnan(card).sum()),
    }
