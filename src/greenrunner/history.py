"""What an experiment has observed so far; strategies read it, only the engine writes it.

Paired sampling: one seeded order of the N target samples per experiment, and every model
is evaluated on a prefix of that order. So ``pulls[k]`` is the length of model k's prefix,
two models can be compared on their common prefix (same samples, much less noise than two
independent draws), and a model whose prefix is the whole pool has an exact accuracy.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from greenrunner.reward import RewardModel


class Status(StrEnum):
    """Where a candidate stands; ``active`` ones may still be evaluated."""

    ACTIVE = "active"
    EXACT = "exact"  # evaluated on the whole pool: accuracy known exactly
    PRUNED = "pruned"  # cannot win even if it got every remaining sample right
    ELIMINATED = "eliminated"  # dropped by the strategy's statistics
    FAILED = "failed"  # could not be evaluated


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class History:
    """Per-candidate counts and outcomes, in the experiment's sample order."""

    def __init__(
        self,
        reward: RewardModel,
        order: np.ndarray,
        cost_per_call: np.ndarray,
        budget_limit: float,
        card_accuracy: np.ndarray | None = None,
    ) -> None:
        k = len(reward.names)
        # Model-card (benchmark) accuracies, NaN where unknown: a prior, never the answer.
        card = np.full(k, np.nan) if card_accuracy is None else np.asarray(card_accuracy, float)
        self.card_accuracy = _readonly(card)
        self.reward = reward
        self.n_arms = k
        self.n_samples = int(order.size)
        self._order = order
        self._pulls = np.zeros(k, dtype=np.int64)
        self._successes = np.zeros(k, dtype=np.int64)
        # outcomes[p, k]: was model k right on the p-th sample of the order (valid below pulls[k])
        self._outcomes = np.zeros((self.n_samples, k), dtype=bool)
        self._status = np.full(k, Status.ACTIVE.value, dtype=object)
        self.reasons: dict[int, str] = {}
        self.cost_per_call = _readonly(np.asarray(cost_per_call, dtype=float))
        self.budget_limit = float(budget_limit)
        self.spent = 0.0  # in the budget's unit
        self.calls = 0
        self.rounds = 0

    # --- read-only views for strategies -------------------------------------------------
    @property
    def order(self) -> np.ndarray:
        return _readonly(self._order)

    @property
    def pulls(self) -> np.ndarray:
        return _readonly(self._pulls)

    @property
    def successes(self) -> np.ndarray:
        return _readonly(self._successes)

    @property
    def outcomes(self) -> np.ndarray:
        return _readonly(self._outcomes)

    @property
    def status(self) -> np.ndarray:
        return _readonly(self._status)

    @property
    def active(self) -> np.ndarray:
        """Candidates that may still be evaluated (not exact, pruned, eliminated or failed)."""
        return np.asarray(self._status == Status.ACTIVE.value)

    @property
    def contenders(self) -> np.ndarray:
        """Candidates that can still be recommended: active or exact."""
        return np.asarray(
            (self._status == Status.ACTIVE.value) | (self._status == Status.EXACT.value)
        )

    @property
    def remaining_budget(self) -> float:
        return max(0.0, self.budget_limit - self.spent)

    def accuracy(self) -> np.ndarray:
        """Estimated accuracy (fraction correct on the prefix); NaN where never evaluated."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self._pulls > 0, self._successes / np.maximum(self._pulls, 1), np.nan)

    def estimated_reward(self) -> np.ndarray:
        """Equation 1 with estimated accuracy; only the known part if accuracy has no weight."""
        if self.reward.w_acc == 0:
            return np.array(self.reward.offset, dtype=float)
        return np.asarray(self.reward.reward(self.accuracy()))

    def accuracy_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Certain bounds on each pool accuracy: every unseen sample wrong / right."""
        n = self.n_samples
        return self._successes / n, (self._successes + n - self._pulls) / n

    def successes_on_prefix(self, length: int) -> np.ndarray:
        """Correct answers of every candidate on the first ``length`` samples of the order."""
        return np.asarray(self._outcomes[:length].sum(axis=0))

    def next_samples(self, arm: int, count: int) -> np.ndarray:
        """Sample ids that extend ``arm``'s prefix by ``count``."""
        start = int(self._pulls[arm])
        return _readonly(self._order[start : start + count])

    # --- engine-only mutation ---------------------------------------------------------------
    def record(self, arm: int, outcomes: np.ndarray) -> None:
        start = int(self._pulls[arm])
        m = outcomes.size
        self._outcomes[start : start + m, arm] = outcomes
        self._pulls[arm] += m
        self._successes[arm] += int(outcomes.sum())
        self.calls += m
        self.spent += m * float(self.cost_per_call[arm])
        if self._pulls[arm] >= self.n_samples and self._status[arm] == Status.ACTIVE.value:
            self._status[arm] = Status.EXACT.value

    def set_status(self, arm: int, status: Status, reason: str = "") -> None:
        self._status[arm] = status.value
        if reason:
            self.reasons[arm] = reason
