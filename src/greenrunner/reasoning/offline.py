"""The offline advisor: deterministic, no network, no model download.

It finds the deployment contexts and requirements a use case mentions (from the phrases in
``data/advisor/offline.toml``), notices when one is negated ("latency is not a concern"),
and turns them into weights with the arithmetic the data file's header describes. The
justification quotes the words of the use case that moved each weight.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from greenrunner.reasoning.knowledge import Context, Knowledge, Language, load_knowledge
from greenrunner.reasoning.suggestion import (
    CORE_METRICS,
    WeightSuggestion,
    check_use_case,
    suggestion_weights,
)
from greenrunner.reward import ACCURACY, METRICS

_WORD = re.compile(r"[a-z0-9]+")
_LIST_WORDS = frozenset({"and", "or", "nor", "the", "its", "their"})
_BREAK = re.compile(r"[.;:!?,()\[\]\n]")


@dataclass(frozen=True)
class Cue:
    """One context found in the text: where, in the user's own words, and whether negated."""

    context: Context
    start: int  # word index
    end: int
    words: str
    negated: bool


@dataclass(frozen=True)
class _Text:
    original: str
    words: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]  # character span of each word
    clause: tuple[int, ...]  # clause number of each word


class OfflineAdvisor:
    """Rule-based suggestions from a readable knowledge file.

    ``measured`` names the further metrics (latency, memory, energy) the candidates
    actually measure; pressure on any other goes to its proxy (complexity or size).
    """

    name = "offline"
    deterministic = True

    def __init__(
        self, knowledge: str | Path | None = None, *, measured: Sequence[str] = ()
    ) -> None:
        self.knowledge: Knowledge = load_knowledge(knowledge)
        self.measured = tuple(measured)

    def suggest(self, use_case: str) -> WeightSuggestion:
        text = _read(check_use_case(use_case), self.knowledge.language)
        # Neutral phrases ("batch size") only keep their words from other phrases.
        cues = [c for c in find_cues(text, self.knowledge) if c.context.moves_weights]
        raw, evidence = self._weigh(cues)
        weights = suggestion_weights(raw)
        notes: list[str] = []
        if not cues:
            notes.append(
                "The use case names no deployment context or requirement this advisor "
                "recognises, so these are its defaults: accuracy first, with a light "
                "preference for small, cheap models. Say where the model runs and what "
                "matters (a phone, a drone, a GPU server; latency, battery, download size) "
                "to refine them."
            )
        negated = [c for c in cues if c.negated]
        if negated:
            notes.append(
                "Read as negated: "
                + "; ".join(f'"{c.words}" ({c.context.label})' for c in negated)
                + ". Rephrase if that is not what you meant."
            )
        return WeightSuggestion(
            weights=weights,
            justification=self._justify(weights.as_dict(), cues),
            tradeoffs=self._tradeoffs(weights.as_dict()),
            provider=self.name,
            model=f"rules from {Path(self.knowledge.source).name}",
            use_case=text.original,
            evidence=evidence,
            notes=tuple(notes),
        )

    def _weigh(self, cues: Sequence[Cue]) -> tuple[dict[str, float], dict[str, tuple[str, ...]]]:
        k = self.knowledge.model
        stakes: list[float] = []
        accuracy_relax = 1.0
        pressure: dict[str, list[float]] = {}
        relax: dict[str, float] = {"size": 1.0, "complexity": 1.0}
        evidence: dict[str, list[str]] = {}

        def cite(metric: str, cue: Cue) -> None:
            quoted = f'"{cue.words}"' + (" (negated)" if cue.negated else "")
            evidence.setdefault(metric, [])
            if quoted not in evidence[metric]:
                evidence[metric].append(quoted)

        for cue in cues:
            ctx = cue.context
            if ctx.stakes:
                if cue.negated:
                    accuracy_relax *= k["negated_accuracy"]
                else:
                    stakes.append(ctx.stakes)
                cite(ACCURACY, cue)
            for metric, p in ctx.pressure.items():
                target = self._target(metric)
                if cue.negated:
                    if target in relax:
                        relax[target] *= k["negated_relax"]
                else:
                    pressure.setdefault(target, []).append(p)
                cite(target, cue)
            for metric, factor in ctx.relax.items():
                if cue.negated:
                    pressure.setdefault(metric, []).append(k["negated_pressure"])
                else:
                    relax[metric] *= factor
                cite(metric, cue)
        raw = {ACCURACY: k["base_accuracy"] * accuracy_relax + k["stakes_gain"] * _combine(stakes)}
        for metric in ("size", "complexity"):
            factor = max(relax[metric], k["relax_floor"])
            raw[metric] = k["base_cost"] * factor + k["pressure_gain"] * _combine(
                pressure.get(metric, [])
            )
        for metric in self.measured:
            if metric in pressure:
                raw[metric] = k["pressure_gain"] * _combine(pressure[metric])
        return raw, {m: tuple(v) for m, v in evidence.items()}

    def _targets(self, ctx: Context) -> list[str]:
        moved = {*ctx.relax, *(m for m, p in ctx.pressure.items() if p >= 0.1)}
        return sorted({self._target(m) for m in moved})

    def _target(self, metric: str) -> str:
        """Where pressure on ``metric`` goes: itself if measured or core, else its proxy."""
        if metric in CORE_METRICS or metric in self.measured:
            return metric
        return METRICS[metric].proxy or "complexity"

    def _justify(self, weights: dict[str, float], cues: Sequence[Cue]) -> str:
        shown = ", ".join(f"{m} {w:.2f}" for m, w in weights.items())
        parts = [f"Suggested weights: {shown}."]
        lead = max(weights, key=lambda m: weights[m])
        if lead == ACCURACY:
            parts.append(
                "Accuracy leads because the chosen model must above all be right on your data."
            )
        seen: set[str] = set()
        for cue in cues:
            if cue.context.name in seen and not cue.negated:
                continue
            seen.add(cue.context.name)
            phrases = sorted(
                {c.words for c in cues if c.context is cue.context and c.negated == cue.negated}
            )
            quoted = ", ".join(f'"{p}"' for p in phrases)
            if cue.negated:
                parts.append(
                    f"{quoted} reads as negated, so {cue.context.label} counts for less: "
                    f"{_relaxed(cue.context, self._targets(cue.context))}."
                )
            else:
                parts.append(f"{quoted} ({cue.context.label}): {cue.context.why}.")
        return " ".join(parts)

    def _tradeoffs(self, weights: dict[str, float]) -> dict[str, str]:
        out = {}
        for metric, w in weights.items():
            level = _level(metric, w)
            out[metric] = self.knowledge.tradeoffs[metric][level]
        return out


