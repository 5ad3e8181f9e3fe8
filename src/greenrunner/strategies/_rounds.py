"""Helpers for round-based strategies that keep their survivors on one common prefix."""

from __future__ import annotations

import numpy as np

from greenrunner.history import History


def affordable_prefix(history: History, arms: np.ndarray, spend: float) -> int:
    """The longest common prefix length t the given arms reach within ``spend``.

    Cost of t: each arm's missing samples up to t times its cost per call (MAC-aware when
    the budget is in MACs: expensive models make a round dearer, not unfairly shorter).
    """
    pulls = history.pulls[arms]
    cost = history.cost_per_call[arms]
    lo, hi = int(pulls.min()) if arms.size else 0, history.n_samples
    while lo < hi:  # largest t with cost(t) <= spend
        mid = (lo + hi + 1) // 2
        if float(np.sum(cost * np.maximum(0, mid - pulls))) <= spend + 1e-9:
            lo = mid
        else:
            hi = mid - 1
    return lo


def extend_to(
    history: History, arms: np.ndarray, target: int, priority: np.ndarray
) -> dict[int, int]:
    """Pulls that bring each arm's prefix up to ``target``, most promising arms first.

    The order matters only when the budget runs out inside the round: the engine fills
    requests in order, so the leaders get their samples.
    """
    ranked = arms[np.argsort(-priority[arms], kind="stable")]
    return {int(k): target - int(history.pulls[k]) for k in ranked if history.pulls[k] < target}
