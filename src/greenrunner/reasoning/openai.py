"""Weights from any OpenAI-compatible chat-completions server: OpenAI, Azure OpenAI, vLLM,
Ollama, llama.cpp's server, LM Studio.

``base_url`` is everything before ``/chat/completions``: ``https://api.openai.com/v1``,
``http://127.0.0.1:8080/v1``, ``https://NAME.openai.azure.com/openai/v1``. A trailing slash
is ignored, a URL that already ends in ``/chat/completions`` is used as given, and a query
string (``?api-version=...``) is kept.

The API key is read from an environment variable each time a request is sent, goes out only
as ``Authorization: Bearer``, and is never stored, logged or quoted in a message; without a
key no header is sent (local servers need none).

Every request ends in an answer: timeouts, connection errors, 5xx replies and unusable
answers are retried a bounded number of times, after which the fallback advisor (offline by
default) answers, with a warning note that says what went wrong.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from greenrunner.errors import ConfigError
from greenrunner.reasoning.answer import AnswerError, parse_answer
from greenrunner.reasoning.base import Advisor
from greenrunner.reasoning.prompt import answer_schema, chat_messages
from greenrunner.reasoning.suggestion import WeightSuggestion, check_use_case
from greenrunner.reasoning.transport import (
    BadResponseError,
    HTTPStatusError,
    Transport,
    TransportError,
    UrllibTransport,
    chat_url,
    clip,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 800
MAX_RETRIES = 10
# Structured output, from the strictest to none; a server that rejects one gets the next.
_FORMATS: tuple[str | None, ...] = ("json_schema", "json_object", None)
_FORMAT_WORDS = ("response_format", "response format", "json_schema", "json_object", "grammar")


@dataclass
class _Dialect:
    """What the server accepts, learnt from its HTTP 400 replies and kept for later calls."""

    format_index: int = 0
    token_field: str = "max_tokens"
    temperature: bool = True


class ChatAdvisor:
    """An advisor speaking the chat-completions protocol over some transport: the request,
    the downgrades a server asks for, the bounded retries and the fallback.

    :class:`OpenAIAdvisor` sends requests over HTTP; the local advisor sends them to a model
    in the same process.
    """

    name: str
    deterministic = False

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        url: str,
        transport: Transport,
        api_key_env: str | None,
        timeout: float,
        retries: int,
        temperature: float,
        max_tokens: int,
        backoff: float,
        fallback: Advisor | None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"give the model name to ask, e.g. gpt-4o-mini; got {model!r}")
        self.name = provider
        self.model = model.strip()
        self.url = url
        self.transport = transport
        self.api_key_env = api_key_env
        self.timeout = _in_range("timeout", timeout, 0.0, 3600.0, "seconds", low_open=True)
        self.retries = int(_in_range("retries", retries, 0, MAX_RETRIES, "", integer=True))
        self.temperature = _in_range("temperature", temperature, 0.0, 2.0, "")
        self.max_tokens = int(_in_range("max_tokens", max_tokens, 16, 32768, "", integer=True))
        self.backoff = _in_range("backoff", backoff, 0.0, 60.0, "seconds")
        self._fallback = fallback
        self._dialect = _Dialect()
        self.attempts = 0  # requests the last suggest() sent, retries and downgrades included

    def suggest(self, use_case: str) -> WeightSuggestion:
        text = check_use_case(use_case)
        self.attempts = 0
        tries = self.retries + 1
        problem = "no attempt was made"
        for attempt in range(1, tries + 1):
            try:
                return self._ask(text)
            except (TransportError, AnswerError) as err:
                problem = self._redacted(str(err))
                again = attempt < tries and _retryable(err)
                log.warning(
                    "%s advisor, try %d of %d: %s%s",
                    self.name,
                    attempt,
                    tries,
                    problem,
                    "; asking again" if again else "",
                )
                if not again:
                    break
                time.sleep(self.backoff * attempt)
        return self._fall_back(text, problem, attempt)

    def _ask(self, use_case: str) -> WeightSuggestion:
        notes: list[str] = []
        while True:
            self.attempts += 1
            try:
                reply = self.transport.post(
                    self.url, self._headers(), self._payload(use_case), self.timeout
                )
                break
            except HTTPStatusError as err:
                change = self._adapt(err)
                if change is None:
                    raise
                log.info("%s advisor: %s", self.name, change)
                notes.append(change)
        content, stop = _content(self.url, reply)
        suggestion = parse_answer(
            content, use_case=use_case, provider=self.name, model=self.model, stop_reason=stop
        )
        return replace(suggestion, notes=(*notes, *suggestion.notes))

    def _payload(self, use_case: str) -> dict[str, Any]:
        dialect = self._dialect
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(use_case),
            dialect.token_field: self.max_tokens,
        }
        if dialect.temperature:
            payload["temperature"] = self.temperature
        kind = _FORMATS[dialect.format_index]
        if kind == "json_schema":
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "metric_weights",
                    "schema": answer_schema(),
                    "strict": True,
                },
            }
        elif kind is not None:
            payload["response_format"] = {"type": kind}
        return payload

    def _adapt(self, err: HTTPStatusError) -> str | None:
        """Change the request the way a 400 reply asks; a note saying how, or None."""
        if err.status not in (400, 422):
            return None
        detail = err.detail.lower()
        dialect = self._dialect
        if dialect.format_index < len(_FORMATS) - 1 and any(w in detail for w in _FORMAT_WORDS):
            old = _FORMATS[dialect.format_index]
            dialect.format_index += 1
            new = _FORMATS[dialect.format_index]
            asked = f"{new} output" if new else "the JSON by the prompt alone"
            return f"the server does not accept {old} output; asked for {asked} instead"
        if dialect.token_field == "max_tokens" and "max_tokens" in detail:
            dialect.token_field = "max_completion_tokens"
            return "the server wants max_completion_tokens instead of max_tokens; resent"
        if dialect.temperature and "temperature" in detail:
            dialect.temperature = False
            return "the server does not accept a temperature; its default was used"
        return None

    def _headers(self) -> dict[str, str]:
        key = self._api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _api_key(self) -> str:
        return os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""

    def _redacted(self, text: str) -> str:
        # Servers may echo what they were sent; the key must not reach notes or logs.
        key = self._api_key()
        return text.replace(key, "[API key]") if len(key) >= 4 else text

    def _fall_back(self, use_case: str, problem: str, attempts: int) -> WeightSuggestion:
        advisor = self._fallback_advisor()
        warning = (
            f"WARNING: the {self.name} provider ({self.model}) gave no usable answer after "
            f"{attempts} {'try' if attempts == 1 else 'tries'}: {problem}. These are the "
            f"{advisor.name} provider's weights instead."
        )
        log.warning("%s", warning)
        suggestion = advisor.suggest(use_case)
        return replace(suggestion, notes=(warning, *suggestion.notes))

    def _fallback_advisor(self) -> Advisor:
        if self._fallback is None:
            # Imported here: the offline knowledge is only loaded when it is needed.
            from greenrunner.reasoning.offline import OfflineAdvisor

            self._fallback = OfflineAdvisor()
        return self._fallback


class OpenAIAdvisor(ChatAdvisor):
    """Weights from an OpenAI-compatible ``/chat/completions`` endpoint (see the module)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        retries: int = 2,
        temperature: float = 0.7,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        backoff: float = 1.0,
        transport: Transport | None = None,
        fallback: Advisor | None = None,
    ) -> None:
        if not isinstance(api_key_env, str) or not api_key_env.strip():
            raise ConfigError(
                f"api_key_env must name an environment variable, e.g. OPENAI_API_KEY; "
                f"got {api_key_env!r}"
            )
        super().__init__(
            provider="openai",
            model=model,
            url=chat_url(base_url),
            transport=transport or UrllibTransport(),
            api_key_env=api_key_env.strip(),
            timeout=timeout,
            retries=retries,
            temperature=temperature,
            max_tokens=max_tokens,
            backoff=backoff,
            fallback=fallback,
        )


