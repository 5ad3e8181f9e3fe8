"""The strategy seam: ``ask`` for the next evaluations, read the outcome from the history.

A strategy never evaluates anything and never writes the history: it asks the engine for
pulls (candidate index -> number of further samples on its prefix), may eliminate
candidates it is statistically sure about, and may stop. The engine enforces the budget,
prunes by known costs and recommends by estimated reward, the same way for every strategy.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from greenrunner.history import History
from greenrunner.strategies._params import Param, check, declared


@dataclass(frozen=True)
class Decision:
    """One round: which candidates to evaluate on how many more samples, whom to drop."""

    pulls: Mapping[int, int] = field(default_factory=dict)
    eliminate: Mapping[int, str] = field(default_factory=dict)
    stop: str | None = None  # a stop reason, e.g. "confident"; pulls are then ignored


class Strategy(ABC):
    """Base class; subclasses set ``name`` and ``summary`` and implement :meth:`ask`.

    Parameters are declared as class attributes (``delta: float = probability(0.05)``, see
    :mod:`greenrunner.strategies._params`), never by a constructor of the subclass: this
    one checks every keyword against the declarations, so a wrong type or a value out of
    range is a ConfigError however the strategy is made (registry, CLI, web, Python).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    # Strategies that evaluate nothing (the benchmark baseline) or everything (brute force)
    # are baselines; the rest spend a budget.
    baseline: ClassVar[bool] = False
    # name -> declaration, gathered from the class and its bases when the class is made.
    parameters: ClassVar[Mapping[str, Param]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.parameters = MappingProxyType(declared(cls))

    def __init__(self, **params: Any) -> None:
        label = getattr(type(self), "name", type(self).__name__)
        values = {key: p.default for key, p in self.parameters.items()}
        values.update(check(label, self.parameters, params))
        for key, value in values.items():
            setattr(self, key, value)

    def start(self, history: History, rng: np.random.Generator) -> None:
        """Called once before the first ``ask``; ``rng`` is the strategy's own seeded stream."""
        self.rng = rng

    @abstractmethod
    def ask(self, history: History) -> Decision:
        """The next round of evaluations."""

    def params(self) -> dict[str, Any]:
        """The strategy's settings, recorded in the result."""
        return {key: getattr(self, key) for key in self.parameters}

    def estimate(self, history: History) -> np.ndarray | None:
        """Accuracy estimates (NaN where unknown) to rank by, or None for the plain
        fraction correct on each prefix. A strategy with a better estimator overrides it."""
        return None


def unseen_pairs(history: History) -> int:
    """(model, sample) pairs the active candidates can still be evaluated on: no round can
    use more, whatever the budget."""
    return int((history.n_samples - history.pulls[history.active]).sum())


def auto_batch(history: History, rounds: int = 100) -> int:
    """Pulls per round so a run takes about ``rounds`` rounds of what it can spend.

    One decision per pull (batch 1) is the textbook form; grouping pulls into rounds of a
    few dozen changes the decisions little and makes a run tens of times faster. It is also
    what lets a parallel executor evaluate a whole round at once.

    What it can spend is the smaller of the budget and what the pool can absorb: a budget
    beyond brute force (``Budget(10**9)`` on 360 pairs) buys no more than brute force, and
    sizing rounds from it would build arrays of millions of pulls the engine then trims.
    """
    active = history.active
    if not active.any():
        return 1
    mean_cost = float(np.mean(history.cost_per_call[active])) or 1.0
    budget_calls = history.remaining_budget / mean_cost
    return max(1, math.ceil(min(budget_calls, unseen_pairs(history)) / rounds))


def round_size(history: History, batch: int | None) -> tuple[int, float]:
    """Pulls per round and their spend in the budget's unit (calls, or MACs).

    ``batch`` counts pulls; by default a run takes about 100 rounds. In MACs a round's
    spend is ``batch`` pulls of a model of average cost. Either way a round holds at most
    the pairs left to evaluate (a larger one could only be trimmed).
    """
    active = history.active
    mean_cost = float(np.mean(history.cost_per_call[active])) if active.any() else 1.0
    pulls = max(1, min(batch or auto_batch(history), unseen_pairs(history)))
    return pulls, pulls * mean_cost


def allocate(
    history: History, chosen: np.ndarray, spend: float, rng: np.random.Generator
) -> np.ndarray:
    """Pull counts (one per model) when each entry of ``chosen`` gets an equal share of
    ``spend``, in the budget's unit.

    In calls every choice buys the same number of samples; in MACs an expensive model buys
    fewer for the same spend (MAC-aware allocation), so evidence is bought where it is cheap.
    Fractions are rounded at random, so the expected spend is exact; a choice buys at least
    one sample. Models that cannot be evaluated further get nothing.
    """
    share = spend / max(chosen.size, 1)
    cost = history.cost_per_call[chosen]
    per_choice = np.maximum(1, np.floor(share / cost + rng.random(chosen.size)))
    picks = np.bincount(chosen, weights=per_choice, minlength=history.n_arms).astype(int)
    picks[~history.active] = 0
    return picks


def finite_pool_posterior(history: History, rng: np.random.Generator, draws: int) -> np.ndarray:
    """Posterior draws (draws x K) of each candidate's *pool* accuracy.

    Beta(1 + successes, 1 + failures) for the rate on the unseen samples, mixed with what
    the prefix already showed: ``(s + theta * (N - n)) / N``. A candidate seen on the whole
    pool gets a point mass at its exact accuracy.
    """
    s = history.successes.astype(float)
    n = history.pulls.astype(float)
    pool = history.n_samples
    a, b = 1 + s, 1 + n - s
    # Beta draws dominate a run's cost; where both counts are large the Beta is close to
    # its normal approximation, which is an order of magnitude cheaper to draw.
    exact = np.minimum(a, b) < 30
    theta = np.empty((draws, history.n_arms))
    if exact.any():
        theta[:, exact] = rng.beta(a[exact], b[exact], size=(draws, int(exact.sum())))
    if not exact.all():
        aa, bb = a[~exact], b[~exact]
        mean, std = aa / (aa + bb), np.sqrt(aa * bb / ((aa + bb) ** 2 * (aa + bb + 1)))
        theta[:, ~exact] = np.clip(mean + std * rng.standard_normal((draws, aa.size)), 0.0, 1.0)
    return np.asarray((s + theta * (pool - n)) / pool)
