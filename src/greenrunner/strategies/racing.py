"""Racing (successive elimination) with paired bounds valid for a finite pool.

Every surviving model is evaluated on the same growing prefix of the sample order. After
each round a model is eliminated when the leader beats it with confidence 1 - delta: the
paired accuracy difference (same samples, so shared easy and hard samples cancel) is
bounded with Bernstein's inequality, which stays valid for sampling without replacement
(Hoeffding 1963), using an upper bound on how often the two models disagree. The race
stops by itself once one model is left, or when every rival is within ``tolerance``.
"""

from __future__ import annotations

import math

import numpy as np

from greenrunner.history import History
from greenrunner.stats import serfling_radius
from greenrunner.strategies._base import Decision, Strategy
from greenrunner.strategies._params import number, probability
from greenrunner.strategies._rounds import affordable_prefix, extend_to


def paired_radius(disagree: np.ndarray, t: int, pool: int, delta: float) -> np.ndarray:
    """Radius for the mean paired difference (values in {-1, 0, 1}) on a prefix of length t.

    Bernstein with the variance bounded by an upper confidence bound on the disagreement
    rate (half of delta each). Zero when the prefix is the whole pool.
    """
    if t >= pool:
        return np.zeros_like(disagree, dtype=float)
    half = delta / 2
    var_ub = np.minimum(1.0, disagree / t + serfling_radius(np.array(t), pool, half))
    log_term = math.log(2 / half)
    return np.asarray(np.sqrt(2 * var_ub * log_term / t) + 4 * log_term / (3 * t))


class Racing(Strategy):
    name = "racing"
    summary = (
        "best-arm identification: drop models the leader beats with confidence; stops when certain"
    )

    delta: float = probability(0.05, help="error probability: eliminate with confidence 1 - delta")
    # Each round's common prefix is ``growth`` times the last; 100 already jumps from a
    # dozen samples to the whole of most pools.
    growth: float = number(
        1.3, low=1, high=100, low_open=True, help="prefix growth factor from round to round"
    )
    tolerance: float = probability(
        0.0, low_open=False, help="stop once every rival is within this much of the leader"
    )

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self._target = 0
        # Union bound over models and the (geometrically many) rounds.
        rounds = math.ceil(math.log(max(history.n_samples, 2)) / math.log(self.growth)) + 1
        self._delta_each = self.delta / (history.n_arms * rounds)

    def _eliminations(
        self, history: History, contenders: np.ndarray
    ) -> tuple[dict[int, str], bool]:
        t = int(history.pulls[contenders].min())
        if t == 0:
            return {}, False
        rm = history.reward
        prefix = history.outcomes[:t, contenders].astype(np.int8)
        rewards = rm.w_acc * prefix.mean(axis=0) + rm.offset[contenders]
        lead = int(np.argmax(rewards))
        disagree = np.sum(prefix != prefix[:, [lead]], axis=0)
        radius = rm.w_acc * paired_radius(disagree, t, history.n_samples, self._delta_each)
        gap = rewards[lead] - rewards  # leader minus rival, estimated on the same samples
        beaten = gap - radius > 0
        out = {
            int(
                contenders[i]
            ): f"beaten by the leader with confidence {1 - self.delta:g} after {t} paired samples"
            for i in np.flatnonzero(beaten)
        }
        rivals = np.arange(contenders.size) != lead
        close_enough = self.tolerance > 0 and bool(
            np.all((-gap + radius)[rivals & ~beaten] <= self.tolerance)
        )
        return out, close_enough

    def ask(self, history: History) -> Decision:
        contenders = np.flatnonzero(history.contenders)
        eliminate, close_enough = self._eliminations(history, contenders)
        if len(eliminate) >= contenders.size - 1 or close_enough:
            return Decision(eliminate=eliminate, stop="confident")
        survivors = np.array(
            [k for k in contenders if history.active[k] and k not in eliminate], dtype=int
        )
        if survivors.size == 0:
            return Decision(eliminate=eliminate, stop="exhausted")
        current = int(history.pulls[survivors].min())
        target = max(current + 1, math.ceil(max(current, 1) * self.growth))
        target = min(target, history.n_samples)
        # Never ask for a round the budget cannot finish when a shorter one fits.
        fits = affordable_prefix(history, survivors, history.remaining_budget)
        if current < fits < target:
            target = fits
        return Decision(
            pulls=extend_to(history, survivors, target, history.estimated_reward()),
            eliminate=eliminate,
        )
