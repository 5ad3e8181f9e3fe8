"""The evaluator seam: replayed results and real inference look the same to the engine."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.errors import GreenRunnerError


class EvaluationError(GreenRunnerError):
    """A model could not be evaluated (failed to load or predict); the run goes on without it."""


# What an evaluator returns per sample. Kept here alone, so per-sample scores in [0, 1]
# (detection) widen one rule rather than several casts.
CORRECTNESS_RULE = "one bool per sample (True = correct), or 0/1"


def correctness_problem(values: np.ndarray) -> str | None:
    """Why ``values`` are not correctness under :data:`CORRECTNESS_RULE` (None if they are).

    Floats other than exactly 0 and 1 (a probability, a score, NaN for "no answer") are
    refused rather than cast: ``bool(0.3)`` is True, so a cast would count them correct.
    """
    kind = values.dtype.kind
    if kind == "b":
        return None
    if kind not in "iuf":
        return f"values of type {values.dtype}"
    bad = ~np.isin(values, (0, 1))  # NaN is neither
    if not bad.any():
        return None
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    first = values[at].item()
    return f"{first!r} at position {at[0] if len(at) == 1 else at}"


def check_correctness(values: object, count: int, model: str) -> np.ndarray:
    """``values`` as a boolean array of ``count`` entries, or an EvaluationError naming the
    model, what was wrong and what to return instead."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise EvaluationError(
            f"evaluator returned something that is not an array for {model} ({exc})"
        ) from None
    if array.shape != (count,):
        raise EvaluationError(
            f"evaluator returned shape {array.shape} for {count} samples of {model}; "
            f"return {CORRECTNESS_RULE}, in the order of the sample ids"
        )
    problem = correctness_problem(array)
    if problem is not None:
        raise EvaluationError(
            f"evaluator returned {problem} for {model}; it must return {CORRECTNESS_RULE}, "
            "not a score or a probability: compare scores with a threshold first "
            "(e.g. scores >= 0.5)"
        )
    return array.astype(bool, copy=False)


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
