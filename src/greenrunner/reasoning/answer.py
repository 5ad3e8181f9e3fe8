"""Reading an LLM advisor's raw answer into a validated :class:`WeightSuggestion` (the
question and the schema are in :mod:`greenrunner.reasoning.prompt`).

LLM answers are often imperfect: JSON inside prose or code fences, cut off at the token
limit, weights as strings or percentages, negative, not summing to 1, under other names.
What can be repaired is repaired, and every repair leaves a note for the user, so weights
are never silently changed. What cannot be repaired raises :class:`AnswerError`, and the
caller asks again or falls back to another advisor.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from greenrunner.errors import ConfigError, GreenRunnerError
from greenrunner.reasoning.suggestion import CORE_METRICS, WeightSuggestion, suggestion_weights
from greenrunner.reward import ACCURACY, METRICS

# Longer text is clipped: a runaway model should not flood the report.
MAX_TEXT_CHARS = 2000
# Longer answers are not searched for JSON (the repair below is quadratic in the worst case).
MAX_ANSWER_CHARS = 50_000

# Names models use for the metrics, after lower-casing and joining words with "_".
_ALIASES = {
    "acc": ACCURACY,
    "top1": ACCURACY,
    "top_1_accuracy": ACCURACY,
    "model_size": "size",
    "size_bytes": "size",
    "file_size": "size",
    "macs": "complexity",
    "flops": "complexity",
    "compute": "complexity",
    "computation": "complexity",
    "computational_complexity": "complexity",
    "inference_latency": "latency",
    "memory_usage": "memory",
    "peak_memory": "memory",
    "energy_consumption": "energy",
    "power": "energy",
}
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


class AnswerError(GreenRunnerError):
    """An LLM answer with no usable weights; ask again, or use another advisor."""


def parse_answer(
    text: str,
    *,
    use_case: str,
    provider: str,
    model: str,
    stop_reason: str | None = None,
) -> WeightSuggestion:
    """Read an LLM's raw answer into a suggestion; repairs are listed in ``notes``.

    ``stop_reason`` is the API's ``finish_reason``; ``"length"`` means the model hit its
    token limit, which the note on a cut-off answer then says.
    Raises :class:`AnswerError` when no valid weights can be recovered.
    """
    notes: list[str] = []
    found = _extract_object(text, notes)
    if found.cut_off:
        why = " at its token limit" if stop_reason == "length" else ""
        notes.append(
            f"the model's answer was cut off{why}; its JSON was completed by closing the "
            "open brackets, so text after the cut is missing"
        )
    weights = _read_weights(_raw_weights(found.value, notes), notes, cut_off=found.cut_off)
    try:
        validated = suggestion_weights(weights)
    except ConfigError as err:
        raise AnswerError(f"the model's weights are not usable: {err}") from None
    return WeightSuggestion(
        weights=validated,
        justification=_justification(found.value, notes),
        tradeoffs=_tradeoffs(found.value, validated.as_dict(), notes),
        provider=provider,
        model=model,
        use_case=use_case,
        notes=tuple(notes),
    )


# --- finding the JSON object -------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    value: dict[str, Any]
    cut_off: bool = False
    note: str | None = None


def _extract_object(text: str, notes: list[str]) -> _Found:
    if not isinstance(text, str) or not text.strip():
        raise AnswerError("the model's answer was empty")
    if len(text) > MAX_ANSWER_CHARS:
        raise AnswerError(f"the model's answer is {len(text)} characters long; not read")
    fence = _FENCE.search(text)
    # The fenced block first; the whole text when the fence holds no answer (weak models
    # open empty fences).
    for body in ([fence.group(1)] if fence else []) + [text]:
        for start in [i for i, ch in enumerate(body) if ch == "{"][:50]:
            found = _parse_from(body, start)
            if found is not None and _looks_like_answer(found.value):
                if found.note:
                    notes.append(found.note)
                if body is text and (body[:start].strip() or _after_json(body, start)):
                    notes.append("the model wrapped its JSON in other text, which was ignored")
                return found
    raise AnswerError(f"the model's answer holds no JSON object with weights: {_excerpt(text)}")


def _parse_from(body: str, start: int) -> _Found | None:
    """The object starting at ``start``: as strict JSON, leniently, or completed if cut off."""
    try:
        value, _ = json.JSONDecoder().raw_decode(body, start)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return _Found(value)
    end = body.rfind("}") + 1
    lenient = _lenient(body[start:end]) if end > start else None
    if lenient is not None:
        return _Found(lenient[0], note=lenient[1])
    completed = _complete_truncated(body[start:])
    return _Found(completed, cut_off=True) if completed is not None else None


def _after_json(body: str, start: int) -> bool:
    try:
        _, end = json.JSONDecoder().raw_decode(body, start)
    except json.JSONDecodeError:
        return False
    return bool(body[end:].strip())


def _lenient(snippet: str) -> tuple[dict[str, Any], str] | None:
    """Near-JSON that models write: trailing commas, or a Python dict with single quotes."""
    try:
        value = json.loads(_TRAILING_COMMA.sub(r"\1", snippet))
    except json.JSONDecodeError:
        pass
    else:
        if isinstance(value, dict):
            return value, "the model's JSON had trailing commas, which were removed"
    try:
        # literal_eval evaluates literals only, never code.
        literal = ast.literal_eval(snippet)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(literal, dict):
        return literal, "the model answered with a Python-style dict, not JSON; read it anyway"
    return None


def _complete_truncated(snippet: str) -> dict[str, Any] | None:
    """Parse JSON cut off at the end by closing the open string and brackets, dropping a
    trailing partial member; the longest prefix that parses wins."""
    for prefix, closers in _prefixes(snippet):
        candidate = prefix.rstrip().rstrip(",")
        if candidate.endswith(":"):
            candidate += " null"
        try:
            value = json.loads(candidate + closers)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _prefixes(snippet: str) -> Iterator[tuple[str, str]]:
    """Prefixes of ``snippet`` worth closing, longest first, with the closing brackets
    each needs (and a closing quote where it ends inside a string)."""
    cuts: list[tuple[int, str]] = []
    stack: list[str] = []
    in_string = escaped = False
    for i, ch in enumerate(snippet):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
            cuts.append((i + 1, "".join(reversed(stack))))
        elif ch in "}]" and stack:
            stack.pop()
            if not stack:
                return  # complete, yet not valid JSON: closing brackets will not help
        elif ch == ",":
            cuts.append((i, "".join(reversed(stack))))
    closers = "".join(reversed(stack))
    # A cut inside a string value is repaired by closing the quote; escaped=True means the
    # text ends in a lone backslash, which must go. A number at the very end may have lost
    # digits (0.25 cut to 0.2), so it is dropped with its member instead of trusted.
    tail = snippet[:-1] if escaped else snippet
    if in_string:
        yield tail + '"', closers
    elif tail.rstrip()[-1:] not in "0123456789.-+eE":
        yield tail, closers
    for end, needed in reversed(cuts[-200:]):
        yield snippet[:end], needed


def _looks_like_answer(value: dict[str, Any]) -> bool:
    return any(_key(k) in ("weights", "weight") or _metric_name(k) for k in value)


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")


# --- the weights -----------------------------------------------------------------------------


def _key(name: object) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def _metric_name(name: object) -> str | None:
    key = re.sub(r"^(w|weight)_|_weight$", "", _key(name))
    if key in METRICS:
        return key
    return _ALIASES.get(key)


def _lookup(obj: Mapping[str, Any], *names: str) -> Any:
    """The value under the first of ``names`` present, matching keys loosely."""
    keys = {_key(k): v for k, v in obj.items()}
    for name in names:
        if name in keys:
            return keys[name]
    return None


def _raw_weights(obj: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    raw = _lookup(obj, "weights", "weight", "metric_weights")
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list):
        return _pairs(raw, notes)
    if raw is not None:
        raise AnswerError(f"the model's 'weights' is not an object of metric: number: {raw!r}")
    flat = {k: v for k, v in obj.items() if _metric_name(k)}
    if not flat:
        raise AnswerError(f"the model's answer has no 'weights': {_excerpt(json.dumps(obj))}")
    notes.append("the model gave its weights at the top level instead of under 'weights'")
    return flat


def _pairs(items: list[Any], notes: list[str]) -> dict[str, Any]:
    """``[{"metric": "size", "weight": 0.2}, ...]``, a shape some models prefer."""
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict):
            name = _lookup(item, "metric", "name")
            if name is not None:
                out[str(name)] = _lookup(item, "weight", "value")
    if not out:
        raise AnswerError(f"the model's 'weights' list names no metrics: {items!r}"[:300])
    notes.append("the model gave its weights as a list of pairs; read them by metric name")
    return out


def _read_weights(raw: Mapping[str, Any], notes: list[str], *, cut_off: bool) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, value in raw.items():
        metric = _metric_name(name)
        if metric is None:
            notes.append(
                f"the model weighed {str(name)!r}, which is not a metric GreenRunner knows "
                f"({', '.join(METRICS)}); that weight was dropped"
            )
        elif metric in values:
            notes.append(f"the model gave the {metric} weight twice; the first one was kept")
        else:
            if metric != _key(name):
                notes.append(f"the model's {str(name)!r} was read as the {metric} weight")
            number = _number(metric, value, notes)
            if number is not None:
                values[metric] = number
    _require_core(values, notes, cut_off=cut_off)
    return _scaled(_clamped(values, notes), notes)


def _number(metric: str, raw: Any, notes: list[str]) -> float | None:
    """A weight as a float, or None when it is null or not a number (with a note)."""
    if isinstance(raw, dict):  # {"weight": 0.6, "reason": "..."}
        raw = _lookup(raw, "weight", "value")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        notes.append(f"the model's {metric} weight {raw!r} is not a number; it was ignored")
        return None
    value = _from_text(metric, raw, notes) if isinstance(raw, str) else float(raw)
    if value is not None and not math.isfinite(value):
        notes.append(f"the model's {metric} weight was {value}; it was ignored")
        return None
    return value


def _from_text(metric: str, raw: str, notes: list[str]) -> float | None:
    text = raw.strip()
    percent = text.endswith("%")
    try:
        value = float(text.rstrip("%").strip())
    except ValueError:
        notes.append(f"the model's {metric} weight {raw!r} is not a number; it was ignored")
        return None
    if percent:
        value /= 100
    notes.append(f"the model wrote the {metric} weight as text {raw!r}; read as {value:g}")
    return value


def _require_core(values: dict[str, float], notes: list[str], *, cut_off: bool) -> None:
    missing = [m for m in CORE_METRICS if m not in values]
    if cut_off and missing:
        # Filling in zeros for weights lost at the cut would be silently wrong weights.
        raise AnswerError(
            f"the model's answer was cut off before its {', '.join(missing)} weight(s)"
        )
    if ACCURACY in missing:
        why = next((n for n in reversed(notes) if f"{ACCURACY} weight" in n), "none given")
        raise AnswerError(f"the model's answer has no usable accuracy weight ({why})")
    for metric in missing:
        values[metric] = 0.0
        notes.append(f"the model gave no usable {metric} weight; it was set to 0")


def _clamped(values: dict[str, float], notes: list[str]) -> dict[str, float]:
    for metric, value in values.items():
        if value < 0:
            notes.append(f"the model's {metric} weight was negative ({value:g}); set to 0")
            values[metric] = 0.0
    if not any(v > 0 for v in values.values()):
        raise AnswerError("the model's weights are all zero")
    return values


def _scaled(values: dict[str, float], notes: list[str]) -> dict[str, float]:
    total = sum(values.values())
    shown = ", ".join(f"{k}={v:g}" for k, v in values.items())
    if max(values.values()) > 1 and 90 <= total <= 110 and max(values.values()) <= 100:
        notes.append(f"the model's weights ({shown}) look like percentages; divided by 100")
        values = {k: v / 100 for k, v in values.items()}
        total = sum(values.values())
    elif max(values.values()) > 1:
        notes.append(f"the model's weights ({shown}) go above 1; scaled to sum to 1")
        return values
    if abs(total - 1) > 0.01:
        notes.append(f"the model's weights summed to {total:.3g}, not 1; scaled to sum to 1")
    return values


# --- the words --------------------------------------------------------------------------------


def _as_text(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return " ".join(raw.split())
    if isinstance(raw, dict):
        parts = (f"{k}: {_as_text(v)}" for k, v in raw.items() if _as_text(v))
        return " ".join(p if p.endswith(".") else p + "." for p in parts)
    if isinstance(raw, list):
        return " ".join(_as_text(v) for v in raw if _as_text(v))
    return str(raw)


def _wordless(text: str) -> bool:
    # Weak models fill required strings with "," or "...": that is no text at all.
    return not any(ch.isalpha() for ch in text)


def _clipped(text: str, what: str, notes: list[str]) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    notes.append(f"the model's {what} was {len(text)} characters long; clipped")
    return text[:MAX_TEXT_CHARS].rstrip() + "..."


def _justification(obj: Mapping[str, Any], notes: list[str]) -> str:
    text = _as_text(_lookup(obj, "justification", "reasoning", "rationale", "explanation"))
    if _wordless(text):
        notes.append("the model gave no justification")
        return "The model gave no justification."
    return _clipped(text, "justification", notes)


def _tradeoffs(
    obj: Mapping[str, Any], weights: Mapping[str, float], notes: list[str]
) -> dict[str, str]:
    raw = _lookup(obj, "tradeoffs", "trade_offs", "tradeoff", "trade_off")
    given = _tradeoff_items(raw)
    out: dict[str, str] = {}
    for name, text in given.items():
        metric = _metric_name(name)
        if metric is not None and not _wordless(text) and metric not in out:
            out[metric] = _clipped(text, f"{metric} trade-off", notes)
    missing = [m for m, w in weights.items() if m not in out and (w > 0 or m in CORE_METRICS)]
    if missing:
        notes.append(f"the model gave no trade-off for {', '.join(missing)}")
        out.update({m: f"The model gave no trade-off for {m}." for m in missing})
    return out


def _tradeoff_items(raw: Any) -> dict[str, str]:
    """Trade-offs as metric -> text, from an object, a list of pairs or of "metric: text"."""
    if isinstance(raw, dict):
        return {str(k): _as_text(v) for k, v in raw.items()}
    items: dict[str, str] = {}
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            name = _lookup(item, "metric", "name")
            text = _as_text(_lookup(item, "tradeoff", "trade_off", "text", "description"))
            if name is not None:
                items.setdefault(str(name), text)
        elif isinstance(item, str) and ":" in item:
            name, _, text = item.partition(":")
            items.setdefault(name.strip(), _as_text(text))
    return items
