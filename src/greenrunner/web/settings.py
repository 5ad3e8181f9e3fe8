"""The web app's settings: immutable, validated when built, one object for every part.

Nothing here imports FastAPI or SQLAlchemy, so the CLI can validate ``serve``'s options
(and refuse an exposed server without a token) before the web extra is even imported.
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from greenrunner.errors import ConfigError
from greenrunner.reasoning.providers import ProviderSettings

TOKEN_ENV = "GREENRUNNER_TOKEN"
MIN_TOKEN_CHARS = 16
MB = 1024 * 1024
TOKEN_HINT = (
    'make one with: python -c "import secrets; print(secrets.token_urlsafe(24))" and pass it '
    f"in the environment variable {TOKEN_ENV} (safer than --token, which other users of the "
    "machine can see in the process list)"
)
# The builders an uploaded manifest may name on top of the built-in list (torchvision's
# classification builders and the demo zoo's, greenrunner.adapters.builders.AllowList):
# choosing a builder is choosing code to run on the server, so the operator adds them by
# exact name (module:function) or by module (module:*). None by default.
DEFAULT_BUILDERS: tuple[str, ...] = ()


def default_data_dir() -> Path:
    """``web`` in GreenRunner's cache folder (``$GREENRUNNER_CACHE`` moves both)."""
    from greenrunner.evaluation.cache import cache_home

    return cache_home() / "web"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def resolve_token(given: str | None) -> str | None:
    """The token from the command line, else from ``$GREENRUNNER_TOKEN``, else None."""
    return given or os.environ.get(TOKEN_ENV) or None


def _check_builders(entries: tuple[str, ...]) -> None:
    """Each --allow-builder entry's form, refused when the server starts, not at an upload."""
    from greenrunner.adapters.builders import BuilderError, parse_allow_entry

    for entry in entries:
        try:
            parse_allow_entry(entry)
        except BuilderError as exc:
            raise ConfigError(str(exc)) from None


