"""Reading LLM answers into weights, and the OpenAI-compatible advisor with a fake transport
(and the urllib transport against a tiny local HTTP server): no network, no keys."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from greenrunner.errors import ConfigError
from greenrunner.reasoning.answer import AnswerError, parse_answer
from greenrunner.reasoning.base import Advisor
from greenrunner.reasoning.openai import OpenAIAdvisor
from greenrunner.reasoning.prompt import answer_schema, chat_messages, load_prompt, render_prompt
from greenrunner.reasoning.suggestion import WeightSuggestion, suggestion_weights
from greenrunner.reasoning.transport import (
    HTTPStatusError,
    ServerTimeoutError,
    ServerUnreachableError,
    UrllibTransport,
    chat_url,
)

USE_CASE = "Recommend a model for detecting objects deployed on a drone"
KEY = "sk-test-0123456789abcdef"
BASE = "http://127.0.0.1:9/v1"


def answer(
    weights: Mapping[str, Any] | None = None,
    justification: Any = "The use case says 'deployed on a drone', so size and MACs matter.",
    tradeoffs: Any = None,
) -> str:
    return json.dumps(
        {
            "weights": weights or {"accuracy": 0.6, "size": 0.2, "complexity": 0.2},
            "justification": justification,
            "tradeoffs": tradeoffs
            or {"accuracy": "a", "size": "s", "complexity": "c", "latency": None},
        }
    )


def parse(text: str, stop_reason: str | None = None) -> WeightSuggestion:
    return parse_answer(
        text, use_case=USE_CASE, provider="test", model="m", stop_reason=stop_reason
    )


def weights_of(text: str) -> dict[str, float]:
    return parse(text).weights.as_dict()


def has_note(suggestion: WeightSuggestion, *words: str) -> bool:
    return any(all(w in note for w in words) for note in suggestion.notes)


# --- parsing ---------------------------------------------------------------------------------


def test_clean_answer_is_read_as_given_without_notes() -> None:
    s = parse(answer())
    assert s.weights.as_dict() == {"accuracy": 0.6, "size": 0.2, "complexity": 0.2}
    assert "drone" in s.justification
    assert dict(s.tradeoffs) == {"accuracy": "a", "size": "s", "complexity": "c"}
    assert (s.provider, s.model, s.use_case, s.notes) == ("test", "m", USE_CASE, ())


def test_json_in_code_fence_and_prose() -> None:
    fenced = parse(f"Here you go:\n```json\n{answer()}\n```\nHope this helps!")
    assert fenced.weights["accuracy"] == 0.6
    assert fenced.notes == ()
    empty_fence = parse(f"```\n```\nThe weights: {answer()}")
    assert empty_fence.weights["accuracy"] == 0.6
    prose = parse(f"Sure, the weights {{as asked}}: {answer()} Anything else?")
    assert prose.weights["size"] == 0.2
    assert has_note(prose, "wrapped", "ignored")


def test_cut_off_after_the_weights_is_repaired_with_a_note() -> None:
    full = answer()
    cut = full[: full.index('"tradeoffs"') + 25]
    s = parse(cut, stop_reason="length")
    assert s.weights.as_dict() == {"accuracy": 0.6, "size": 0.2, "complexity": 0.2}
    assert has_note(s, "cut off", "token limit")
    assert has_note(s, "no trade-off")


def test_cut_off_inside_a_string_is_closed() -> None:
    s = parse(
        '{"weights": {"accuracy": 0.7, "size": 0.2, "complexity": 0.1}, "justification": "x\\'
    )
    assert s.weights["accuracy"] == 0.7
    assert s.justification == "x"


def test_cut_off_before_all_weights_is_rejected_not_zero_filled() -> None:
    with pytest.raises(AnswerError, match="cut off before its size, complexity"):
        parse('{"weights": {"accuracy": 0.6, "size": 0.')
    # The last number may have lost digits (0.25 -> 0.2): it is not trusted.
    with pytest.raises(AnswerError, match="cut off before its complexity"):
        parse('{"weights": {"accuracy": 0.6, "size": 0.2, "complexity": 0.2')


@pytest.mark.parametrize(
    ("raw", "value"), [("0.6", 0.6), ("60%", 0.6), (" 60 % ", 0.6), ("6e-1", 0.6)]
)
def test_weights_given_as_text(raw: str, value: float) -> None:
    s = parse(answer({"accuracy": raw, "size": 0.2, "complexity": 0.2}))
    assert s.weights["accuracy"] == pytest.approx(value / (value + 0.4), abs=1e-3)
    assert has_note(s, "accuracy", "as text")


@pytest.mark.parametrize("bad", ["high", [0.2], True, {"level": "low"}])
def test_a_non_number_is_ignored_and_the_weight_set_to_zero(bad: Any) -> None:
    s = parse(answer({"accuracy": 0.7, "size": bad, "complexity": 0.3}))
    assert s.weights.as_dict() == {"accuracy": 0.7, "size": 0.0, "complexity": 0.3}
    assert has_note(s, "size")
    assert has_note(s, "no usable size weight", "set to 0")


def test_a_weight_nested_in_an_object_is_read() -> None:
    s = parse(
        answer({"accuracy": {"weight": 0.5, "reason": "x"}, "size": 0.25, "complexity": 0.25})
    )
    assert s.weights["accuracy"] == 0.5


def test_negative_weights_are_clamped_to_zero() -> None:
    s = parse(answer({"accuracy": 0.8, "size": -0.2, "complexity": 0.2}))
    assert s.weights.as_dict() == {"accuracy": 0.8, "size": 0.0, "complexity": 0.2}
    assert has_note(s, "size", "negative", "set to 0")


def test_percentages_are_divided_by_100() -> None:
    s = parse(answer({"accuracy": 63, "size": 25, "complexity": 12}))
    assert s.weights.as_dict() == {"accuracy": 0.63, "size": 0.25, "complexity": 0.12}
    assert has_note(s, "percentages", "divided by 100")


def test_weights_above_one_that_are_not_percentages_are_scaled() -> None:
    s = parse(answer({"accuracy": 3, "size": 1, "complexity": 1}))
    assert s.weights.as_dict() == {"accuracy": 0.6, "size": 0.2, "complexity": 0.2}
    assert has_note(s, "above 1", "scaled")


def test_a_sum_other_than_one_is_scaled_with_a_note() -> None:
    s = parse(answer({"accuracy": 0.63, "size": 0.25, "complexity": 0.21}))
    assert sum(s.weights.as_dict().values()) == pytest.approx(1.0)
    assert has_note(s, "summed to 1.09")


def test_all_zero_weights_are_rejected() -> None:
    with pytest.raises(AnswerError, match="all zero"):
        parse(answer({"accuracy": 0, "size": 0, "complexity": 0}))
    with pytest.raises(AnswerError, match="all zero"):
        parse(answer({"accuracy": -1, "size": 0, "complexity": 0}))


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_weights(bad: str) -> None:
    text = answer().replace('"size": 0.2', f'"size": {bad}')
    s = parse(text)
    assert s.weights["size"] == 0.0
    assert has_note(s, "size weight was")
    with pytest.raises(AnswerError, match="no usable accuracy weight"):
        parse(answer().replace('"accuracy": 0.6', f'"accuracy": {bad}'))


def test_unknown_metrics_are_dropped_and_aliases_read() -> None:
    s = parse(answer({"Accuracy": 0.6, "model_size": 0.2, "MACs": 0.2, "robustness": 0.5}))
    assert s.weights.as_dict() == {"accuracy": 0.6, "size": 0.2, "complexity": 0.2}
    assert has_note(s, "'robustness'", "dropped")
    assert has_note(s, "'MACs'", "complexity")
    assert not has_note(s, "'Accuracy'")


def test_missing_size_and_complexity_become_zero_but_missing_accuracy_is_rejected() -> None:
    s = parse(answer({"accuracy": 1.0}))
    assert s.weights.as_dict() == {"accuracy": 1.0, "size": 0.0, "complexity": 0.0}
    assert has_note(s, "no usable size weight") and has_note(s, "no usable complexity weight")
    with pytest.raises(AnswerError, match="accuracy"):
        parse(answer({"size": 0.5, "complexity": 0.5}))


def test_optional_metrics_are_kept_when_weighted_and_silent_when_null() -> None:
    s = parse(
        answer({"accuracy": 0.5, "size": 0.1, "complexity": 0.1, "latency": 0.3, "memory": None})
    )
    assert s.weights.as_dict() == {"accuracy": 0.5, "size": 0.1, "complexity": 0.1, "latency": 0.3}
    assert s.notes == ("the model gave no trade-off for latency",)


def test_other_shapes_models_use() -> None:
    flat = parse('{"accuracy": 0.5, "size": 0.3, "complexity": 0.2, "justification": "j"}')
    assert flat.weights["size"] == 0.3
    assert has_note(flat, "top level")
    pairs = parse(
        '{"weights": [{"metric": "accuracy", "weight": 0.5}, {"metric": "size", '
        '"weight": 0.5}, {"metric": "complexity", "weight": 0}]}'
    )
    assert pairs.weights.as_dict() == {"accuracy": 0.5, "size": 0.5, "complexity": 0.0}
    python = parse("{'weights': {'accuracy': 0.6, 'size': 0.2, 'complexity': 0.2}}")
    assert python.weights["accuracy"] == 0.6
    assert has_note(python, "Python-style")
    commas = parse('{"weights": {"accuracy": 0.6, "size": 0.2, "complexity": 0.2,},}')
    assert commas.weights["accuracy"] == 0.6
    assert has_note(commas, "trailing commas")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("I would weigh accuracy most.", "no JSON object"),
        ("[0.6, 0.2, 0.2]", "no JSON object"),
        ('{"answer": "accuracy matters"}', "no JSON object"),
        ('{"weights": "accuracy"}', "not an object"),
        ('{"weights": [{"x": 1}]}', "names no metrics"),
        ("x" * 60_000, "characters long"),
    ],
)
def test_answers_without_usable_weights_raise(text: str, match: str) -> None:
    with pytest.raises(AnswerError, match=match):
        parse(text)


def test_justification_as_text_per_metric_or_missing() -> None:
    per_metric = parse(answer(justification={"accuracy": "Detection must work", "size": "Drone"}))
    assert per_metric.justification == "accuracy: Detection must work. size: Drone."
    assert parse(answer(justification="...")).justification == "The model gave no justification."
    missing = parse(answer(justification=None))
    assert missing.justification == "The model gave no justification."
    assert has_note(missing, "no justification")
    long = parse(answer(justification="word " * 1000))
    assert len(long.justification) <= 2003 and has_note(long, "clipped")


def test_tradeoffs_as_list_or_missing() -> None:
    listed = parse(
        answer(tradeoffs=[{"metric": "accuracy", "tradeoff": "A"}, "size: S", "complexity: C"])
    )
    assert dict(listed.tradeoffs) == {"accuracy": "A", "size": "S", "complexity": "C"}
    assert listed.notes == ()
    partial = parse(answer(tradeoffs={"accuracy": "A", "size": ",", "complexity": None}))
    assert partial.tradeoffs["size"] == "The model gave no trade-off for size."
    assert has_note(partial, "no trade-off for size, complexity")


# --- prompt and schema -----------------------------------------------------------------------


def test_prompt_explains_metrics_and_equation_and_keeps_braces() -> None:
    text = render_prompt("detect {cats} on a phone")
    assert "detect {cats} on a phone" in text and "{use_case}" not in text
    for words in ("Equation 1", "MACs", "lognorm", "sum to 1", "trade-off", '"weights"'):
        assert words in text
    messages = chat_messages(USE_CASE)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert USE_CASE in messages[1]["content"]


def test_prompt_template_needs_its_placeholder(tmp_path: Path) -> None:
    bad = tmp_path / "prompt.md"
    bad.write_text("no placeholder here", encoding="utf-8")
    with pytest.raises(ConfigError, match="placeholder"):
        load_prompt(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_prompt(tmp_path / "missing.md")


def test_schema_is_strict_mode_compatible() -> None:
    def check(node: Mapping[str, Any]) -> None:
        if node.get("type") == "object":
            assert node["additionalProperties"] is False
            assert sorted(node["required"]) == sorted(node["properties"])
            for child in node["properties"].values():
                check(child)

    schema = answer_schema()
    check(schema)
    assert sorted(schema["properties"]["weights"]["required"])[:3] == [
        "accuracy",
        "complexity",
        "energy",
    ]


# --- the OpenAI-compatible advisor with a fake transport -------------------------------------


def completion(content: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish}]
    }


class FakeTransport:
    """Replies in order (the last one repeats); records every request."""

    def __init__(self, *replies: dict[str, Any] | Exception) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[str, dict[str, str], dict[str, Any], float]] = []

    def post(
        self, url: str, headers: Mapping[str, str], payload: Mapping[str, Any], timeout: float
    ) -> dict[str, Any]:
        self.calls.append((url, dict(headers), json.loads(json.dumps(payload)), timeout))
        reply = self.replies[min(len(self.calls), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [call[2] for call in self.calls]


class FakeAdvisor:
    name = "fake"
    deterministic = True

    def __init__(self) -> None:
        self.calls = 0

    def suggest(self, use_case: str) -> WeightSuggestion:
        self.calls += 1
        return WeightSuggestion(
            weights=suggestion_weights({"accuracy": 0.5, "size": 0.25, "complexity": 0.25}),
            justification="fake",
            tradeoffs={},
            provider="fake",
            model="rules",
            use_case=use_case,
            notes=("fake note",),
        )


def advisor(
    transport: FakeTransport, fallback: Advisor | None = None, **options: Any
) -> OpenAIAdvisor:
    options.setdefault("backoff", 0.0)
    return OpenAIAdvisor(BASE, "test-model", transport=transport, fallback=fallback, **options)


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_request_asks_for_the_schema_and_records_provider_and_model() -> None:
    fake = FakeTransport(completion(answer()))
    adv = advisor(fake, temperature=0.3, max_tokens=300, timeout=12.5)
    assert isinstance(adv, Advisor) and not adv.deterministic and adv.name == "openai"
    s = adv.suggest(f"  {USE_CASE}  ")
    url, headers, payload, timeout = fake.calls[0]
    assert url == "http://127.0.0.1:9/v1/chat/completions" and timeout == 12.5
    assert headers == {}
    assert payload["model"] == "test-model"
    assert payload["temperature"] == 0.3 and payload["max_tokens"] == 300
    assert payload["response_format"]["type"] == "json_schema"
    assert payload["response_format"]["json_schema"]["strict"] is True
    assert payload["response_format"]["json_schema"]["schema"] == answer_schema()
    assert USE_CASE in payload["messages"][-1]["content"]
    assert (s.provider, s.model, s.use_case) == ("openai", "test-model", USE_CASE)
    assert s.weights["accuracy"] == 0.6 and adv.attempts == 1


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/chat/completions"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1/chat/completions"),
        ("http://localhost:11434", "http://localhost:11434/chat/completions"),
        ("https://x.example/v1/chat/completions", "https://x.example/v1/chat/completions"),
        (
            "https://n.openai.azure.com/openai/v1?api-version=preview",
            "https://n.openai.azure.com/openai/v1/chat/completions?api-version=preview",
        ),
    ],
)
def test_chat_url_rule(base: str, url: str) -> None:
    assert chat_url(base) == url


@pytest.mark.parametrize("bad", ["", "localhost:8080", "ftp://host/v1", "http://user:pw@h/v1"])
def test_bad_base_urls_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="base URL"):
        OpenAIAdvisor(bad, "m")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retries", -1),
        ("retries", 11),
        ("retries", 1.5),
        ("timeout", 0),
        ("temperature", 3.0),
        ("max_tokens", 1),
        ("api_key_env", ""),
        ("backoff", -1.0),
    ],
)
def test_bad_options_are_config_errors(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        OpenAIAdvisor(BASE, "m", **{option: value})
    with pytest.raises(ConfigError, match="model"):
        OpenAIAdvisor(BASE, " ")


def test_key_is_read_from_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTransport(completion(answer()))
    adv = advisor(fake, api_key_env="MY_LLM_KEY")
    monkeypatch.setenv("MY_LLM_KEY", KEY)
    adv.suggest(USE_CASE)
    assert fake.calls[0][1] == {"Authorization": f"Bearer {KEY}"}
    monkeypatch.delenv("MY_LLM_KEY")
    adv.suggest(USE_CASE)
    assert fake.calls[1][1] == {}
    assert KEY not in repr(vars(adv))


def test_key_never_reaches_notes_errors_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    echo = HTTPStatusError(chat_url(BASE), 401, f"Incorrect API key provided: {KEY}")
    fallback = FakeAdvisor()
    s = advisor(FakeTransport(echo), fallback).suggest(USE_CASE)
    assert s.provider == "fake" and fallback.calls == 1
    assert has_note(s, "WARNING", "HTTP 401", "API key")
    assert KEY not in json.dumps(s.to_dict())
    assert KEY not in caplog.text
    assert "401" in caplog.text


def test_server_down_falls_back_with_a_warning_after_bounded_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTransport(ServerUnreachableError(chat_url(BASE), "Connection refused"))
    fallback = FakeAdvisor()
    adv = advisor(fake, fallback, retries=2)
    s = adv.suggest(USE_CASE)
    assert len(fake.calls) == 3 and adv.attempts == 3
    assert s.provider == "fake" and s.weights["accuracy"] == 0.5
    assert s.notes[0].startswith("WARNING: the openai provider (test-model)")
    assert has_note(s, "after 3 tries", "no server answered at http://127.0.0.1:9/v1")
    assert has_note(s, "fake provider's weights instead")
    assert s.notes[-1] == "fake note"
    assert caplog.text.count("asking again") == 2


def test_timeout_falls_back_with_a_warning() -> None:
    fake = FakeTransport(ServerTimeoutError(chat_url(BASE), 0.5))
    s = advisor(fake, FakeAdvisor(), retries=0).suggest(USE_CASE)
    assert len(fake.calls) == 1
    assert has_note(s, "WARNING", "after 1 try", "0.5 s timeout")


def test_garbage_output_is_retried_then_falls_back() -> None:
    fake = FakeTransport(completion("I am a helpful assistant!"), completion("{{{{"))
    s = advisor(fake, FakeAdvisor(), retries=3).suggest(USE_CASE)
    assert len(fake.calls) == 4
    assert has_note(s, "WARNING", "after 4 tries", "no JSON object")


@pytest.mark.parametrize(
    "reply",
    [
        {"error": {"message": "model crashed"}},
        {"choices": []},
        {"object": "list"},
        completion("  "),
        {"choices": [{"message": {"content": None, "refusal": "I cannot help with that"}}]},
    ],
)
def test_replies_that_are_not_completions_are_retried(reply: dict[str, Any]) -> None:
    fake = FakeTransport(reply, completion(answer()))
    s = advisor(fake, FakeAdvisor(), retries=1).suggest(USE_CASE)
    assert len(fake.calls) == 2 and s.provider == "openai"


def test_a_failure_then_success_uses_the_model() -> None:
    fake = FakeTransport(
        HTTPStatusError(chat_url(BASE), 503, "loading model"), completion(answer())
    )
    s = advisor(fake, FakeAdvisor()).suggest(USE_CASE)
    assert len(fake.calls) == 2 and s.provider == "openai" and s.notes == ()


def test_client_errors_are_not_retried() -> None:
    fake = FakeTransport(HTTPStatusError(chat_url(BASE), 404, "model 'gpt-9' not found"))
    s = advisor(fake, FakeAdvisor(), retries=5).suggest(USE_CASE)
    assert len(fake.calls) == 1
    assert has_note(s, "HTTP 404", "check the model name")


def test_json_schema_rejection_downgrades_once_and_is_remembered() -> None:
    url = chat_url(BASE)
    fake = FakeTransport(
        HTTPStatusError(url, 400, "Invalid parameter: 'response_format' of type 'json_schema'"),
        HTTPStatusError(url, 400, "response_format json_object is not supported"),
        completion(f"```json\n{answer()}\n```"),
    )
    adv = advisor(fake, FakeAdvisor(), retries=0)
    s = adv.suggest(USE_CASE)
    formats = [p.get("response_format", {}).get("type") for p in fake.payloads]
    assert formats == ["json_schema", "json_object", None]
    assert s.provider == "openai" and adv.attempts == 3
    assert has_note(s, "does not accept json_schema output", "json_object")
    assert has_note(s, "does not accept json_object output", "prompt alone")
    adv.suggest(USE_CASE)
    assert "response_format" not in fake.payloads[-1] and len(fake.calls) == 4


def test_a_400_with_nothing_left_to_change_falls_back() -> None:
    url = chat_url(BASE)
    fake = FakeTransport(HTTPStatusError(url, 400, "response_format is bad"))
    s = advisor(fake, FakeAdvisor()).suggest(USE_CASE)
    assert len(fake.calls) == 3  # json_schema, json_object, none: then it is not retried
    assert has_note(s, "WARNING", "HTTP 400")


def test_token_and_temperature_parameters_adapt_to_the_server() -> None:
    url = chat_url(BASE)
    fake = FakeTransport(
        HTTPStatusError(url, 400, "Unsupported parameter: 'max_tokens'; use max_completion_tokens"),
        HTTPStatusError(url, 400, "Unsupported value: 'temperature' does not support 0.7"),
        completion(answer()),
    )
    advisor(fake, FakeAdvisor()).suggest(USE_CASE)
    last = fake.payloads[-1]
    assert "max_tokens" not in last and last["max_completion_tokens"] == 800
    assert "temperature" not in last


def test_a_cut_off_answer_at_the_token_limit_is_used_with_a_note() -> None:
    full = answer()
    fake = FakeTransport(completion(full[: full.index('"justification"') + 30], "length"))
    s = advisor(fake, FakeAdvisor()).suggest(USE_CASE)
    assert s.provider == "openai" and has_note(s, "cut off at its token limit")


def test_an_empty_use_case_is_a_config_error_not_a_fallback() -> None:
    fake = FakeTransport(completion(answer()))
    with pytest.raises(ConfigError, match="use case is empty"):
        advisor(fake, FakeAdvisor()).suggest("  ")
    assert fake.calls == []


def test_the_default_fallback_is_the_offline_advisor() -> None:
    fake = FakeTransport(ServerUnreachableError(chat_url(BASE), "refused"))
    s = advisor(fake, retries=0).suggest(USE_CASE)
    assert s.provider == "offline"
    assert has_note(s, "WARNING", "offline provider's weights instead")


def test_retries_wait_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    fake = FakeTransport(ServerUnreachableError(chat_url(BASE), "refused"))
    advisor(fake, FakeAdvisor(), retries=2, backoff=0.5).suggest(USE_CASE)
    assert waits == [0.5, 1.0]


# --- the urllib transport against a tiny local HTTP server -----------------------------------


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str], dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, dict(self.headers), body))
        kind = self.path.split("/")[1]
        if kind == "slow":
            time.sleep(1.0)
        if kind == "redirect":
            self._send(302, b"", {"Location": "http://elsewhere.example/v1/chat/completions"})
        elif kind == "error":
            self._send(500, json.dumps({"error": {"message": "out of memory"}}).encode())
        elif kind == "text":
            self._send(200, b"<html>hello</html>")
        else:
            self._send(200, json.dumps(completion(answer())).encode())

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urllib_transport_sends_json_and_the_key(
    http_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy from the environment must not be used for a loopback server.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    s = OpenAIAdvisor(f"{http_base}/ok/v1", "m", retries=0).suggest(USE_CASE)
    assert s.provider == "openai"
    path, headers, body = _Handler.seen[-1]
    assert path == "/ok/v1/chat/completions"
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize(
    ("where", "timeout", "expected"),
    [
        ("error", 5.0, (HTTPStatusError, "HTTP 500: out of memory")),
        ("redirect", 5.0, (HTTPStatusError, "HTTP 302: redirect to http://elsewhere.example")),
        ("text", 5.0, (Exception, "did not answer with JSON")),
        ("slow", 0.2, (ServerTimeoutError, "0.2 s timeout")),
    ],
)
def test_urllib_transport_errors(
    http_base: str, where: str, timeout: float, expected: tuple[type[Exception], str]
) -> None:
    kind, words = expected
    with pytest.raises(kind, match=words):
        UrllibTransport().post(f"{http_base}/{where}/v1/chat/completions", {}, {}, timeout)


def test_urllib_transport_connection_refused(http_base: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port}"):
        UrllibTransport().post(f"http://127.0.0.1:{port}/v1/chat/completions", {}, {}, 2.0)
