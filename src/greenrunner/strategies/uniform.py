"""Uniform allocation: the simplest fixed-budget reference."""

from __future__ import annotations

import numpy as np

from greenrunner.history import History
from greenrunner.strategies._base import Decision, Strategy


class Uniform(Strategy):
    name = "uniform"
    summary = "every model on the same growing prefix of samples; a plain reference point"

    def ask(self, history: History) -> Decision:
        active = np.flatnonzero(history.active)
        # One more common step for every active model; the engine trims at the budget.
        step = max(1, history.n_samples // 50)
        target = int(history.pulls[active].min()) + step
        return Decision(
            pulls={
                int(k): target - int(history.pulls[k]) for k in active if history.pulls[k] < target
            }
        )
