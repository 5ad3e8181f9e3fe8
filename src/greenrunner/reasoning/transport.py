"""Sending one chat-completions request over HTTP (stdlib urllib, no extra dependency), and
the errors a caller can retry on or report. The one-method :class:`Transport` protocol lets
tests and in-process models stand in for a server."""

from __future__ import annotations

import http.client
import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import IO, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from greenrunner.errors import ConfigError, GreenRunnerError

MAX_RESPONSE_BYTES = 4_000_000
# Worth asking again: the server was busy, rate-limited or failed, not the request.
_RETRY_STATUS = frozenset({408, 409, 425, 429})


class TransportError(GreenRunnerError):
    """A chat request that got no usable reply; ``retryable`` if asking again may help."""

    retryable = True


class ServerUnreachableError(TransportError):
    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"no server answered at {url} ({reason}); is it running there?")


class ServerTimeoutError(TransportError):
    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(
            f"{url} sent no answer within the {timeout:g} s timeout; "
            "allow more time or use a smaller model"
        )


class BadResponseError(TransportError):
    """A 200 reply that is not a chat completion."""


class HTTPStatusError(TransportError):
    def __init__(self, url: str, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{url} answered HTTP {status}: {detail}{_hint(status)}")
        self.retryable = status >= 500 or status in _RETRY_STATUS


def _hint(status: int) -> str:
    if status in (401, 403):
        return " (check the API key in the environment variable the advisor reads)"
    if status == 404:
        return " (check the model name, and that the base URL ends before /chat/completions)"
    if 300 <= status < 400:
        return " (give the final URL as the base URL)"
    return ""


class Transport(Protocol):
    """Sends one JSON request, returns the decoded JSON reply; raises :class:`TransportError`.

    The seam that lets tests talk to a fake server without network or keys.
    """

    def post(
        self, url: str, headers: Mapping[str, str], payload: Mapping[str, Any], timeout: float
    ) -> dict[str, Any]: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Following a redirect would resend the Authorization header to wherever it points.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class UrllibTransport:
    """The default transport: the standard library's ``urllib``, no extra dependency.

    Proxies from the environment are used, except for loopback addresses: a local server
    is never reached through a proxy.
    """

    def post(
        self, url: str, headers: Mapping[str, str], payload: Mapping[str, Any], timeout: float
    ) -> dict[str, Any]:
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode("utf-8"),
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
            method="POST",
        )
        try:
            with _opener(url).open(request, timeout=timeout) as response:
                body: bytes = response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as err:
            raise HTTPStatusError(url, err.code, _error_detail(err)) from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise ServerTimeoutError(url, timeout) from None
            raise ServerUnreachableError(url, err.reason) from None
        except TimeoutError:
            raise ServerTimeoutError(url, timeout) from None
        except (OSError, http.client.HTTPException) as err:
            raise ServerUnreachableError(url, err) from None
        return _decoded(url, body)


def _opener(url: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if _is_loopback(urlsplit(url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_detail(err: urllib.error.HTTPError) -> str:
    if 300 <= err.code < 400:
        return f"redirect to {err.headers.get('Location', 'an unnamed place')}"
    try:
        raw = err.read(4000).decode("utf-8", "replace")
    except OSError:
        raw = ""
    finally:
        err.close()
    try:
        message = json.loads(raw)["error"]
        raw = str(message.get("message", message) if isinstance(message, dict) else message)
    except (ValueError, KeyError, TypeError):
        pass
    return clip(raw or err.reason or "no details")


def _decoded(url: str, body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        raise BadResponseError(f"{url} did not answer with JSON: {clip(body)}") from None
    if not isinstance(value, dict):
        raise BadResponseError(f"{url} answered with JSON that is not an object: {clip(value)}")
    return value


def clip(value: object, limit: int = 300) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit] + "..."


def chat_url(base_url: str) -> str:
    """``base_url`` + ``/chat/completions`` (see the module docstring for the rule)."""
    parts = urlsplit(str(base_url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"the base URL must be an http(s) URL such as http://127.0.0.1:8080/v1 or "
            f"https://api.openai.com/v1; got {base_url!r}"
        )
    if "@" in parts.netloc:
        raise ConfigError(
            "the base URL must not hold credentials; put the API key in the environment "
            "variable the advisor reads (OPENAI_API_KEY unless set otherwise)"
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
