"""The result of a selection: the same shape from the API, the CLI JSON and the web app."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.energy import EnergyReport
from greenrunner.engine import brute_force_cost, mac_charge
from greenrunner.errors import DataError
from greenrunner.history import History
from greenrunner.stats import hypergeom_interval
from greenrunner.strategies._base import Strategy

CONFIDENCE = 0.95


@dataclass(frozen=True)
class ModelReport:
    """One candidate in the result. Accuracy is None if it was never evaluated."""

    rank: int
    name: str
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    reward: float | None
    reward_ci_low: float | None
    reward_ci_high: float | None
    size_mb: float | None
    mmacs: float | None
    pulls: int
    status: str
    exact: bool
    note: str = ""


@dataclass(frozen=True)
class SelectionResult:
    strategy: str
    seed: int
    weights: dict[str, float]
    budget: dict[str, float | str]
    top: list[ModelReport]
    models: list[ModelReport]
    calls: int
    macs: float | None
    brute_force_calls: int
    brute_force_macs: float | None
    savings: dict[str, float | None]
    stop_reason: str
    tied_with_top: list[str]
    n_samples: int
    confidence: float = CONFIDENCE
    strategy_params: dict[str, Any] = field(default_factory=dict)
    accuracy_source: str = "target"  # "target" (evaluated) or "model card" (benchmark)
    # Real inference only: calls answered from the prediction cache vs computed.
    cache: dict[str, int] | None = None
    # Runs from a use case: the advisor's suggestion and what the user decided at staging
    # (greenrunner.reasoning.staging.StagingRecord.to_dict()).
    staging: dict[str, Any] | None = None
    # Real inference only: the run's energy (greenrunner.energy); None with energy_note
    # saying why when it was not measured (a replay, CodeCarbon missing, turned off).
    energy: EnergyReport | None = None
    energy_note: str = ""

    @property
    def recommended(self) -> str:
        return self.top[0].name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _clean(asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionResult:
        """The result back from ``to_dict()`` (stored experiments, resume, the web report).

        The one reader of stored results: nested records (models, energy) come back as
        their classes, so ``from_dict(r.to_dict()) == r``. A dictionary of another shape
        (written by another version) raises :class:`DataError` saying what does not fit.
        """
        if not isinstance(data, Mapping):
            raise DataError(f"a stored result must be a JSON object; got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise DataError(
                f"the stored result has fields this version does not know: {', '.join(unknown)}"
            )
        try:
            out = dict(data)
            out["top"] = [ModelReport(**m) for m in data["top"]]
            out["models"] = [ModelReport(**m) for m in data["models"]]
            energy = data.get("energy")
            out["energy"] = None if energy is None else EnergyReport.from_dict(energy)
            return cls(**out)
        except (TypeError, KeyError, AttributeError) as exc:
            raise DataError(f"the stored result does not fit this version ({exc})") from None

    def with_unavailable(self, unavailable: dict[str, str]) -> SelectionResult:
        """The result with models that could not be loaded or run listed as failed."""
        extra = [
            ModelReport(
                rank=len(self.models) + i,
                name=name,
                accuracy=None,
                ci_low=None,
                ci_high=None,
                reward=None,
                reward_ci_low=None,
                reward_ci_high=None,
                size_mb=None,
                mmacs=None,
                pulls=0,
                status="failed",
                exact=False,
                note=why,
            )
            for i, (name, why) in enumerate(sorted(unavailable.items()), start=1)
        ]
        return replace(self, models=[*self.models, *extra])


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def ranking(history: History, accuracy: np.ndarray | None = None) -> np.ndarray:
    """Candidate indices, best first: contenders by estimated reward, then the rest.

    Never by pull count. Candidates never evaluated come after evaluated ones in their group,
    ordered by their known costs, unless accuracy has no weight (then costs decide).
    """
    acc = history.accuracy() if accuracy is None else accuracy
    rm = history.reward
    est = np.asarray(rm.reward(acc)) if rm.w_acc else np.array(rm.offset, dtype=float)
    known = ~np.isnan(est)
    group = np.where(history.contenders, 0, 2) + np.where(known, 0, 1)
    key = np.where(known, -est, -rm.offset)
    return np.lexsort((np.arange(history.n_arms), key, group))


def recommend(history: History, strategy: Strategy | None = None) -> int:
    """The index of the recommended candidate (fast path for the study)."""
    estimate = None if strategy is None else strategy.estimate(history)
    return int(ranking(history, estimate)[0])


def build_result(
    candidates: Sequence[Candidate],
    history: History,
    *,
    strategy: str,
    strategy_params: dict[str, Any],
    seed: int,
    budget: Budget,
    stop_reason: str,
    card_accuracy: bool = False,
    estimate: np.ndarray | None = None,
) -> SelectionResult:
    """Everything a user wants to see: ranking with intervals, costs and savings."""
    n = history.n_samples
    rm = history.reward
    if card_accuracy:
        acc = np.array(
            [np.nan if c.benchmark_accuracy is None else c.benchmark_accuracy for c in candidates]
        )
    else:
        acc = history.accuracy() if estimate is None else np.asarray(estimate, dtype=float)
    order = ranking(history, acc)
    reports: list[ModelReport] = []
    for rank, arm in enumerate(order, start=1):
        c = candidates[arm]
        pulls = int(history.pulls[arm])
        a = None if np.isnan(acc[arm]) else float(acc[arm])
        lo = hi = None
        if a is not None:
            lo, hi = (
                (a, a)
                if card_accuracy
                else hypergeom_interval(int(history.successes[arm]), pulls, n, CONFIDENCE)
            )

        def rew(x: float | None, arm: int = int(arm)) -> float | None:
            if x is None:
                return float(rm.offset[arm]) if rm.w_acc == 0 else None
            return float(rm.w_acc * x + rm.offset[arm])

        reports.append(
            ModelReport(
                rank=rank,
                name=c.name,
                accuracy=a,
                ci_low=lo,
                ci_high=hi,
                reward=rew(a),
                reward_ci_low=rew(lo),
                reward_ci_high=rew(hi),
                size_mb=c.size_mb,
                mmacs=c.mmacs,
                pulls=pulls,
                status=str(history.status[arm]),
                exact=pulls >= n,
                note=history.reasons.get(int(arm), ""),
            )
        )
    bf_calls, bf_macs = brute_force_cost(candidates, n)
    macs = None
    if all(c.macs is not None for c in candidates):
        macs = float(
            sum(mac_charge(c) * int(p) for c, p in zip(candidates, history.pulls, strict=True))
        )
    top = [r for r in reports if r.status in ("active", "exact")][:3] or reports[:3]
    head = top[0]
    tied = [
        r.name
        for r in reports[1:]
        if r.status in ("active", "exact")
        and r.reward_ci_high is not None
        and head.reward_ci_low is not None
        and r.reward_ci_high >= head.reward_ci_low
    ]
    savings: dict[str, float | None] = {
        "calls_fraction": 1 - history.calls / bf_calls,
        "macs_fraction": None if macs is None or not bf_macs else 1 - macs / bf_macs,
        "mmacs": None if macs is None or bf_macs is None else (bf_macs - macs) / 1e6,
    }
    return SelectionResult(
        strategy=strategy,
        seed=seed,
        weights=rm.weights.as_dict(),
        budget=budget.as_dict(),
        top=top,
        models=reports,
        calls=history.calls,
        macs=macs,
        brute_force_calls=bf_calls,
        brute_force_macs=bf_macs,
        savings=savings,
        stop_reason=stop_reason,
        tied_with_top=tied,
        n_samples=n,
        strategy_params=strategy_params,
        accuracy_source="model card" if card_accuracy else "target",
    )
