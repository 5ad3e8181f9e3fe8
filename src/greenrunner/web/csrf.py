"""Cross-site request forgery: only this server's own pages may change anything.

A page the user merely visits elsewhere can make the browser POST a form, a multipart upload
or an empty body to any address, the loopback included, without a CORS preflight. Two
checks stop that:

- :class:`SameOriginOnly` (every API call and page): a state-changing request (POST, PUT,
  PATCH, DELETE) is refused with 403 before its body is read when the browser says it came
  from elsewhere: ``Sec-Fetch-Site`` other than ``same-origin``, or an ``Origin`` that is not
  this server's own scheme, host and port (``null`` included: sandboxed frames, ``file://``).
  Requests with neither header come from programs (curl, Python), not from a browser
  tricked by a page; they pass, and still need the access token where the server has one.
- :class:`FormTokens` (the pages' forms): each page carries a token in a hidden field (and
  in ``<meta name="csrf-token">`` for scripts, which send it as ``X-CSRF-Token``), an HMAC
  of a random value kept in the ``greenrunner_csrf`` cookie. A form posted without the
  matching pair is refused, which also covers browsers too old to send either header.

Every answer also forbids being framed by another page (clickjacking).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}
COOKIE = "greenrunner_csrf"
FIELD = "csrf_token"
HEADER = "x-csrf-token"
SECRET_FILE = "csrf-secret.key"
_NONCE = re.compile(r"[A-Za-z0-9_-]{32,128}")
REFUSED_FORM = (
    "this form was refused because it did not carry this server's form token (it was "
    "missing, out of date, or the form was sent from another site), so nothing was changed. "
    "If you filled it in yourself, check the values on this page and submit it again"
)


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port, the host lower-case and an IP literal in its canonical form."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = "" if DEFAULT_PORTS.get(self.scheme) == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{shown}"


def _canonical_host(host: str) -> str:
    host = host.lower()
    try:
        return str(ipaddress.ip_address(host))  # "0:0::1" and "::1" are one address
    except ValueError:
        return host


def _origin(scheme: str, netloc: str) -> Origin | None:
    """``netloc`` ("host", "host:port", "[v6]:port") with ``scheme``; None if malformed."""
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS or not netloc or "@" in netloc:
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:  # a port that is not a number from 0 to 65535, a broken "[v6"
        return None
    if not parts.hostname:
        return None
    return Origin(scheme, _canonical_host(parts.hostname), port or DEFAULT_PORTS[scheme])


def parse_origin(value: str) -> Origin | None:
    """An ``Origin`` header's value; None for ``null`` or anything that is not exactly
    ``scheme://host[:port]`` (an origin has no path, query or user name)."""
    value = value.strip()
    if value.count("://") != 1:
        return None
    scheme, _, netloc = value.partition("://")
    if any(c in netloc for c in "/?#\\ "):
        return None
    return _origin(scheme, netloc)


def own_origin(scope: Scope) -> Origin | None:
    """This server as the request addressed it: its scheme and its ``Host`` header (the
    socket's address when a client sent none); None when the header is malformed."""
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host")
    scheme = str(scope.get("scheme", "http"))
    if host is not None:
        return _origin(scheme, host.decode("latin-1").strip())
    server = scope.get("server")
    if not server:
        return None
    name, port = server[0], server[1]
    return _origin(scheme, f"[{name}]:{port}" if ":" in str(name) else f"{name}:{port}")


def cross_site_reason(scope: Scope) -> str | None:
    """Why a state-changing request is refused as cross-site, or None to let it through."""
    headers = [(k.lower(), v.decode("latin-1").strip()) for k, v in scope.get("headers") or []]
    fetch_site = [v.lower() for k, v in headers if k == b"sec-fetch-site"]
    origins = [v for k, v in headers if k == b"origin"]
    own = own_origin(scope)
    for site in fetch_site:
        if site != "same-origin":
            # The values browsers send as they are; anything else quoted (it is logged).
            shown = site if site in ("cross-site", "same-site", "none") else repr(site[:40])
            return (
                f"the browser says a page other than this server's sent it "
                f"(Sec-Fetch-Site: {shown})"
            )
    for value in origins:
        if value.lower() == "null" and fetch_site:
            continue  # Sec-Fetch-Site (set by the browser, not the page) said same-origin
        if value.lower() == "null":
            return (
                "it came from a page with no origin (Origin: null: a sandboxed frame, a local file)"
            )
        given = parse_origin(value)
        if given is None:
            return f"it came from an unknown origin (Origin: {value[:100]!r})"
        if own is None:
            return f"its Host header does not name this server, so origin {given} is unproven"
        if given != own:
            return f"it came from another site ({given}), not from this server ({own})"
    return None