def _retryable(err: Exception) -> bool:
    return not isinstance(err, TransportError) or err.retryable


def _content(url: str, reply: Mapping[str, Any]) -> tuple[str, str | None]:
    """The message text and finish reason of a chat-completion reply."""
    if "error" in reply:
        raise BadResponseError(f"{url} answered with an error: {clip(reply['error'])}")
    choices = reply.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(first, dict) or not isinstance(message, dict):
        raise BadResponseError(f"{url} sent no chat completion: {clip(json.dumps(reply))}")
    content = message.get("content")
    if isinstance(content, list):  # content parts, as some servers send
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str) or not content.strip():
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal.strip():
            raise AnswerError(f"the model refused to answer: {clip(refusal)}")
        raise AnswerError("the model's answer was empty")
    stop = first.get("finish_reason")
    return content, stop if isinstance(stop, str) else None


def _in_range(
    name: str,
    value: object,
    low: float,
    high: float,
    unit: str,
    *,
    integer: bool = False,
    low_open: bool = False,
) -> float:
    kind = "an integer" if integer else "a number"
    number = float("nan")  # fails every comparison below
    wrong_kind = isinstance(value, bool) or (integer and isinstance(value, float))
    if isinstance(value, int | float) and not wrong_kind:
        number = float(value)
    inside = (low < number if low_open else low <= number) and number <= high
    if not inside:
        bracket = "(" if low_open else "["
        raise ConfigError(
            f"{name} must be {kind} in {bracket}{low:g}, {high:g}]{' ' + unit if unit else ''}; "
            f"got {value!r}"
        )
    return number
