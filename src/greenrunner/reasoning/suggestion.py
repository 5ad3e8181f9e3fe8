"""What an advisor returns: weights for Equation 1 with the reasons behind them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from greenrunner.errors import ConfigError
from greenrunner.reward import ACCURACY, METRICS, Weights

# The three metrics of the paper's Equation 1; every suggestion weighs these, others optionally.
CORE_METRICS = (ACCURACY, "size", "complexity")

MAX_USE_CASE_CHARS = 4000


def check_use_case(text: object) -> str:
    """The use case, stripped; a clear error for empty, non-text or overlong input."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            "the use case is empty; describe what the model is for and where it runs, e.g. "
            '"Recommend a model for detecting objects deployed on a drone"'
        )
    text = " ".join(text.split())
    if len(text) > MAX_USE_CASE_CHARS:
        raise ConfigError(
            f"the use case is {len(text)} characters long; keep it under "
            f"{MAX_USE_CASE_CHARS} (a few sentences on the task, the hardware and what matters)"
        )
    return text


def normalise(values: Mapping[str, float]) -> dict[str, float]:
    """Weights scaled to sum to 1, rounded to 3 decimals (the rounding remainder goes to
    the largest weight, so the rounded values still sum to exactly 1 at 3 decimals)."""
    total = sum(values.values())
    if not math.isfinite(total) or total <= 0:
        raise ConfigError(f"weights must have a positive, finite sum; got {dict(values)}")
    rounded = {k: round(v / total, 3) for k, v in values.items()}
    top = max(rounded, key=lambda k: rounded[k])
    rounded[top] = round(rounded[top] + 1.0 - sum(rounded.values()), 3)
    return rounded


@dataclass(frozen=True)
class WeightSuggestion:
    """Weights for accuracy, size and complexity (and further metrics when the use case
    calls for them) summing to 1, with the justification and the trade-offs per metric.

    ``evidence`` maps each metric to the phrases of the use case that moved its weight;
    ``notes`` says what the user should know about how the suggestion was made (defaults
    for vague text, repaired or replaced LLM answers). ``spread`` is the standard deviation
    of each weight over ``samples`` draws (empty for a single draw).
    """

    weights: Weights
    justification: str
    tradeoffs: Mapping[str, str]
    provider: str
    model: str
    use_case: str = ""
    samples: int = 1
    spread: Mapping[str, float] = field(default_factory=dict)
    evidence: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        total = sum(self.weights.values.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"suggested weights must sum to 1; got {total:g} ({self.weights})")
        if self.samples < 1:
            raise ConfigError(f"samples must be at least 1; got {self.samples}")
        object.__setattr__(self, "tradeoffs", MappingProxyType(dict(self.tradeoffs)))
        object.__setattr__(self, "spread", MappingProxyType(dict(self.spread)))
        object.__setattr__(
            self, "evidence", MappingProxyType({k: tuple(v) for k, v in self.evidence.items()})
        )
        object.__setattr__(self, "notes", tuple(self.notes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "use_case": self.use_case,
            "weights": self.weights.as_dict(),
            "justification": self.justification,
            "tradeoffs": dict(self.tradeoffs),
            "evidence": {k: list(v) for k, v in self.evidence.items()},
            "provider": self.provider,
            "model": self.model,
            "samples": self.samples,
            "spread": dict(self.spread),
            "notes": list(self.notes),
        }

    def with_weights(self, weights: Weights, why: str) -> WeightSuggestion:
        """The suggestion after the user changed the weights at staging (kept on record)."""
        from dataclasses import replace

        return replace(
            self,
            weights=Weights(normalise(weights.values)),
            notes=(*self.notes, why),
        )


def suggestion_weights(values: Mapping[str, float]) -> Weights:
    """Validated weights from raw values: the core metrics always present, sum 1."""
    unknown = sorted(set(values) - set(METRICS))
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    full = {name: float(values.get(name, 0.0)) for name in CORE_METRICS}
    full.update({k: float(v) for k, v in values.items() if k not in full and v > 0})
    Weights(full)  # validates: finite, non-negative, not all zero
    return Weights(normalise(full))


def combine(draws: Sequence[WeightSuggestion]) -> WeightSuggestion:
    """Several draws of one advisor as one suggestion: the mean weights, the spread (std)
    of each, and the words of the draw closest to the mean."""
    if not draws:
        raise ConfigError("no suggestions to combine")
    if len(draws) == 1:
        return draws[0]
    names = list(dict.fromkeys(n for d in draws for n in d.weights.as_dict()))
    table = [[d.weights[n] for n in names] for d in draws]
    means = [sum(col) / len(col) for col in zip(*table, strict=True)]
    stds = [
        math.sqrt(sum((v - m) ** 2 for v in col) / len(col))
        for col, m in zip(zip(*table, strict=True), means, strict=True)
    ]
    closest = min(
        range(len(draws)),
        key=lambda i: sum((v - m) ** 2 for v, m in zip(table[i], means, strict=True)),
    )
    chosen = draws[closest]
    notes = list(dict.fromkeys(n for d in draws for n in d.notes))
    from dataclasses import replace

    return replace(
        chosen,
        weights=suggestion_weights(dict(zip(names, means, strict=True))),
        samples=len(draws),
        spread={n: round(s, 4) for n, s in zip(names, stds, strict=True)},
        notes=tuple(notes),
    )
