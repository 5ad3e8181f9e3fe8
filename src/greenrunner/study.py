"""The study: how often does each strategy find brute force's pick, at what cost?

Each (strategy, budget) pair runs ``repeats`` times with different seeds on the same
replay; every run is scored against brute force on the full pool, which a replay knows
exactly. Runs go to worker processes (one per core by default).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.engine import brute_force_cost, mac_charge, run_selection
from greenrunner.errors import ConfigError
from greenrunner.evaluation.replay import ReplayEvaluator
from greenrunner.result import recommend
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import create
from greenrunner.strategies.baselines import Benchmark, BruteForce


@dataclass(frozen=True)
class StudyRow:
    strategy: str
    budget: float
    budget_unit: str
    repeats: int
    p_best: float
    p_eps: float
    eps: float
    mean_regret: float
    mean_calls_fraction: float
    mean_macs_fraction: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Job:
    candidates: tuple[Candidate, ...]
    correct: np.ndarray
    weights: Weights
    strategy: str
    budget: Budget
    seeds: tuple[int, ...]
    eps: float


def true_rewards(
    candidates: Sequence[Candidate], correct: np.ndarray, weights: Weights
) -> np.ndarray:
    """Every candidate's reward with its exact accuracy on the whole pool."""
    return np.asarray(RewardModel(weights, candidates).reward(correct.mean(axis=0)))


def _run_job(job: _Job) -> StudyRow:
    reward = RewardModel(job.weights, job.candidates)
    truth = np.asarray(reward.reward(job.correct.mean(axis=0)))
    best = float(truth.max())
    evaluator = ReplayEvaluator(job.correct, [c.name for c in job.candidates])
    bf_calls, bf_macs = brute_force_cost(job.candidates, evaluator.n_samples)
    macs_per_call = np.array([mac_charge(c) for c in job.candidates])
    regrets, calls, macs = [], [], []
    for seed in job.seeds:
        strategy = create(job.strategy)
        if isinstance(strategy, Benchmark):
            card = np.array([c.benchmark_accuracy or 0.0 for c in job.candidates])
            pick, n_calls, n_macs = int(np.argmax(reward.reward(card))), 0, 0.0
        else:
            brute = isinstance(strategy, BruteForce)
            budget = Budget(1.0, job.budget.unit) if brute else job.budget
            history, _ = run_selection(
                job.candidates, evaluator, reward, strategy, budget, seed, prune=not brute
            )
            pick, n_calls = recommend(history, strategy), history.calls
            n_macs = float(macs_per_call @ history.pulls)
        regrets.append(best - float(truth[pick]))
        calls.append(n_calls / bf_calls)
        macs.append(n_macs / bf_macs if bf_macs else np.nan)
    r = np.array(regrets)
    return StudyRow(
        strategy=job.strategy,
        budget=job.budget.value,
        budget_unit=job.budget.unit,
        repeats=len(job.seeds),
        p_best=float(np.mean(r <= 1e-12)),
        p_eps=float(np.mean(r <= job.eps + 1e-12)),
        eps=job.eps,
        mean_regret=float(r.mean()),
        mean_calls_fraction=float(np.mean(calls)),
        mean_macs_fraction=None if bf_macs is None else float(np.mean(macs)),
    )


def run_study(
    candidates: Sequence[Candidate],
    correct: np.ndarray,
    weights: Weights,
    strategies: Sequence[str],
    budgets: Sequence[Budget],
    *,
    repeats: int = 200,
    eps: float = 0.01,
    seed: int = 0,
    workers: int | None = None,
) -> list[StudyRow]:
    """One row per (strategy, budget), in the order given."""
    if repeats < 1:
        raise ConfigError(f"repeats must be a positive integer; got {repeats}")
    if not (eps >= 0 and np.isfinite(eps)):
        raise ConfigError(f"eps must be a non-negative number; got {eps}")
    for name in strategies:
        create(name)  # refuse unknown names before any work
    RewardModel(weights, candidates)  # and weights the candidates cannot support
    seeds = tuple(seed + r for r in range(repeats))
    jobs = []
    for name in strategies:
        for budget in budgets:
            # Split a pair's repeats into chunks so both cores stay busy to the end.
            for chunk in np.array_split(np.array(seeds), max(1, min(4, repeats // 25))):
                jobs.append(
                    _Job(
                        tuple(candidates),
                        correct,
                        weights,
                        name,
                        budget,
                        tuple(int(s) for s in chunk),
                        eps,
                    )
                )
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) == 1:
        parts = [_run_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_run_job, jobs))
    return _merge(parts)


def _merge(parts: list[StudyRow]) -> list[StudyRow]:
    """Combine the chunks of each (strategy, budget) pair into one row."""
    rows: dict[tuple[str, float, str], list[StudyRow]] = {}
    for p in parts:
        rows.setdefault((p.strategy, p.budget, p.budget_unit), []).append(p)
    merged = []
    for group in rows.values():
        n = sum(g.repeats for g in group)

        def mean(attr: str, group: list[StudyRow] = group, n: int = n) -> float:
            return float(sum(getattr(g, attr) * g.repeats for g in group)) / n

        first = group[0]
        merged.append(
            StudyRow(
                strategy=first.strategy,
                budget=first.budget,
                budget_unit=first.budget_unit,
                repeats=n,
                p_best=mean("p_best"),
                p_eps=mean("p_eps"),
                eps=first.eps,
                mean_regret=mean("mean_regret"),
                mean_calls_fraction=mean("mean_calls_fraction"),
                mean_macs_fraction=None
                if first.mean_macs_fraction is None
                else mean("mean_macs_fraction"),
            )
        )
    return merged
