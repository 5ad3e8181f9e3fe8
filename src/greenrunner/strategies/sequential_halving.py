"""Sequential halving (Karnin, Koren & Somekh 2013): fixed-budget best-arm identification.

The budget is split over ceil(log2 K) rounds; in each round every surviving model is
evaluated on the same further samples (paired), then the worse half by estimated reward is
dropped. Budget left by pruned or exactly-known models flows into later rounds.
"""

from __future__ import annotations

import math

import numpy as np

from greenrunner.history import History
from greenrunner.strategies._base import Decision, Strategy
from greenrunner.strategies._rounds import affordable_prefix, extend_to


class SequentialHalving(Strategy):
    name = "sequential_halving"
    summary = (
        "best-arm identification: split the budget into rounds, drop the worse half each round"
    )

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self._target = 0

    def reward_estimates(self, history: History) -> np.ndarray:
        """Estimated reward of every model (NaN if never evaluated), used to halve."""
        return history.estimated_reward()

    def ask(self, history: History) -> Decision:
        est = self.reward_estimates(history)
        contenders = np.flatnonzero(history.contenders)
        eliminate: dict[int, str] = {}
        active = history.active
        round_done = self._target > 0 and all(
            history.pulls[k] >= self._target or not active[k] for k in contenders
        )
        if round_done and contenders.size > 1:
            keep = math.ceil(contenders.size / 2)
            ranked = contenders[
                np.argsort(-np.nan_to_num(est[contenders], nan=-np.inf), kind="stable")
            ]
            eliminate = {
                int(k): "in the worse half of a sequential-halving round"
                for k in ranked[keep:]
                if active[k]
            }
            contenders = ranked[:keep]
        survivors = np.array([k for k in contenders if active[k] and k not in eliminate], dtype=int)
        if survivors.size == 0:
            return Decision(eliminate=eliminate, stop="decided")
        rounds_left = max(1, math.ceil(math.log2(max(contenders.size, 2))))
        spend = history.remaining_budget / rounds_left
        target = affordable_prefix(history, survivors, spend)
        if target <= int(history.pulls[survivors].min()):
            # Not even one more sample for everyone: the leaders get what is left.
            target = int(history.pulls[survivors].min()) + 1
        self._target = target
        return Decision(
            pulls=extend_to(history, survivors, target, np.nan_to_num(est, nan=np.inf)),
            eliminate=eliminate,
        )
