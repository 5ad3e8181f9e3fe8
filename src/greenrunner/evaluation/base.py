"""The evaluator seam: replayed results and real inference look the same to the engine."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.errors import GreenRunnerError


class EvaluationError(GreenRunnerError):
    """A model could not be evaluated (failed to load or predict); the run goes on without it."""


@runtime_checkable
class Evaluator(Protocol):
    """Runs a candidate on target samples.

    ``evaluate`` returns one boolean per sample id (True = correct). One model on one sample
    is one evaluation call; the engine does the cost accounting, so an evaluator cannot
    under-report what it spent.
    """

    @property
    def n_samples(self) -> int: ...

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class CachingEvaluator(Protocol):
    """An evaluator that can say how many calls its cache served (real inference)."""

    def cache_stats(self) -> dict[str, int]:
        """{"served": calls answered from the cache, "computed": calls that ran inference}."""
        ...
