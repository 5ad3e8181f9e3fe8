"""The two reference points every strategy is measured against."""

from __future__ import annotations

from greenrunner.history import History
from greenrunner.strategies._base import Decision, Strategy


class BruteForce(Strategy):
    name = "brute_force"
    summary = "baseline: every model on every sample; exact, and the most expensive"
    baseline = True

    def ask(self, history: History) -> Decision:
        n = history.n_samples
        return Decision(
            pulls={int(k): n - int(history.pulls[k]) for k in history.active.nonzero()[0]}
        )


class Benchmark(Strategy):
    name = "benchmark"
    summary = "baseline: model-card accuracy in the same reward; zero target evaluations"
    baseline = True

    def ask(self, history: History) -> Decision:
        return Decision(stop="no_target_evaluation")
