"""Top-two Thompson sampling on an empirical-Bayes prior (see ``_prior``).

Top-two Thompson asks "which model is best?" rather than "which model pays most now?":
each pull goes to the posterior's leader or, with probability 1 - beta, to the leader of
a second draw with the first leader excluded. The posterior here pools evidence across
models: model-card accuracy as a learned predictor, and shrinkage of little-seen models.
"""

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
from greenrunner.strategies._prior import posterior, posterior_draws, posterior_pool_mean
from greenrunner.strategies.thompson import MAX_DRAWS


class PriorTopTwo(Strategy):
    name = "prior_top_two"
    summary = "top-two Thompson on an empirical-Bayes prior learned from model cards and results"

    beta: float = probability(0.5, help="probability of pulling the leader, not its challenger")
    batch: int | None = batch_param()

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self._batch, self._spend = round_size(history, self.batch)

    def ask(self, history: History) -> Decision:
        rm = history.reward
        contenders = history.contenders
        active = np.flatnonzero(history.active)
        unseen = active[history.pulls[active] == 0]
        if unseen.size:  # one sample each first, so the prior has something to learn from
            return Decision(pulls={int(k): 1 for k in unseen})
        b = min(self._batch, MAX_DRAWS)
        fitted = posterior(history)
        first = rm.w_acc * posterior_draws(history, self.rng, b, fitted) + rm.offset
        second = rm.w_acc * posterior_draws(history, self.rng, b, fitted) + rm.offset
        first[:, ~contenders] = -np.inf
        second[:, ~contenders] = -np.inf
        leader = np.argmax(first, axis=1)
        second[np.arange(b), leader] = -np.inf
        challenger = np.argmax(second, axis=1)
        chosen = np.where(self.rng.random(b) < self.beta, leader, challenger)
        picks = allocate(history, chosen, self._spend, self.rng)
        if not picks.any():
            k = int(active[np.argmin(history.pulls[active])])
            return Decision(pulls={k: self._batch})
        return Decision(pulls={int(k): int(picks[k]) for k in np.flatnonzero(picks)})

    def estimate(self, history: History) -> np.ndarray:
        """Posterior mean of each pool accuracy: shrinks little-seen models toward the prior,
        so one lucky sample cannot win; exact for models seen on the whole pool."""
        return np.where(history.pulls > 0, posterior_pool_mean(history), np.nan)
