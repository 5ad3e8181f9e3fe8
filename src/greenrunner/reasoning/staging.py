"""Staging: the user reviews the suggested weights and accepts or edits them before a run.

The interaction itself lives with the interface (CLI prompt, web sliders); this module
holds what they share: applying an edit, fitting weights to what the candidates measure,
and the record of what was decided, which the result keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from greenrunner.candidates import Candidate
from greenrunner.errors import ConfigError
from greenrunner.reasoning.suggestion import WeightSuggestion, normalise
from greenrunner.reward import METRICS, Weights, parse_pairs

Decision = Literal["accepted", "edited", "given"]


def apply_edit(current: Weights, edit: str) -> Weights:
    """``current`` with the metrics named in ``edit`` ("size=0.4" or
    "accuracy=0.7,complexity=0") replaced, then scaled to sum 1."""
    values = dict(current.values)
    values.update(parse_pairs(edit))
    return Weights(normalise(Weights(values).values))


def fit_to_candidates(
    weights: Weights, candidates: Sequence[Candidate]
) -> tuple[Weights, tuple[str, ...]]:
    """Weights the reward can use on these candidates: a further metric (latency, memory,
    energy) that some candidate does not measure hands its weight to its proxy (MACs or
    size), with a note saying so."""
    values = dict(weights.values)
    notes = []
    for name, w in weights.values.items():
        proxy = METRICS[name].proxy
        if proxy is None or w == 0:
            continue
        missing = [c.name for c in candidates if c.metric(name) is None]
        if missing:
            values[proxy] = values.get(proxy, 0.0) + values.pop(name)
            notes.append(
                f"{name} is not measured for {len(missing)} of {len(candidates)} models, so its "
                f"weight {w:.2f} went to {proxy}, its closest measured stand-in"
            )
    return Weights(values), tuple(notes)


@dataclass(frozen=True)
class StagingRecord:
    """What the user decided at staging, kept with the result."""

    suggestion: WeightSuggestion | None
    weights: Weights
    decision: Decision
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.decision not in ("accepted", "edited", "given"):
            raise ConfigError(f"unknown staging decision {self.decision!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "suggestion": self.suggestion.to_dict() if self.suggestion else None,
            "weights": self.weights.as_dict(),
            "decision": self.decision,
            "notes": list(self.notes),
        }
