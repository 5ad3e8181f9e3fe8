"""The advisor seam: ``suggest(use_case) -> WeightSuggestion``; and sampling several draws."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from greenrunner.errors import ConfigError
from greenrunner.reasoning.suggestion import WeightSuggestion, check_use_case, combine

MAX_SAMPLES = 200


@runtime_checkable
class Advisor(Protocol):
    """Turns a plain-text use case into suggested weights.

    ``deterministic`` advisors give the same answer every time, so drawing several samples
    from them is pointless and :func:`advise` draws one.
    """

    name: str
    deterministic: bool

    def suggest(self, use_case: str) -> WeightSuggestion: ...


def advise(advisor: Advisor, use_case: str, *, samples: int = 1) -> WeightSuggestion:
    """Ask ``advisor`` ``samples`` times and report the mean weights and their spread
    (the paper averaged 100 GPT-4 answers)."""
    text = check_use_case(use_case)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise ConfigError(f"samples must be an integer from 1 to {MAX_SAMPLES}; got {samples!r}")
    if advisor.deterministic and samples > 1:
        from dataclasses import replace

        one = advisor.suggest(text)
        note = (
            f"the {advisor.name} provider is deterministic: {samples} samples would all be "
            "identical, so one was drawn"
        )
        return replace(one, notes=(*one.notes, note))
    return combine([advisor.suggest(text) for _ in range(samples)])
