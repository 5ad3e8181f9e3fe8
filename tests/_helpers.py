"""Shared helpers for the test suite: small replays, recording and failing evaluators."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.engine import run_selection
from greenrunner.evaluation import EvaluationError, ReplayEvaluator
from greenrunner.history import History
from greenrunner.reward import RewardModel, Weights
from greenrunner.simulate import simulate_correctness
from greenrunner.strategies import create

# Every stop reason the engine or a registered strategy may report.
KNOWN_STOPS = frozenset(
    {
        "budget",
        "exhausted",
        "decided",
        "strategy_done",
        "confident",
        "converged",
        "no_target_evaluation",
    }
)


@dataclass
class Replay:
    """Candidates plus their N x K correctness matrix (column j = candidates[j])."""

    candidates: list[Candidate]
    correct: np.ndarray

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.candidates]

    @property
    def n_samples(self) -> int:
        return int(self.correct.shape[0])

    def evaluator(self) -> ReplayEvaluator:
        return ReplayEvaluator(self.correct, self.names)

    def true_rewards(self, weights: Weights) -> np.ndarray:
        rm = RewardModel(weights, self.candidates)
        return np.asarray(rm.reward(self.correct.mean(axis=0)))

    def best(self, weights: Weights) -> str:
        return self.names[int(np.argmax(self.true_rewards(weights)))]


def make_replay(
    accuracies: Sequence[float],
    n_samples: int,
    seed: int = 0,
    *,
    sizes_mb: Sequence[float] | None = None,
    mmacs: Sequence[float] | None = None,
    cards: Sequence[float] | None = None,
    prefix: str = "m",
) -> Replay:
    """A simulated replay; sizes, MACs and card accuracies default to simple spreads."""
    k = len(accuracies)
    sizes = list(sizes_mb) if sizes_mb is not None else [10.0 * (i + 1) for i in range(k)]
    macs = list(mmacs) if mmacs is not None else [100.0 * (i + 1) for i in range(k)]
    card = list(cards) if cards is not None else [0.5 + 0.04 * i for i in range(k)]
    candidates = [
        Candidate(
            name=f"{prefix}{i}",
            size_bytes=sizes[i] * 1e6,
            macs=macs[i] * 1e6,
            params=1000 * (i + 1),
            benchmark_accuracy=card[i],
            license="MIT",
        )
        for i in range(k)
    ]
    correct = simulate_correctness(np.asarray(accuracies), n_samples, np.random.default_rng(seed))
    return Replay(candidates, correct)


@dataclass
class RecordingEvaluator:
    """Wraps an evaluator and logs every (model name, sample id) it is asked for."""

    inner: ReplayEvaluator
    log: list[tuple[str, int]] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return self.inner.n_samples

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> np.ndarray:
        self.log.extend((candidate.name, int(i)) for i in sample_ids)
        return self.inner.evaluate(candidate, sample_ids)


@dataclass
class FailingEvaluator:
    """Raises EvaluationError for the named models; answers from the replay otherwise."""

    inner: ReplayEvaluator
    failing: frozenset[str]
    wrong_shape: bool = False
    log: list[tuple[str, int]] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return self.inner.n_samples

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> np.ndarray:
        if candidate.name in self.failing:
            if self.wrong_shape:
                return np.ones(len(sample_ids) + 1, dtype=bool)
            raise EvaluationError(f"{candidate.name} could not be loaded")
        self.log.extend((candidate.name, int(i)) for i in sample_ids)
        return self.inner.evaluate(candidate, sample_ids)


def run(
    replay: Replay,
    strategy: str,
    budget: Budget,
    seed: int = 0,
    weights: Weights | None = None,
) -> tuple[History, str, RecordingEvaluator]:
    """One selection through the engine, pruning as the API does, with a recording evaluator."""
    evaluator = RecordingEvaluator(replay.evaluator())
    chosen = create(strategy)
    reward = RewardModel(weights or Weights({"accuracy": 1.0}), replay.candidates)
    history, stop = run_selection(
        replay.candidates,
        evaluator,
        reward,
        chosen,
        budget,
        seed,
        prune=not chosen.baseline,
    )
    return history, stop, evaluator
