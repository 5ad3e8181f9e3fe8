"""Thompson sampling, as in the paper: Beta-Bernoulli on accuracy, known penalties added."""

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
from greenrunner.strategies._params import batch_param

MAX_DRAWS = 32


class Thompson(Strategy):
    name = "thompson"
    summary = "paper: pull the model whose posterior reward draw is highest (Beta-Bernoulli)"

    batch: int | None = batch_param()

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self._batch, self._spend = round_size(history, self.batch)

    def ask(self, history: History) -> Decision:
        rm = history.reward
        contenders = history.contenders
        # Up to MAX_DRAWS posterior draws per round, each standing for an equal share of
        # the round's pulls: the same allocation in expectation, at a fraction of the cost.
        n_draws = min(self._batch, MAX_DRAWS)
        for _ in range(8):  # draws landing on exactly-known models are no pull; redraw a few times
            draws = rm.w_acc * finite_pool_posterior(history, self.rng, n_draws) + rm.offset
            draws[:, ~contenders] = -np.inf
            picks = allocate(history, np.argmax(draws, axis=1), self._spend, self.rng)
            if picks.any():
                return Decision(pulls={int(k): int(picks[k]) for k in np.flatnonzero(picks)})
        return Decision(stop="converged")
