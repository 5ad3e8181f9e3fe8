"""The access token: checked on every API call and page when the server has one.

A client sends ``Authorization: Bearer TOKEN``; a browser visits ``/login?token=TOKEN`` (or
any page with ``?token=TOKEN``) once and then carries the ``greenrunner_token`` cookie
(HttpOnly, SameSite=Lax: other sites' pages cannot send it with a POST). Tokens are
compared in constant time and never logged: the access log has them masked. Every wrong
token counts against its client address (:mod:`greenrunner.web.throttle`), so guessing is
locked out after a few tries.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import PlainTextResponse, Response

from greenrunner.web.settings import WebSettings
from greenrunner.web.throttle import forget_cookie, record_failure

COOKIE = "greenrunner_token"
_MASK = re.compile(r"(token=)[^&\s\"]*", re.IGNORECASE)

router = APIRouter()


def _settings(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def _matches(given: str | None, expected: str) -> bool:
    """Constant time, also in the length: the digests compared always have 32 bytes."""
    if given is None:
        return False
    digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(digest, hashlib.sha256(expected.encode()).digest())


def _presented(request: Request) -> list[str]:
    """The tokens a request carries: its bearer header and its cookie (either may be stale)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    given = [value.strip()] if scheme.lower() == "bearer" else []
    return [t for t in (*given, request.cookies.get(COOKIE)) if t]


def token_ok(request: Request) -> bool:
    """True when the server has no token or the request carries the right one; a request
    that carries only wrong ones counts as a guess against its address."""
    expected = _settings(request).token
    if expected is None:
        return True
    presented = _presented(request)
    if any(_matches(t, expected) for t in presented):
        return True
    if presented:
        record_failure(request)
    if request.cookies.get(COOKIE):
        # A cookie from an earlier token (the server restarted with a new one): the answer
        # deletes it, or every page and progress poll would count as one more guess.
        forget_cookie(request)
    return False


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless :func:`token_ok`."""
    if not token_ok(request):
        raise HTTPException(
            status_code=401,
            detail="this server needs its access token: send 'Authorization: Bearer TOKEN', "
            "or open /login?token=TOKEN once in the browser",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _set_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=30 * 24 * 3600,
    )


@router.get("/login", include_in_schema=False)
def login(request: Request, token: str = "") -> Response:
    """Check the token once and keep it in a cookie, then go to the start page."""
    expected = _settings(request).token
    if expected is None:
        return RedirectResponse("/", status_code=303)
    if not _matches(token, expected):
        if token:
            record_failure(request)
        return PlainTextResponse(
            "Wrong or missing token. Open /login?token=TOKEN with the token the server was "
            "started with (--token or GREENRUNNER_TOKEN).",
            status_code=401,
        )
    response = RedirectResponse("/", status_code=303)
    _set_cookie(response, request, token)
    return response


class QueryTokenMiddleware(BaseHTTPMiddleware):
    """``GET /any/page?token=TOKEN``: set the cookie and redirect to the page without the
    token, so it does not stay in the address bar or the browser history."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        expected = _settings(request).token
        token = request.query_params.get("token")
        if request.method != "GET" or expected is None or not token or request.url.path == "/login":
            return await call_next(request)
        if _matches(token, expected):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            _set_cookie(response, request, token)
            return response
        record_failure(request)  # a redirect for the right token would tell a guess apart
        return await call_next(request)


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def host_name(header: str) -> str:
    """The host of a Host header, without the port ("[::1]:8000" -> "::1")."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class LoopbackHostMiddleware(BaseHTTPMiddleware):
    """A server bound to the loopback without a token answers only to loopback names.

    A web page elsewhere can point a name it controls at 127.0.0.1 (DNS rebinding) and
    then talk to this server from the user's browser; its requests carry that name in the
    Host header, so refusing foreign names keeps them out."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        settings = _settings(request)
        host = host_name(request.headers.get("host", "")).lower()
        if settings.token is None and host not in LOOPBACK_NAMES | {settings.host}:
            return PlainTextResponse(
                f"this server answers to 127.0.0.1 and localhost only, not {host[:100]!r}",
                status_code=421,
            )
        return await call_next(request)


class RedactTokens(logging.Filter):
    """Masks ``token=...`` in log records (uvicorn's access log shows query strings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _MASK.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _MASK.sub(r"\1***", record.msg)
        return True


def redact_access_log() -> None:
    """Install :class:`RedactTokens` on uvicorn's loggers (after uvicorn configured them)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logging.getLogger(name).addFilter(RedactTokens())
