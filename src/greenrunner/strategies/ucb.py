"""UCB1, as in the paper: the model with the highest optimistic reward estimate."""

from __future__ import annotations

import heapq
import math

import numpy as np

from greenrunner.history import History
from greenrunner.strategies._base import Decision, Strategy, round_size
from greenrunner.strategies._params import batch_param, number


class UCB(Strategy):
    name = "ucb"
    summary = "paper: UCB1 on the reward (estimated accuracy term plus an exploration bonus)"

    # Rewards lie in [0, 1]: past 100 the bonus swamps any difference in estimates.
    exploration: float = number(
        2.0, low=0, high=100, low_open=True, help="weight of the exploration bonus (UCB1: 2)"
    )
    batch: int | None = batch_param()

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self._batch, self._spend = round_size(history, self.batch)

    def ask(self, history: History) -> Decision:
        active = np.flatnonzero(history.active)
        unseen = active[history.pulls[active] == 0]
        if unseen.size:
            return Decision(pulls={int(k): 1 for k in unseen[: self._batch]})
        rm = history.reward
        acc = history.accuracy()
        log_t = math.log(max(int(history.pulls.sum()), 2))

        def index(arm: int, n: int) -> float:
            bonus = math.sqrt(self.exploration * log_t / n)
            return float(rm.w_acc * (acc[arm] + bonus) + rm.offset[arm])

        # Within a round, each pull raises the pulled model's count (its mean stays): the
        # standard treatment of UCB with delayed feedback, exact for batch 1.
        heap = [(-index(arm, int(history.pulls[arm])), arm) for arm in active.tolist()]
        heapq.heapify(heap)
        picks: dict[int, int] = {}
        cost = history.cost_per_call
        spent = 0.0
        # A round spends its share of the budget: in MACs, cheap models take more pulls.
        while heap and spent < self._spend:
            _, arm = heapq.heappop(heap)
            picks[arm] = picks.get(arm, 0) + 1
            spent += float(cost[arm])
            seen = int(history.pulls[arm]) + picks[arm]
            if seen < history.n_samples:
                heapq.heappush(heap, (-index(arm, seen), arm))
        return Decision(pulls=picks)
