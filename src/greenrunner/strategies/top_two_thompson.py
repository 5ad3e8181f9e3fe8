"""Top-two Thompson sampling (Russo 2016): Thompson adapted to identify the best model."""

from __future__ import annotations

import numpy as np

from greenrunner.history import History
from greenrunner.strategies._base import (
    Decision,
    Strategy,
    allocate,
    finite_pool_posterior,
    round_size,
)
from greenrunner.strategies._params import batch_param, probability
from greenrunner.strategies.thompson import MAX_DRAWS


class TopTwoThompson(Strategy):
    name = "top_two_thompson"
    summary = "best-arm identification: pull the posterior leader, or its challenger (prob. 1-beta)"

    beta: float = probability(0.5, help="probability of pulling the leader, not its challenger")
    batch: int | None = batch_param()

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self._batch, self._spend = round_size(history, self.batch)

    def ask(self, history: History) -> Decision:
        rm = history.reward
        contenders = history.contenders
        b = min(self._batch, MAX_DRAWS)  # draws; each buys an equal share of the round
        first = rm.w_acc * finite_pool_posterior(history, self.rng, b) + rm.offset
        second = rm.w_acc * finite_pool_posterior(history, self.rng, b) + rm.offset
        first[:, ~contenders] = -np.inf
        second[:, ~contenders] = -np.inf
        leader = np.argmax(first, axis=1)
        # The challenger: the leader of an independent draw, the first leader excluded.
        second[np.arange(b), leader] = -np.inf
        challenger = np.argmax(second, axis=1)
        chosen = np.where(self.rng.random(b) < self.beta, leader, challenger)
        picks = allocate(history, chosen, self._spend, self.rng)
        if not picks.any():
            # Both leaders are exactly known: spend the round on the least-seen active model.
            active = np.flatnonzero(history.active)
            k = int(active[np.argmin(history.pulls[active])])
            return Decision(pulls={k: self._batch})
        return Decision(pulls={int(k): int(picks[k]) for k in np.flatnonzero(picks)})