def parse_proxies(text: str) -> tuple[str, ...]:
    """``--forwarded-allow-ips``: comma-separated addresses or networks of the reverse
    proxies whose X-Forwarded-For and X-Forwarded-Proto are trusted."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_proxies(entries: tuple[str, ...]) -> tuple[str, ...]:
    """Each trusted proxy as an address or network (canonical form); anything else is
    refused: uvicorn would keep it as a name that never matches, or (``*``) trust every
    client to say who it is, which lets any of them escape the limit on token guessing."""
    out = []
    for entry in entries:
        text = str(entry).strip()
        try:
            out.append(
                str(ipaddress.ip_network(text) if "/" in text else ipaddress.ip_address(text))
            )
        except ValueError:
            raise ConfigError(
                f"--forwarded-allow-ips takes the IP addresses or networks (10.0.0.0/8) of "
                f"your reverse proxies, comma-separated; got {text[:100]!r}. '*' and host "
                "names are refused: every client could then choose its own address"
            ) from None
    return tuple(out)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    return value


@dataclass(frozen=True)
class WebSettings:
    """Where the server listens, where it keeps its data, and the limits it enforces.

    ``db_url`` is any SQLAlchemy URL (``postgresql://user@host/db``); None means SQLite in
    ``data_dir``. ``token`` is required when ``host`` is not a loopback address. Uploads are
    bounded by ``max_upload_bytes`` (the file as sent), ``max_extract_bytes`` (what an
    archive unpacks to in all; None: five times the upload limit, at least 1 GB),
    ``max_entry_bytes`` (one file in it; None: no limit of its own), ``max_files`` (its
    entries) and ``max_ratio`` (uncompressed over compressed size, per entry and for the
    whole archive: a zip bomb compresses far better than real models or photos; see
    ``web.archive`` for its floors and the rules on names). ``builders`` are what the
    operator adds to the builders an uploaded manifest may name: ``module:function``
    exactly, or ``module:*`` (see ``AllowList``).
    ``lease_seconds``: how long a run stays this server's without a heartbeat (renewed
    every fifth of it); after that, any server on the database may mark it interrupted.
    ``check_memory_bytes`` and ``check_seconds``: what checking one uploaded repository's
    models may take (memory beyond the libraries' own, wall-clock time), in a child process
    (``web.modelcheck``); a model over them is refused.
    ``forwarded_allow_ips``: the reverse proxies (addresses or networks) whose
    X-Forwarded-For and X-Forwarded-Proto uvicorn trusts; empty (the default) trusts none,
    so a client's address is always its socket's.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    db_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    workers: int = 1
    max_upload_bytes: int = 200 * MB
    max_extract_bytes: int | None = None
    max_entry_bytes: int | None = None
    max_files: int = 20_000
    max_ratio: float = 200.0
    check_memory_bytes: int = 2048 * MB
    check_seconds: float = 300.0
    progress_interval: float = 0.5
    lease_seconds: float = 30.0
    use_cache: bool = True
    builders: tuple[str, ...] = DEFAULT_BUILDERS
    forwarded_allow_ips: tuple[str, ...] = ()
    advisor: ProviderSettings = field(default_factory=ProviderSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().absolute())
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigError(f"port must be an integer from 1 to 65535; got {self.port!r}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be an integer from 1 to 65535; got {self.port}")
        for name in ("workers", "max_upload_bytes", "max_files", "check_memory_bytes"):
            _positive_int(name, getattr(self, name))
        for name in ("max_extract_bytes", "max_entry_bytes"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if not (math.isfinite(self.max_ratio) and self.max_ratio > 1):
            raise ConfigError(f"max_ratio must be a number above 1; got {self.max_ratio!r}")
        if not (
            isinstance(self.check_seconds, int | float)
            and not isinstance(self.check_seconds, bool)
            and math.isfinite(self.check_seconds)
            and self.check_seconds > 0
        ):
            raise ConfigError(
                f"check_seconds must be a positive number of seconds; got {self.check_seconds!r}"
            )
        if not (math.isfinite(self.progress_interval) and self.progress_interval >= 0):
            raise ConfigError(
                f"progress_interval must be a non-negative number of seconds; "
                f"got {self.progress_interval!r}"
            )
        if not (
            isinstance(self.lease_seconds, int | float)
            and not isinstance(self.lease_seconds, bool)
            and math.isfinite(self.lease_seconds)
            and self.lease_seconds > 0
        ):
            raise ConfigError(
                f"lease_seconds must be a positive number of seconds; got {self.lease_seconds!r}"
            )
        if self.db_url is not None and "://" not in self.db_url:
            raise ConfigError(
                f"--db must be a database URL such as sqlite:///path/greenrunner.sqlite or "
                f"postgresql://user@host/dbname; got {self.db_url!r}"
            )
        if self.token is not None:
            if len(self.token) < MIN_TOKEN_CHARS or self.token != self.token.strip():
                # The message must not repeat the token: it would end up in logs.
                raise ConfigError(
                    f"the access token must be at least {MIN_TOKEN_CHARS} characters without "
                    f"surrounding spaces; {TOKEN_HINT}"
                )
        elif not is_loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host} without an access token: anyone who can "
                f"reach it could upload files and run experiments. Give a token ({TOKEN_HINT}), "
                "or bind to 127.0.0.1 and reach it through an SSH tunnel"
            )
        object.__setattr__(self, "builders", tuple(self.builders))
        if isinstance(self.forwarded_allow_ips, str):
            object.__setattr__(self, "forwarded_allow_ips", parse_proxies(self.forwarded_allow_ips))
        object.__setattr__(
            self, "forwarded_allow_ips", _check_proxies(tuple(self.forwarded_allow_ips))
        )
        _check_builders(self.builders)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'greenrunner.sqlite'}"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def extract_limit(self) -> int:
        """What one upload may unpack to in all. By default it follows --max-upload-mb:
        models and photos barely compress, so five times the upload is room enough."""
        return self.max_extract_bytes or max(1024 * MB, 5 * self.max_upload_bytes)

    @property
    def entry_limit(self) -> int:
        """What one file in an upload may unpack to."""
        return min(self.max_entry_bytes or self.extract_limit, self.extract_limit)

    @property
    def exposed(self) -> bool:
        return not is_loopback(self.host)

    def __repr__(self) -> str:
        # The token never appears in a repr (and so in no log line or traceback).
        shown = "set" if self.token else "none"
        return (
            f"WebSettings(data_dir={str(self.data_dir)!r}, db_url={self.db_url!r}, "
            f"host={self.host!r}, port={self.port}, token={shown}, workers={self.workers})"
        )