# No other site may show these pages in a frame: it could lay its own page over them and
# have the user click "Start the run" (clickjacking), which the checks above cannot tell.
NO_FRAMING = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
]


class SameOriginOnly:
    """Refuses cross-site state-changing requests (403) before the app reads their body,
    and forbids framing every answer.

    Pure ASGI, not ``BaseHTTPMiddleware``: it answers from the headers alone, so a refused
    multipart upload is never parsed or spooled to disk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def no_framing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *NO_FRAMING]}
            await send(message)

        if scope["method"] in STATE_CHANGING:
            reason = cross_site_reason(scope)
            if reason is not None:
                await _refusal(scope, reason)(scope, receive, no_framing)
                return
        await self.app(scope, receive, no_framing)


def _refusal(scope: Scope, reason: str) -> Response:
    from greenrunner.web.limits import wants_html

    request = Request(scope)
    # repr: the path is the client's text, decoded (%0a is a newline that would start a
    # forged line); the reason quotes every header value it shows.
    log.warning("refused a cross-site %r %r: %s", scope["method"], scope["path"], reason)
    message = (
        f"refused this {scope['method']} request because {reason}. GreenRunner accepts "
        "changes only from its own pages, so that another web page you visit cannot upload "
        "files or start runs here. If you meant to do this, open this server's own page and "
        "do it there; a script should send no Origin header, or this server's own origin "
        "(behind a reverse proxy, pass the original Host header, set X-Forwarded-Proto and "
        "start the server with --forwarded-allow-ips naming the proxy)"
    )
    if wants_html(request):
        from greenrunner.web.pages import error_page

        return error_page(request, message, 403)
    return JSONResponse({"detail": message}, status_code=403)


# --- form tokens ---------------------------------------------------------------------------
class FormTokens:
    """HMAC form tokens bound to a random value in the browser's ``greenrunner_csrf``
    cookie (a "signed double-submit cookie"): another page on the same machine can set a
    cookie for 127.0.0.1, but cannot compute the token for it without the server's secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the form-token secret must have at least 16 bytes")
        self._secret = secret

    def token(self, nonce: str) -> str:
        return hmac.new(
            self._secret, b"greenrunner-form:" + nonce.encode(), hashlib.sha256
        ).hexdigest()

    def valid(self, nonce: str | None, given: str | None) -> bool:
        if not nonce or not given or not _NONCE.fullmatch(nonce):
            return False
        return hmac.compare_digest(self.token(nonce).encode(), given.strip().encode("utf-8"))


def load_secret(folder: Path) -> bytes:
    """The server's form-token secret, kept in ``folder`` so that a page loaded before a
    restart still posts (a resume after the server stopped is the common case). Made once,
    readable by its owner only; a folder that cannot hold it gives a secret for this
    process alone (forms then need a reload after a restart)."""
    path = folder / SECRET_FILE
    try:
        return _read_or_create(path)
    except OSError as exc:
        log.warning(
            "cannot keep the form-token secret in %s (%s); forms opened before a restart "
            "will need a reload",
            path,
            exc.strerror or exc,
        )
        return secrets.token_bytes(32)


def _read_or_create(path: Path) -> bytes:
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a complete file under a private name, then link it into place: two servers
    # starting at once both end up with the one that won, never with a half-written file.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.read_bytes()


def _tokens(request: Request) -> FormTokens:
    tokens: FormTokens = request.app.state.form_tokens
    return tokens


def page_token(request: Request) -> tuple[str, str | None]:
    """The token for the forms of the page being rendered, and the new cookie value to set
    when the browser has none yet (None when its cookie is fine). One per request."""
    cached: tuple[str, str | None] | None = getattr(request.state, "csrf", None)
    if cached is not None:
        return cached
    nonce = request.cookies.get(COOKIE)
    fresh = None
    if not nonce or not _NONCE.fullmatch(nonce):
        nonce = fresh = secrets.token_urlsafe(32)
    answer = (_tokens(request).token(nonce), fresh)
    request.state.csrf = answer
    return answer


def set_cookie(response: Response, request: Request, nonce: str) -> None:
    # HttpOnly: a script never needs the cookie, only the token in the page. SameSite=Lax,
    # not Strict: another site's POST still goes without it, but a link from elsewhere
    # (a chat, a bookmark) keeps it, so the forms in tabs already open stay valid.
    response.set_cookie(
        COOKIE,
        nonce,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
        max_age=30 * 24 * 3600,  # as long as the token cookie: open tabs outlive a session
    )


def form_ok(request: Request, form: Mapping[str, object]) -> bool:
    """True when a posted form (or the ``X-CSRF-Token`` header) carries the token that
    matches the browser's cookie."""
    given = form.get(FIELD)
    text = given if isinstance(given, str) else request.headers.get(HEADER)
    return _tokens(request).valid(request.cookies.get(COOKIE), text)
