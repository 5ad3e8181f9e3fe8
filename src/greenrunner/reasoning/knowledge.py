"""The offline advisor's knowledge, read and validated from its data file.

The file (``data/advisor/offline.toml``) says which phrases signal which deployment context
and how each context moves the weights; its header explains the arithmetic. A mistake in it
is reported with the context's name and the key, not discovered as a wrong suggestion.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from greenrunner.errors import ConfigError, DataError
from greenrunner.reasoning.suggestion import CORE_METRICS
from greenrunner.textfiles import read_text

EXTRA_METRICS = ("latency", "memory", "energy")
_LEVELS = ("high", "medium", "low")
_CONTEXT_KEYS = {
    "name",
    "label",
    "phrases",
    "regex",
    "accuracy",
    "size",
    "complexity",
    "relax_size",
    "relax_complexity",
    "extra",
    "why",
    "negatable",
}
_MODEL_KEYS = {
    "base_accuracy",
    "stakes_gain",
    "base_cost",
    "pressure_gain",
    "negated_relax",
    "negated_pressure",
    "relax_floor",
    "negated_accuracy",
}


@dataclass(frozen=True)
class Context:
    """A deployment context or requirement and what it does to the weights."""

    name: str
    label: str
    why: str
    phrases: tuple[tuple[str, ...], ...]
    regex: tuple[re.Pattern[str], ...] = ()
    stakes: float = 0.0
    pressure: Mapping[str, float] = field(default_factory=dict)  # size, complexity, extras
    relax: Mapping[str, float] = field(default_factory=dict)  # size, complexity
    negatable: bool = True

    @property
    def moves_weights(self) -> bool:
        return bool(self.stakes or self.pressure or self.relax)


@dataclass(frozen=True)
class Language:
    negators: frozenset[str]
    postfix_negators: frozenset[str]
    after_verbs: frozenset[str]
    limit_words: frozenset[str]
    cancel_words: frozenset[str]
    clause_breaks: frozenset[str]
    window: int


@dataclass(frozen=True)
class Knowledge:
    model: Mapping[str, float]
    language: Language
    contexts: tuple[Context, ...]
    tradeoffs: Mapping[str, Mapping[str, str]]
    source: str


def default_knowledge_path() -> Path:
    return Path(str(resources.files("greenrunner") / "data" / "advisor" / "offline.toml"))


def load_knowledge(path: str | Path | None = None) -> Knowledge:
    """Read and check the knowledge file (the bundled one unless ``path`` is given)."""
    source = Path(path) if path is not None else default_knowledge_path()
    try:
        raw = tomllib.loads(read_text(source, "the advisor knowledge file"))
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"advisor knowledge {source} is not valid TOML: {exc}") from None
    where = str(source)
    model = _numbers(raw.get("model", {}), _MODEL_KEYS, f"{where} [model]")
    missing = sorted(_MODEL_KEYS - set(model))
    if missing:
        raise ConfigError(f"{where} [model] lacks {', '.join(missing)}")
    contexts = tuple(_context(c, where) for c in raw.get("context", []))
    if not contexts:
        raise ConfigError(f"{where} defines no [[context]]")
    tradeoffs = raw.get("tradeoffs", {})
    for metric in (*CORE_METRICS, *EXTRA_METRICS):
        levels = tradeoffs.get(metric, {})
        if set(levels) != set(_LEVELS):
            raise ConfigError(f"{where} [tradeoffs.{metric}] needs exactly high, medium and low")
    return Knowledge(
        model=model,
        language=_language(raw.get("language", {}), where),
        contexts=contexts,
        tradeoffs=tradeoffs,
        source=where,
    )


def _numbers(table: Mapping[str, Any], allowed: set[str], where: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(allowed))}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}: {key} must be a non-negative number; got {value!r}")
        out[key] = float(value)
    return out


def _language(table: Mapping[str, Any], where: str) -> Language:
    def words(key: str) -> frozenset[str]:
        return frozenset(str(w).lower() for w in table.get(key, []))

    window = table.get("window", 5)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"{where} [language] window must be a positive integer; got {window!r}")
    return Language(
        negators=words("negators"),
        postfix_negators=words("postfix_negators"),
        after_verbs=words("after_verbs"),
        limit_words=words("limit_words"),
        cancel_words=words("cancel_words"),
        clause_breaks=words("clause_breaks"),
        window=window,
    )


def _context(table: Mapping[str, Any], where: str) -> Context:
    name = str(table.get("name", "")).strip()
    if not name:
        raise ConfigError(f"{where}: a [[context]] lacks its name")
    at = f"{where} context {name!r}"
    unknown = sorted(set(table) - _CONTEXT_KEYS)
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}")
    if not table.get("why") or not table.get("phrases"):
        raise ConfigError(f"{at}: needs `phrases` and `why`")
    effects = _numbers(
        {k: v for k, v in table.items() if k in ("accuracy", "size", "complexity")},
        {"accuracy", "size", "complexity"},
        at,
    )
    relax = _numbers(
        {k[len("relax_") :]: v for k, v in table.items() if k.startswith("relax_")},
        {"size", "complexity"},
        at,
    )
    extra = _numbers(table.get("extra", {}), set(EXTRA_METRICS), f"{at} extra")
    if any(v > 1 for v in (*effects.values(), *relax.values(), *extra.values())):
        raise ConfigError(f"{at}: pressures and relax factors are between 0 and 1")
    try:
        regex = tuple(re.compile(p) for p in table.get("regex", []))
    except re.error as exc:
        raise ConfigError(f"{at}: bad regular expression: {exc}") from None
    return Context(
        name=name,
        label=str(table.get("label", name)),
        why=str(table["why"]),
        phrases=tuple(tokenise_phrase(p) for p in table["phrases"]),
        regex=regex,
        stakes=effects.pop("accuracy", 0.0),
        pressure={**effects, **extra},
        relax=relax,
        negatable=bool(table.get("negatable", True)),
    )


def tokenise_phrase(phrase: str) -> tuple[str, ...]:
    """A phrase as words; hyphens and spaces are the same ("real-time" = "real time")."""
    words = tuple(re.findall(r"[a-z0-9]+\*?", phrase.lower()))
    if not words:
        raise ConfigError(f"advisor phrase {phrase!r} has no words")
    return words
