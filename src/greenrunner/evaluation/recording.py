"""An executor that commits every outcome to the experiment store and never pays twice.

It wraps the executor that really runs the evaluations (in-process or Ray). For each pull
it answers the (model, sample) pairs already stored for the experiment from the store,
hands only the missing ones to the wrapped executor, and commits what comes back before
the engine sees it: after every pull in-process, after every round on a cluster (a
round's pulls run in parallel). A run killed mid-way loses at most the work in flight;
resumed with the same settings, the seeded engine asks for the same pulls again and every
one it had stored is answered without evaluation.

Recording wraps the executor, not the evaluator, so it stays in this process (the store
is a local file) while a cluster's workers hold their own copies of the evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from greenrunner.evaluation.base import EvaluationError, Evaluator
from greenrunner.evaluation.executors import (
    Executor,
    InProcessExecutor,
    Outcome,
    Pull,
    checked_outcome,
)
from greenrunner.store import ExperimentStore


@dataclass
class RecordingExecutor:
    """Wraps ``inner``; ``served`` counts answers from the store, ``computed`` evaluations."""

    inner: Executor
    store: ExperimentStore
    experiment: int
    served: int = 0
    computed: int = 0

    def store_stats(self) -> dict[str, int]:
        """{"served": answered from the store, "computed": evaluated by this process}."""
        return {"served": self.served, "computed": self.computed}

    def close(self) -> None:
        self.inner.close()

    def run(self, evaluator: Evaluator, pulls: Sequence[Pull]) -> list[Outcome]:
        known = [self.store.lookup(self.experiment, c.name, ids.tolist()) for c, ids in pulls]
        todo: list[int] = []
        missing: list[Pull] = []
        for i, ((candidate, ids), found) in enumerate(zip(pulls, known, strict=True)):
            rest = np.asarray([s for s in ids.tolist() if s not in found], dtype=np.int64)
            self.served += len(ids) - len(rest)
            if len(rest):
                todo.append(i)
                missing.append((candidate, rest))
        fresh: dict[int, Outcome] = {}
        # In-process, commit after every pull; a cluster runs a round in parallel.
        step = 1 if isinstance(self.inner, InProcessExecutor) else max(len(missing), 1)
        for start in range(0, len(missing), step):
            chunk = missing[start : start + step]
            # Validated before anything is stored: the store keeps only real correctness.
            outcomes = [
                checked_outcome(outcome, len(ids), candidate.name)
                for (candidate, ids), outcome in zip(
                    chunk, self.inner.run(evaluator, chunk), strict=True
                )
            ]
            self._record(chunk, outcomes)
            fresh.update(zip(todo[start : start + step], outcomes, strict=True))
        return [
            _merge(ids, found, fresh.get(i))
            for i, ((_, ids), found) in enumerate(zip(pulls, known, strict=True))
        ]

    def _record(self, pulls: Sequence[Pull], outcomes: Sequence[Outcome]) -> None:
        """Store the successful outcomes of these pulls in one transaction. A failed pull
        stores nothing: the model fails again on resume, as in an uninterrupted run."""
        rows = [
            (candidate.name, ids.tolist(), outcome)
            for (candidate, ids), outcome in zip(pulls, outcomes, strict=True)
            if not isinstance(outcome, EvaluationError)
        ]
        self.store.record_many(self.experiment, rows)
        self.computed += sum(len(ids) for _, ids, _ in rows)


def _merge(ids: np.ndarray, found: dict[int, bool], outcome: Outcome | None) -> Outcome:
    """The pull's answer: stored outcomes and fresh (validated) ones in the pull's order."""
    if isinstance(outcome, EvaluationError):
        return outcome
    fresh = iter(outcome.tolist() if outcome is not None else [])
    return np.array([found[s] if s in found else next(fresh) for s in ids.tolist()], dtype=bool)
