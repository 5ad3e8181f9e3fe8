"""Thompson sampling, as in the paper: Beta-Bernoulli on accuracy, known penalties added."""

from __future__ import annotations

from typing import Any

import numpy as np

from greenrunner.history import History
from greenrunner.strategies._base import (
    Decision,
    Strategy,
    auto_batch,
    check_positive_int,
    finite_pool_posterior,
)


class Thompson(Strategy):
    name = "thompson"
    summary = "paper: pull the model whose posterior reward draw is highest (Beta-Bernoulli)"

    def __init__(self, batch: int | None = None) -> None:
        self.batch = check_positive_int("batch", batch)

    def params(self) -> dict[str, Any]:
        return {"batch": self.batch}

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self._batch = self.batch or auto_batch(history)

    def ask(self, history: History) -> Decision:
        rm = history.reward
        contenders = history.contenders
        for _ in range(8):  # draws landing on exactly-known models are no pull; redraw a few times
            draws = rm.w_acc * finite_pool_posterior(history, self.rng, self._batch) + rm.offset
            draws[:, ~contenders] = -np.inf
            picks = np.bincount(np.argmax(draws, axis=1), minlength=history.n_arms)
            picks[~history.active] = 0
            if picks.any():
                return Decision(pulls={int(k): int(picks[k]) for k in np.flatnonzero(picks)})
        return Decision(stop="converged")