def _relaxed(ctx: Context, targets: Sequence[str]) -> str:
    if ctx.stakes:
        return "accuracy gets a little less weight"
    verb = "rise a little" if ctx.relax else "drop below their defaults"
    return f"the {' and '.join(targets)} weight{'s' if len(targets) > 1 else ''} {verb}"


def _level(metric: str, weight: float) -> str:
    high, low = (0.7, 0.4) if metric == ACCURACY else (0.25, 0.1)
    return "high" if weight >= high else "low" if weight < low else "medium"


def _combine(pressures: Sequence[float]) -> float:
    """Several pressures on one metric saturate: 1 - prod(1 - p)."""
    return 1.0 - math.prod(1.0 - p for p in pressures)


def _read(text: str, language: Language) -> _Text:
    lowered = text.lower()
    if len(lowered) != len(text):  # rare Unicode case changes: quote the lowered text
        text = lowered
    # "don't" -> "don t", "real-time" -> "real time": word characters only.
    matches = list(_WORD.finditer(lowered))
    words = tuple(m.group() for m in matches)
    clause, number, last = [], 0, 0
    for m in matches:
        if _BREAK.search(lowered, last, m.start()) or m.group() in language.clause_breaks:
            number += 1
        clause.append(number)
        last = m.end()
    return _Text(text, words, tuple(m.span() for m in matches), tuple(clause))


def find_cues(text: _Text, knowledge: Knowledge) -> list[Cue]:
    """Every context mentioned, longest phrase first, each word used by one phrase at most."""
    found: list[tuple[int, int, Context]] = []
    for ctx in knowledge.contexts:
        for phrase in ctx.phrases:
            found.extend((i, i + len(phrase), ctx) for i in _phrase_hits(text.words, phrase))
        for pattern in ctx.regex:
            found.extend(
                (*_word_range(text, m.span()), ctx) for m in pattern.finditer(" ".join(text.words))
            )
    found.sort(key=lambda f: (-(f[1] - f[0]), f[0]))
    owner: dict[int, int] = {}  # word index -> index of the span that uses it
    spans: list[tuple[int, int, Context]] = []
    for start, end, ctx in found:
        if end <= start or any(i in owner for i in range(start, end)):
            continue
        owner.update({i: len(spans) for i in range(start, end)})
        spans.append((start, end, ctx))
    cues = []
    for start, end, ctx in spans:
        first, last = text.spans[start][0], text.spans[end - 1][1]
        negated = ctx.negatable and _negated(text, start, end, set(owner), knowledge.language)
        cues.append(Cue(ctx, start, end, text.original[first:last], negated))
    return sorted(cues, key=lambda c: c.start)


def _phrase_hits(words: Sequence[str], phrase: tuple[str, ...]) -> list[int]:
    n = len(phrase)
    return [
        i
        for i in range(len(words) - n + 1)
        if all(_word_matches(words[i + j], phrase[j]) for j in range(n))
    ]


def _word_matches(word: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return word.startswith(pattern[:-1])
    return word == pattern


def _word_range(text: _Text, span: tuple[int, int]) -> tuple[int, int]:
    """Word indices covered by a character span of the space-joined words."""
    start = end = 0
    pos = 0
    for i, word in enumerate(text.words):
        if pos <= span[0] < pos + len(word) + 1:
            start = i
        if pos < span[1] <= pos + len(word) + 1:
            end = i + 1
        pos += len(word) + 1
    return start, end


def _negated(text: _Text, start: int, end: int, taken: set[int], lang: Language) -> bool:
    """A negator shortly before the phrase ("no GPU", "doesn't need to be real-time"), or
    right after it behind a verb ("latency is not a concern"), within the same clause.
    "must not exceed" states a limit, "not only" and "without sacrificing" do not negate,
    and a negator before another phrase belongs to that one ("never miss a tumour")."""
    words, clause = text.words, text.clause
    for i in range(start - 1, max(-1, start - lang.window - 1), -1):
        if clause[i] != clause[start] or i in taken:
            break
        if words[i] not in lang.negators:
            continue
        between = words[i + 1 : start]
        is_limit = bool(lang.limit_words.intersection(between))
        return not (is_limit or lang.cancel_words.intersection(between[:1]))
    after = [i for i in range(end, min(len(words), end + 6)) if clause[i] == clause[start]]
    if any(words[i] in lang.postfix_negators for i in after[:3]):  # "size irrelevant"
        return True
    # "latency is not a concern", "cost and size don't matter": a verb right after the
    # phrase (or after the phrases it is listed with), then a negator.
    rest = list(itertools.dropwhile(lambda i: i in taken or words[i] in _LIST_WORDS, after))
    return bool(
        rest
        and words[rest[0]] in lang.after_verbs
        and any(words[i] in lang.negators for i in rest[1:3])
    )
