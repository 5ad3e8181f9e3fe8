"""Guessing the access token: a few wrong tokens lock the guessing address out (429 with
Retry-After, longer each time) while other clients with the right token carry on.

The limiter's numbers run on an injected clock (no sleeping); a real server in a process
shows the whole behaviour over HTTP, with 127.0.0.2 as the other client.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient

from greenrunner.web import auth
from greenrunner.web.app import create_app
from greenrunner.web.settings import WebSettings
from greenrunner.web.throttle import GuessLimiter, client_key
from tests.live_server import LiveServer

TOKEN = "the-right-token-of-32-characters"
BASE = "http://127.0.0.1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the limiter's rule ----------------------------------------------------------------------
def test_lockouts_start_after_the_limit_and_double() -> None:
    clock = Clock()
    limiter = GuessLimiter(max_failures=5, window_s=60, lockout_s=10, max_lockout_s=35, clock=clock)
    for _ in range(4):
        assert limiter.failed("a") == 0
    assert limiter.retry_after("a") == 0
    assert limiter.failed("a") == 10  # the fifth within the window
    assert limiter.retry_after("a") == 10 and limiter.retry_after("b") == 0
    clock.now += 4
    assert limiter.retry_after("a") == 6
    clock.now += 6
    assert limiter.retry_after("a") == 0
    assert [limiter.failed("a") for _ in range(5)][-1] == 20  # twice as long
    clock.now += 20
    assert [limiter.failed("a") for _ in range(5)][-1] == 35  # capped
    clock.now += 35
    assert [limiter.failed("a") for _ in range(5)][-1] == 35


def test_failures_age_out_and_quiet_clients_are_forgotten() -> None:
    clock = Clock()
    limiter = GuessLimiter(max_failures=3, window_s=60, lockout_s=10, forget_s=600, clock=clock)
    for _ in range(10):  # one guess a minute never reaches three in a window
        assert limiter.failed("a") == 0
        clock.now += 61
    limiter.failed("a"), limiter.failed("a")
    assert limiter.failed("a") == 10
    clock.now += 10 + 601  # long quiet: the next lockout starts from the beginning again
    limiter.failed("a"), limiter.failed("a")
    assert limiter.failed("a") == 10


def test_memory_is_bounded() -> None:
    limiter = GuessLimiter(max_failures=2, max_clients=100, clock=Clock())
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._clients) == 100


def test_client_keys() -> None:
    def key(host: str) -> str:
        return client_key({"client": (host, 5000)})

    assert key("127.0.0.1") == "127.0.0.1"
    # One machine usually has a whole /64: rotating within it does not reset the count.
    assert key("2001:db8::1") == key("2001:db8::ffff:1") == "2001:db8::/64"
    assert key("2001:db8:0:1::1") != key("2001:db8::1")
    assert key("::ffff:10.1.2.3") == "10.1.2.3"
    assert client_key({"client": None}) == "unknown"


def test_tokens_are_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module auth.py calls it from
    assert auth._matches(TOKEN, TOKEN) and not auth._matches("wrong", TOKEN)
    # Digests of equal length: the time taken does not tell the token's length either.
    assert calls and all(len(a) == len(b) == hashlib.sha256().digest_size for a, b in calls)


# --- the app (TestClient, injected clock) -----------------------------------------------------
@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    settings = WebSettings(data_dir=tmp_path / "web", token=TOKEN)
    limiter = GuessLimiter(max_failures=5, window_s=60, lockout_s=10, clock=clock)
    with TestClient(create_app(settings, guess_limiter=limiter), base_url=BASE) as c:
        yield c


@pytest.mark.parametrize("how", ["bearer", "cookie", "login", "query"])
def test_every_way_of_guessing_counts(client: TestClient, clock: Clock, how: str) -> None:
    for i in range(5):
        guess = f"guess-number-{i:04d}-of-many"
        if how == "bearer":
            answer = client.get("/api/repositories", headers=bearer(guess))
        elif how == "cookie":
            client.cookies.set(auth.COOKIE, guess)
            answer = client.get("/api/repositories")
        elif how == "login":
            answer = client.get(f"/login?token={guess}", follow_redirects=False)
        else:
            # ?token= counts on pages (the API and static files do not honour it).
            answer = client.get(f"/history?token={guess}", follow_redirects=False)
        assert answer.status_code == 401, (i, answer.text)
    client.cookies.clear()
    # Locked out: even the right token gets 429 (a guess must not be told apart from a miss).
    locked = client.get("/api/repositories", headers=bearer(TOKEN))
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "10"
    assert "too many wrong access tokens" in locked.json()["detail"]
    page = client.get("/", headers={"Accept": "text/html", **bearer(TOKEN)})
    assert page.status_code == 429 and 'id="error"' in page.text
    assert page.headers["retry-after"] == "10"
    assert client.get("/static/app.css").status_code == 200  # nothing to guess there
    clock.now += 10
    assert client.get("/api/repositories", headers=bearer(TOKEN)).status_code == 200


def test_requests_without_a_token_and_right_tokens_do_not_count(client: TestClient) -> None:
    for _ in range(20):
        assert client.get("/api/repositories").status_code == 401  # not logged in yet
        assert client.get("/").status_code == 401
        assert client.get("/login", follow_redirects=False).status_code == 401
        assert client.get("/api/repositories", headers=bearer(TOKEN)).status_code == 200
    assert client.get("/api/repositories", headers=bearer("wrong-token")).status_code == 401


def test_a_stale_cookie_is_deleted_so_it_counts_once(client: TestClient) -> None:
    # A browser logged in before the server restarted with another token.
    client.cookies.set(auth.COOKIE, "the-token-of-yesterday-32-chars", domain="127.0.0.1")
    first = client.get("/api/repositories")
    assert first.status_code == 401
    assert f'{auth.COOKIE}=""; Max-Age=0' in first.headers["set-cookie"]
    assert auth.COOKIE not in client.cookies
    for _ in range(10):  # the progress poll goes on, without the cookie now
        assert client.get("/api/repositories").status_code == 401
    assert client.get(f"/login?token={TOKEN}", follow_redirects=False).status_code == 303
    assert client.get("/api/repositories").status_code == 200
    assert "set-cookie" not in client.get("/api/repositories").headers


def test_lockouts_are_logged_without_tokens(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="greenrunner")
    guesses = [f"guess-number-{i:04d}-of-many" for i in range(6)]
    for guess in guesses:
        client.get(f"/login?token={guess}", follow_redirects=False)
    # The server's own records (the test's HTTP client logs the URLs it requests).
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("greenrunner")]
    assert any("locked out for 10 s" in m for m in ours)
    text = "\n".join(ours)
    assert not any(g in text for g in guesses) and TOKEN not in text


# --- a real server ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    running = LiveServer(tmp_path_factory.mktemp("token-server"), token=TOKEN)
    try:
        yield running
    finally:
        running.stop()


def test_guessing_is_locked_out_while_others_carry_on(server: LiveServer) -> None:
    guesses = [f"guess-number-{i:04d}-of-many" for i in range(5)]
    for guess in guesses:
        wrong = server.request("GET", "/api/repositories", headers=bearer(guess))
        assert wrong.status == 401, wrong.text
    locked = server.request("GET", "/api/repositories", headers=bearer(TOKEN))
    assert locked.status == 429, locked.text
    assert 1 <= int(locked.headers["Retry-After"]) <= 10
    assert "too many wrong access tokens" in locked.text
    login = server.request("GET", f"/login?token={TOKEN}")
    assert login.status == 429  # the browser way is locked too
    # Another client (another loopback address) with the right token is not affected, and
    # its own wrong token is a plain 401, not a lockout.
    other = "127.0.0.2"
    assert (
        server.request("GET", "/api/repositories", headers=bearer(TOKEN), source=other).status
        == 200
    )
    assert (
        server.request("GET", "/api/repositories", headers=bearer("nope-" * 4), source=other).status
        == 401
    )
    log = server.log.read_text(encoding="utf-8", errors="replace")
    assert "locked out" in log
    assert TOKEN not in log and not any(g in log for g in guesses)
