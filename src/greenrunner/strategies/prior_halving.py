"""Sequential halving that ranks with an empirical-Bayes posterior (see ``_prior``).

Sequential halving keeps every survivor on the same prefix of samples, so the models are
compared on the very same samples each round: in real zoos, where models agree on most
samples, that pairing removes most of the noise. Its weak point is the first rounds, where
each model has seen only a dozen samples. There this variant ranks by the posterior mean,
which adds what the model cards and the whole zoo's results say; as samples accumulate the
model's own results dominate, and a model seen on the whole pool is ranked by its exact
accuracy.
"""

from __future__ import annotations

import numpy as np

from greenrunner.history import History
from greenrunner.strategies._prior import posterior_pool_mean
from greenrunner.strategies.sequential_halving import SequentialHalving


class PriorHalving(SequentialHalving):
    name = "prior_halving"
    summary = (
        "sequential halving ranked by an empirical-Bayes posterior (model cards + all results)"
    )

    def estimate(self, history: History) -> np.ndarray:
        return np.where(history.pulls > 0, posterior_pool_mean(history), np.nan)

    def reward_estimates(self, history: History) -> np.ndarray:
        rm = history.reward
        if rm.w_acc == 0:
            return np.array(rm.offset, dtype=float)
        return np.asarray(rm.reward(self.estimate(history)))
