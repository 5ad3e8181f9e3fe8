"""Replay: correctness recorded in advance, looked up instead of computed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import CORRECTNESS_RULE, correctness_problem


class ReplayEvaluator:
    """Answers from an N x K boolean matrix whose column j belongs to ``names[j]``."""

    def __init__(self, correct: np.ndarray, names: Sequence[str]) -> None:
        if correct.ndim != 2 or correct.shape[1] != len(names):
            raise ConfigError(
                f"replay matrix must be N x {len(names)} (one column per model); "
                f"got shape {correct.shape}"
            )
        problem = correctness_problem(np.asarray(correct))
        if problem is not None:  # a cast would count a probability of 0.3 as correct
            raise ConfigError(f"replay matrix must hold {CORRECTNESS_RULE}; got {problem}")
        self._correct = np.ascontiguousarray(correct, dtype=bool)
        self._correct.setflags(write=False)
        self._column = {name: j for j, name in enumerate(names)}

    @property
    def n_samples(self) -> int:
        return int(self._correct.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """The full (read-only) matrix; brute force on the pool in one look-up."""
        return self._correct

    def column(self, name: str) -> int:
        try:
            return self._column[name]
        except KeyError:
            raise ConfigError(f"the replay has no model named {name!r}") from None

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self._correct[sample_ids, self.column(candidate.name)])
