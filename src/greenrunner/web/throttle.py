"""A limit on guessing the access token: wrong tokens lock their client address out.

Without it a client could try about 500 tokens a second. Every wrong token that is
honoured (a bearer header, the cookie, ``/login?token=`` or ``?token=`` on a page: see
:func:`greenrunner.web.auth.credentials`) counts against the address it came from;
``max_failures`` within ``window_s`` lock that address out for ``lockout_s``, and each
further lockout doubles it up to ``max_lockout_s``. While locked, every request from the
address answers 429 with ``Retry-After``, the right token included: a guess must not be
told apart from a wrong one. Only a static file requested without any token is exempt.
Other addresses are unaffected. An IPv6 client counts by its /64, which one machine
usually has whole.

The address is the socket's peer: ``X-Forwarded-For`` is ignored unless the server was
started with ``--forwarded-allow-ips`` naming the reverse proxy (then uvicorn takes the
client from the header of requests that come from those addresses only). Behind a proxy
without it, every client has the proxy's address.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


@dataclass
class _Client:
    failures: list[float] = field(default_factory=list)
    lockouts: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class GuessLimiter:
    """Counts wrong tokens per client key; thread-safe (sync routes run in a thread pool).

    ``clock`` is injectable so that tests need not sleep. At most ``max_clients`` keys are
    kept (the least recently failing go first), so a flood of addresses cannot fill memory.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        lockout_s: float = 10.0,
        max_lockout_s: float = 900.0,
        forget_s: float = 3600.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or min(window_s, lockout_s, max_lockout_s, forget_s) <= 0:
            raise ValueError("the guess limiter needs positive numbers")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.forget_s = forget_s
        self.max_clients = max_clients
        self.clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it is not locked out."""
        with self._lock:
            client = self._clients.get(key)
            return 0.0 if client is None else max(0.0, client.locked_until - self.clock())

    def failed(self, key: str) -> float:
        """Record a wrong token from ``key``; the lockout it starts in seconds, else 0."""
        now = self.clock()
        with self._lock:
            client = self._client(key, now)
            client.last_failure = now
            client.failures = [t for t in client.failures if now - t < self.window_s] + [now]
            if len(client.failures) < self.max_failures:
                return 0.0
            client.failures.clear()
            client.lockouts += 1
            doubled = self.lockout_s * 2.0 ** min(client.lockouts - 1, 60)  # no overflow
            lockout = min(doubled, self.max_lockout_s)
            client.locked_until = now + lockout
            return lockout

    def _client(self, key: str, now: float) -> _Client:
        client = self._clients.pop(key, None)
        if client is None or now - client.last_failure > self.forget_s:
            client = _Client()  # a long quiet spell forgets earlier lockouts
        self._clients[key] = client  # most recent last
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return client


def client_key(scope: Scope) -> str:
    """The address a request came from (an IPv6 one as its /64)."""
    client = scope.get("client")
    if not client:
        return "unknown"
    host = str(client[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # "testclient", a unix socket
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def limiter_of(request: Request) -> GuessLimiter:
    limiter: GuessLimiter = request.app.state.guess_limiter
    return limiter


def record_failure(request: Request, key: str | None = None) -> None:
    """Count a wrong token once per request (the query token and the cookie may both be
    wrong in one request) against ``key`` (default: the request's address)."""
    if getattr(request.state, "token_failure_counted", False):
        return
    request.state.token_failure_counted = True
    key = key or client_key(request.scope)
    lockout = limiter_of(request).failed(key)
    if lockout:
        # The address, never the token: a log must not help guessing. repr: behind a
        # trusted proxy the address is text from a header.
        log.warning("too many wrong access tokens from %r: locked out for %.0f s", key, lockout)


def forget_cookie(request: Request) -> None:
    """Have :class:`TokenGuessLimit` delete the token cookie in this request's answer."""
    request.state.forget_token_cookie = True


class TokenGuessLimit:
    """Answers 429 to every request from a locked-out address while the server has a
    token; ``locked_for(scope)`` (:func:`greenrunner.web.auth.locked_for`) says for how
    long. Pure ASGI: a locked client's upload is not even read. It also deletes the token
    cookie (named ``cookie``) from answers to requests whose cookie was wrong."""

    def __init__(self, app: ASGIApp, cookie: str, locked_for: Callable[[Scope], float]) -> None:
        self.app = app
        self.locked_for = locked_for
        self.forget = f'{cookie}=""; Max-Age=0; Path=/; HttpOnly; SameSite=lax'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        wait = self.locked_for(scope)
        if wait > 0:
            await _locked(request, math.ceil(wait))(scope, receive, send)
            return

        async def forgetting(message: Message) -> None:
            if message["type"] == "http.response.start" and getattr(
                request.state, "forget_token_cookie", False
            ):
                headers = [*message.get("headers", []), (b"set-cookie", self.forget)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, forgetting)


def _locked(request: Request, seconds: int) -> Response:
    from greenrunner.web.limits import wants_html

    message = (
        f"too many wrong access tokens from your address; try again in {seconds} s with the "
        "token the server was started with (--token or GREENRUNNER_TOKEN). Each further run "
        "of wrong tokens locks the address out for longer"
    )
    headers = {"Retry-After": str(seconds)}
    if wants_html(request):
        from greenrunner.web.pages import error_page

        response = error_page(request, message, 429)
        response.headers.update(headers)
        return response
    return JSONResponse({"detail": message}, status_code=429, headers=headers)
