"""A round is sized by what the pool can absorb, not by the budget alone: a budget far
beyond brute force (Budget(10**9) on 6 models x 60 samples) used to size rounds of ten
million pulls, with arrays to match, that the engine then trimmed to the pool."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from greenrunner.budget import Budget
from greenrunner.engine import run_selection
from greenrunner.history import History
from greenrunner.reward import RewardModel, Weights
from greenrunner.strategies import Decision, Strategy, create, names
from greenrunner.strategies._base import auto_batch, round_size
from tests._helpers import Replay

SEARCHING = [n for n in names() if not create(n).baseline]


def _unseen(history: History) -> int:
    """(model, sample) pairs the active candidates have not been evaluated on."""
    return int((history.n_samples - history.pulls[history.active]).sum())


class Watched(Strategy):
    """Wraps a strategy and records, each round, the pulls it asked for and the pairs left."""

    name = "watched"
    summary = "test wrapper"

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.rounds: list[tuple[int, int]] = []

    def start(self, history: History, rng: np.random.Generator) -> None:
        super().start(history, rng)
        self.inner.start(history, rng)

    def ask(self, history: History) -> Decision:
        decision = self.inner.ask(history)
        self.rounds.append((sum(decision.pulls.values()), _unseen(history)))
        return decision

    def estimate(self, history: History) -> Any:
        return self.inner.estimate(history)


@pytest.mark.parametrize("unit", ["calls", "macs"])
@pytest.mark.parametrize("name", SEARCHING)
def test_no_round_asks_for_more_pulls_than_pairs_are_left(
    name: str, unit: str, small_replay: Replay
) -> None:
    watched = Watched(create(name))
    reward = RewardModel(Weights({"accuracy": 1.0}), small_replay.candidates)
    huge = Budget(10**9 if unit == "calls" else 1e18, unit)  # type: ignore[arg-type]
    history, _ = run_selection(
        small_replay.candidates, small_replay.evaluator(), reward, watched, huge, seed=1
    )
    assert watched.rounds, "the strategy never asked"
    for asked, left in watched.rounds:
        assert asked <= left, f"{name} asked for {asked:,} pulls with {left} pairs left"
    assert history.calls <= 6 * 60


def test_round_size_is_capped_by_the_pool_whatever_the_budget_or_batch(
    small_replay: Replay,
) -> None:
    reward = RewardModel(Weights({"accuracy": 1.0}), small_replay.candidates)

    class Probe(Strategy):
        name = "probe"
        summary = "records round sizes at the start"
        sizes: dict[str, int] = {}  # noqa: RUF012

        def start(self, history: History, rng: np.random.Generator) -> None:
            self.sizes.update(
                auto=auto_batch(history),
                default=round_size(history, None)[0],
                batch=round_size(history, 10**9)[0],
            )

        def ask(self, history: History) -> Decision:
            return Decision(stop="strategy_done")

    for budget in (Budget(1.0), Budget(10**9)):
        probe = Probe()
        run_selection(
            small_replay.candidates, small_replay.evaluator(), reward, probe, budget, seed=0
        )
        # 360 pairs in about 100 rounds: the same round for "everything" and "more than that".
        assert probe.sizes == {"auto": 4, "default": 4, "batch": 360}
