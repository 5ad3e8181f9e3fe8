"""The question put to an LLM advisor: the prompt (from the ``prompt.md`` template), the
chat messages, and the JSON schema its answer must follow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from greenrunner.errors import ConfigError
from greenrunner.reasoning.suggestion import CORE_METRICS

PROMPT_FILE = Path(__file__).with_name("prompt.md")
# Further metrics the prompt offers; the model should leave them null unless asked for.
OPTIONAL_METRICS = ("latency", "memory", "energy")
ASKED_METRICS = (*CORE_METRICS, *OPTIONAL_METRICS)
SYSTEM_MESSAGE = (
    "You weigh the metrics for choosing a pre-trained model. "
    "You answer with exactly one JSON object and nothing else."
)


def load_prompt(path: Path | None = None) -> str:
    """The prompt template (``prompt.md`` next to this module unless ``path`` is given)."""
    source = path or PROMPT_FILE
    try:
        template = source.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read the prompt template {source}: {err}") from None
    if "{use_case}" not in template:
        raise ConfigError(f"the prompt template {source} has no {{use_case}} placeholder")
    return template


def render_prompt(use_case: str, template: str | None = None) -> str:
    # str.replace, not str.format: the JSON example in the template is full of braces.
    return (template or load_prompt()).replace("{use_case}", use_case)


def chat_messages(use_case: str, template: str | None = None) -> list[dict[str, str]]:
    """The chat-completions ``messages`` asking for weights for ``use_case``."""
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": render_prompt(use_case, template)},
    ]


def answer_schema() -> dict[str, Any]:
    """JSON schema of the answer, in the subset OpenAI's strict structured output accepts
    (every property required, no extra ones; optional metrics are nullable instead)."""

    def members(kind: str, optional: str) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                **{m: {"type": kind} for m in CORE_METRICS},
                **{m: {"type": [optional, "null"]} for m in OPTIONAL_METRICS},
            },
            "required": list(ASKED_METRICS),
            "additionalProperties": False,
        }

    return {
        "type": "object",
        "properties": {
            "weights": members("number", "number"),
            "justification": {"type": "string"},
            "tradeoffs": members("string", "string"),
        },
        "required": ["weights", "justification", "tradeoffs"],
        "additionalProperties": False,
    }
