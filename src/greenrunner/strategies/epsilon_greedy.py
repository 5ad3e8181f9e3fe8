"""Epsilon-greedy, as in the paper: explore a random model with probability epsilon."""

from __future__ import annotations

import numpy as np

from greenrunner.history import History
from greenrunner.strategies._base import (
    Decision,
    Strategy,
    allocate,
    round_size,
)
from greenrunner.strategies._params import batch_param, probability


class EpsilonGreedy(Strategy):
    name = "epsilon_greedy"
    summary = "paper: with probability epsilon a random model, else the best estimated reward"

    epsilon: float = probability(0.1, help="probability of exploring a random model")
    batch: int | None = batch_param()

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self._batch, self._spend = round_size(history, self.batch)

    def ask(self, history: History) -> Decision:
        active = np.flatnonzero(history.active)
        unseen = active[history.pulls[active] == 0]
        if unseen.size:  # every model once first, as the paper's bandits start
            return Decision(pulls={int(k): 1 for k in unseen[: self._batch]})
        est = history.estimated_reward()
        contenders = np.flatnonzero(history.contenders)
        best = int(contenders[np.argmax(est[contenders])])
        explore = self.rng.random(self._batch) < self.epsilon
        if not history.active[best]:
            # The greedy choice is known exactly: nothing to exploit, so explore.
            explore[:] = True
        # Each of the round's pulls is a choice; in MACs each choice buys an equal share.
        chosen = np.where(explore, self.rng.choice(active, size=self._batch), best)
        picks = allocate(history, chosen, self._spend, self.rng)
        return Decision(pulls={int(k): int(picks[k]) for k in np.flatnonzero(picks)})
