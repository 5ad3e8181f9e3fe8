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
        if isinstance(names, str | bytes) or not isinstance(names, Sequence):
            raise ConfigError(
                f"replay names must be a list of model names (one per column); got {names!r}"
            )
        if not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"replay names must be non-empty strings; got {list(names)!r}")
        if len(set(names)) != len(names):
            raise ConfigError("replay names must be unique (one per column)")
        if not isinstance(correct, np.ndarray):
            try:  # a list of lists is fine; anything ragged or non-numeric is not
                correct = np.asarray(correct)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"replay matrix must be an N x {len(names)} array of booleans; got "
                    f"{type(correct).__name__} ({exc})"
                ) from None
            if correct.dtype == object:
                raise ConfigError(
                    f"replay matrix must be an N x {len(names)} array of booleans; got a "
                    f"{type(correct).__name__} of other objects"
                )
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
        column = self.column(candidate.name)
        try:
            return np.asarray(self._correct[sample_ids, column])
        except IndexError:
            raise ConfigError(
                f"sample ids must be in [0, {self.n_samples}); got {sample_ids!r}"
            ) from None
