"""The access token: checked on every API call and page when the server has one.

A client sends ``Authorization: Bearer TOKEN``; a browser visits ``/login?token=TOKEN`` (or
any page with ``?token=TOKEN``) once and then carries the ``greenrunner_token`` cookie
(HttpOnly, SameSite=Lax: other sites' pages cannot send it with a POST). Tokens are
compared in constant time and never logged: the access log has them masked. Every wrong
token counts against its client address (:mod:`greenrunner.web.throttle`), so guessing is
locked out after a few tries.

:func:`credentials` is the one place that says which tokens a request presents and which
of them are honoured (compared with the server's, and counted when wrong); everything else
asks it. A token that is not honoured is neither compared nor counted, so it tells a
guesser nothing and costs the user nothing:

- ``?token=`` only on a ``GET`` of a page (``/login`` included; never ``/static``, ``/api``
  or ``/docs``), and only when the browser does not mark the request as sent by another
  site's page (``Sec-Fetch-Site`` absent, ``none`` or ``same-origin``): a page elsewhere
  can make the browser load ``/?token=nope`` as an image, but must not lock the user out.
- The bearer header only on requests not marked as sent by another site (a page elsewhere
  cannot send one without a CORS preflight, which this server never allows, so a marked
  request with one is a program pretending).
- The cookie always (SameSite=Lax sends it on links followed from elsewhere). Wrong ones
  from requests marked as sent by another site count in a bucket of their own, so that a
  page elsewhere cannot lock the address out of its own direct use, and a program that
  pretends to be one still has only a few guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from urllib.parse import quote_from_bytes, urlencode, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from greenrunner.web.settings import WebSettings
from greenrunner.web.throttle import client_key, forget_cookie, limiter_of, record_failure

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


# Sec-Fetch-Site values of requests the user made on this server or in the address bar.
FROM_HERE = frozenset({"none", "same-origin"})
MARKED = " (sent by another site's page)"


@dataclass(frozen=True)
class Credentials:
    """The tokens a request presents, and which of them are honoured (see the module)."""

    bearer: str | None
    cookie: str | None
    query: str | None
    query_honoured: bool
    marked: bool  # Sec-Fetch-Site says another site's page sent it

    @property
    def presented(self) -> bool:
        """Whether the request carries any token, honoured or not: the lockout applies."""
        return bool(self.bearer or self.cookie or self.query)

    @property
    def honoured(self) -> tuple[str, ...]:
        """The tokens compared with the server's; a wrong one counts as a guess."""
        if self.marked:
            return (self.cookie,) if self.cookie else ()
        given = (self.bearer, self.cookie, self.query if self.query_honoured else None)
        return tuple(t for t in given if t)


def credentials(scope: Scope) -> Credentials:
    """What a request presents, from its headers and query alone (no body is read)."""
    request = Request(scope)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    sites = [v.strip().lower() for v in request.headers.getlist("sec-fetch-site")]
    marked = any(site not in FROM_HERE for site in sites)
    query = request.query_params.get("token") or None
    return Credentials(
        bearer=(value.strip() or None) if scheme.lower() == "bearer" else None,
        cookie=request.cookies.get(COOKIE) or None,
        query=query,
        query_honoured=query is not None
        and scope.get("method") == "GET"
        and not marked
        and _is_page(scope),
        marked=marked,
    )


def _is_page(scope: Scope) -> bool:
    """A page route (``create_app`` lists them in ``app.state.page_routes``)."""
    app = scope.get("app")
    routes: tuple[BaseRoute, ...] = getattr(getattr(app, "state", None), "page_routes", ())
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


def guess_key(scope: Scope, given: Credentials) -> str:
    """The count a wrong token from this request goes to: its address, or its address's
    own bucket for requests marked as sent by another site."""
    key = client_key(scope)
    return key + MARKED if given.marked else key


def locked_for(scope: Scope) -> float:
    """Seconds this request must wait (0: not locked out). Every request that presents a
    token is checked, wherever it goes; one without any is exempt on static files (their
    answer does not depend on the token)."""
    request = Request(scope)
    if _settings(request).token is None:
        return 0.0
    given = credentials(scope)
    if scope["path"].startswith("/static/") and not given.presented:
        return 0.0
    limiter = limiter_of(request)
    keys = {client_key(scope), guess_key(scope, given)} if given.presented else {client_key(scope)}
    return max(limiter.retry_after(key) for key in keys)


def _check(request: Request, tokens: tuple[str, ...], given: Credentials) -> bool:
    """True when one of ``tokens`` is the server's; when none is, one guess is counted.
    A locked-out request compares nothing (the lockout middleware has answered it)."""
    expected = _settings(request).token
    if expected is None:
        return True
    if locked_for(request.scope) > 0:
        return False
    if any(_matches(t, expected) for t in tokens):
        return True
    if tokens:
        record_failure(request, guess_key(request.scope, given))
    return False


def token_ok(request: Request) -> bool:
    """True when the server has no token or the request carries the right one among those
    honoured; a request that carries only wrong ones counts as a guess against its
    address."""
    if _settings(request).token is None:
        return True
    given = credentials(request.scope)
    if _check(request, given.honoured, given):
        return True
    if given.cookie:
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
def login(request: Request) -> Response:
    """Check the token once and keep it in a cookie, then go to the start page."""
    expected = _settings(request).token
    if expected is None:
        return RedirectResponse("/", status_code=303)
    given = credentials(request.scope)
    if given.query is not None and not given.query_honoured:
        # Not checked and not counted: another site's page may have sent it.
        return PlainTextResponse(
            "This login link was opened from another site, so its token was not checked. "
            "Type or paste the address /login?token=TOKEN into the address bar yourself.",
            status_code=401,
        )
    if given.query is None or not _check(request, (given.query,), given):
        return PlainTextResponse(
            "Wrong or missing token. Open /login?token=TOKEN with the token the server was "
            "started with (--token or GREENRUNNER_TOKEN).",
            status_code=401,
        )
    response = RedirectResponse("/", status_code=303)
    _set_cookie(response, request, given.query)
    return response


# What a redirect's path may keep unescaped: no backslash, space or control character.
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"


def relative_target(scope: Scope, query: list[tuple[str, str]]) -> str:
    """This request's own path and ``query`` as a redirect that cannot leave the server:
    one leading slash (``//host`` is another server), the path as sent with backslashes,
    spaces and control characters escaped (a browser reads ``/\\host`` and ``/<tab>/host``
    as ``//host``), no scheme or host."""
    raw = scope.get("raw_path") or str(scope.get("path", "/")).encode("utf-8")
    path = "/" + quote_from_bytes(raw, safe=_PATH_SAFE).lstrip("/")
    target = path + (f"?{urlencode(query)}" if query else "")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return "/"  # cannot happen after the above; a redirect must not depend on it
    return target


class QueryTokenMiddleware(BaseHTTPMiddleware):
    """``GET /any/page?token=TOKEN``: set the cookie and redirect to the page without the
    token, so it does not stay in the address bar or the browser history. Only where
    :func:`credentials` honours it (``/login`` answers for itself)."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = credentials(request.scope)
        if (
            _settings(request).token is None
            or not given.query_honoured
            or given.query is None
            or request.url.path == "/login"
        ):
            return await call_next(request)
        if _check(request, (given.query,), given):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            response = RedirectResponse(relative_target(request.scope, rest), status_code=303)
            _set_cookie(response, request, given.query)
            return response
        # Counted by _check (a redirect for the right token would tell a guess apart).
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
