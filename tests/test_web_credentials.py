"""Which tokens a request presents and which are honoured, against a real server.

- A request that presents any token (``?token=``, bearer, the cookie) meets the lockout,
  wherever it goes; static files are exempt only without one, and never check a token.
- ``?token=`` is honoured only on a page (``/login`` included), and only when the browser
  does not mark the request as sent by another site's page, which must not be able to lock
  the user out (``<img src="http://127.0.0.1:8000/?token=nope">``).
- X-Forwarded-For is trusted only from the proxies named by ``--forwarded-allow-ips``.
- The redirect after ``?token=`` never leaves the server; log lines cannot be forged.

Every test sends from its own loopback address (lockouts are per address).
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from greenrunner.errors import ConfigError
from greenrunner.web import auth
from greenrunner.web.settings import WebSettings
from tests.live_server import LiveServer, Reply

TOKEN = "the-right-token-of-32-characters"
HTML = {"Accept": "text/html,application/xhtml+xml"}
_addresses = itertools.count(20)


def new_client() -> str:
    """A loopback address no other test of this module sends from."""
    return f"127.0.0.{next(_addresses)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{auth.COOKIE}={token}"}


def lock_out(server: LiveServer, source: str, **headers: str) -> None:
    for i in range(5):
        wrong = server.request(
            "GET",
            "/api/repositories",
            headers={**headers, **bearer(f"wrong-{i}-" * 4)},
            source=source,
        )
        assert wrong.status == 401, wrong.text
    assert (
        server.request("GET", "/api/repositories", headers=bearer(TOKEN), source=source).status
        == 429
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    running = LiveServer(tmp_path_factory.mktemp("credentials-server"), token=TOKEN)
    try:
        yield running
    finally:
        running.stop()


# --- 1: static files are no oracle, and meet the lockout with a token -----------------------
def test_query_tokens_are_not_taken_off_the_pages(server: LiveServer) -> None:
    me = new_client()
    plain = server.request("GET", "/static/app.css", source=me)
    assert plain.status == 200
    for path in ("/static/app.css", "/api/repositories", "/docs", "/openapi.json"):
        right = server.request("GET", f"{path}?token={TOKEN}", source=me)
        wrong = server.request("GET", f"{path}?token=a-wrong-guess-of-many-chars", source=me)
        # Neither a redirect nor a cookie: the answer does not depend on the token at all.
        assert right.status == wrong.status != 303, (path, right.status, wrong.status)
        assert right.cookie(auth.COOKIE) is None and "location" not in right.headers
    assert server.request("GET", f"/static/app.css?token={TOKEN}", source=me).text == plain.text
    # Not honoured there, so not counted either: many "guesses" lock nothing.
    for i in range(12):
        assert server.request("GET", f"/static/app.css?token=guess-{i}", source=me).status == 200
    assert (
        server.request("GET", "/api/repositories", headers=bearer(TOKEN), source=me).status == 200
    )


def test_static_files_with_a_token_meet_the_lockout(server: LiveServer) -> None:
    me = new_client()
    lock_out(server, me)
    for path in (f"/static/app.css?token={TOKEN}", "/static/app.css?token=another-guess-1234"):
        locked = server.request("GET", path, source=me)
        assert locked.status == 429 and "location" not in locked.headers, (path, locked.status)
        assert locked.cookie(auth.COOKIE) is None
    for headers in (bearer(TOKEN), cookie(TOKEN), cookie("a-stale-or-guessed-token")):
        assert server.request("GET", "/static/app.css", headers=headers, source=me).status == 429
    # Without any token a static file tells nothing, so it stays available (a locked-out
    # page can still show its styles).
    assert server.request("GET", "/static/app.css", source=me).status == 200


# --- 2b: another site's page cannot lock the user out --------------------------------------
@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_marked_query_tokens_are_neither_checked_nor_counted(server: LiveServer, site: str) -> None:
    me = new_client()
    marked = {"Sec-Fetch-Site": site, "Sec-Fetch-Dest": "image"}
    for i in range(8):  # what <img src="http://127.0.0.1:8000/?token=nope0"> sends
        for path in (f"/?token=nope{i}", f"/history?token=nope{i}", f"/login?token=nope{i}"):
            reply = server.request("GET", path, headers={**HTML, **marked}, source=me)
            assert reply.status == 401, (path, reply.status)
    # ... nor with a bearer (a page cannot send one at all, so it is not looked at) ...
    for i in range(8):
        reply = server.request(
            "GET", "/", headers={**marked, **bearer(f"nope-{i}" * 3), **HTML}, source=me
        )
        assert reply.status == 401
    # ... and a stale cookie sent along counts in a bucket of its own, never against the
    # address (below: a program that keeps pretending is locked out of that one).
    for i in range(12):
        reply = server.request(
            "GET", "/", headers={**marked, **cookie(f"stale-{i}" * 3)}, source=me
        )
        assert reply.status in (401, 429)
    # The owner is not locked out.
    assert (
        server.request("GET", "/api/repositories", headers=bearer(TOKEN), source=me).status == 200
    )
    # The right token from another site is not honoured either (no cookie for a page
    # elsewhere to plant), with a message that says what to do.
    fresh = new_client()
    for path in (f"/?token={TOKEN}", f"/login?token={TOKEN}"):
        reply = server.request("GET", path, headers={**HTML, **marked}, source=fresh)
        assert reply.status == 401 and reply.cookie(auth.COOKIE) is None, path
    login = server.request("GET", f"/login?token={TOKEN}", headers=marked, source=fresh)
    assert "address bar" in login.text


@pytest.mark.parametrize("site", [None, "none", "same-origin"])
def test_query_tokens_typed_or_from_this_server_work(server: LiveServer, site: str | None) -> None:
    me = new_client()
    headers = {**HTML, **({"Sec-Fetch-Site": site} if site else {})}
    login = server.request("GET", f"/login?token={TOKEN}", headers=headers, source=me)
    assert login.status == 303 and login.cookie(auth.COOKIE) == TOKEN
    hop = server.request("GET", f"/history?token={TOKEN}&status=done", headers=headers, source=me)
    assert hop.status == 303 and hop.headers["location"] == "/history?status=done"
    assert hop.cookie(auth.COOKIE) == TOKEN
    # And wrong ones count: five lock the address out.
    for i in range(5):
        wrong = server.request(
            "GET", f"/history?token=guess-{i}-of-many", headers=headers, source=me
        )
        assert wrong.status == 401
    assert server.request("GET", f"/login?token={TOKEN}", headers=headers, source=me).status == 429


def test_a_program_pretending_to_be_another_site_gets_no_free_guesses(server: LiveServer) -> None:
    me = new_client()
    marked = {"Sec-Fetch-Site": "cross-site"}
    # A bearer header is not honoured on a marked request: the right one does not open it.
    assert (
        server.request(
            "GET", "/api/repositories", headers={**marked, **bearer(TOKEN)}, source=me
        ).status
        == 401
    )
    # The cookie is (links followed from elsewhere keep the login), and wrong ones count in
    # a bucket of their own: a few guesses, then 429 even for the right cookie ...
    assert (
        server.request(
            "GET", "/api/repositories", headers={**marked, **cookie(TOKEN)}, source=me
        ).status
        == 200
    )
    for i in range(5):
        reply = server.request(
            "GET", "/api/repositories", headers={**marked, **cookie(f"g{i}" * 9)}, source=me
        )
        assert reply.status == 401
    assert (
        server.request(
            "GET", "/api/repositories", headers={**marked, **cookie(TOKEN)}, source=me
        ).status
        == 429
    )
    # ... while the address itself, used directly, is not locked out.
    assert (
        server.request("GET", "/api/repositories", headers=bearer(TOKEN), source=me).status == 200
    )


# --- 2a: X-Forwarded-For only from the proxies named ----------------------------------------
def test_forwarded_for_is_ignored_by_default(server: LiveServer) -> None:
    # From 127.0.0.1, which uvicorn trusts unless told otherwise: any local program (or a
    # same-host proxy that passes the client's header on) could choose its own address.
    me = "127.0.0.1"
    # X-Forwarded-Proto does not make the login cookie Secure (the server speaks http).
    login = server.request(
        "GET", f"/login?token={TOKEN}", headers={"X-Forwarded-Proto": "https"}, source=me
    )
    assert login.status == 303 and "secure" not in login.headers["set-cookie"].lower()
    for i in range(5):
        spoofed = {"X-Forwarded-For": f"10.0.0.{i + 1}", **bearer(f"wrong-guess-{i}" * 2)}
        assert server.request("GET", "/api/repositories", headers=spoofed, source=me).status == 401
    # The five guesses counted against the socket's address, whatever the header said.
    elsewhere = {"X-Forwarded-For": "10.9.9.9", **bearer(TOKEN)}
    assert server.request("GET", "/api/repositories", headers=elsewhere, source=me).status == 429


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("proxied-server")
    running = LiveServer(root, "--forwarded-allow-ips", "127.0.0.1, 127.0.0.5", token=TOKEN)
    try:
        yield running
    finally:
        running.stop()


def test_forwarded_for_is_trusted_from_the_named_proxies_only(proxied: LiveServer) -> None:
    def get(source: str, forwarded: str, token: str) -> Reply:
        headers = {"X-Forwarded-For": forwarded, **bearer(token)}
        return proxied.request("GET", "/api/repositories", headers=headers, source=source)

    # Through the proxy (127.0.0.1), each client counts by the address the proxy set.
    for i in range(5):
        assert get("127.0.0.1", "10.1.1.1", f"wrong-guess-{i}" * 2).status == 401
    assert get("127.0.0.1", "10.1.1.1", TOKEN).status == 429
    assert get("127.0.0.1", "10.2.2.2", TOKEN).status == 200
    assert get("127.0.0.5", "10.2.2.2", TOKEN).status == 200  # the second proxy named
    # Anyone else's header is ignored: it counts by its own address.
    for i in range(5):
        assert get("127.0.0.3", f"10.3.3.{i}", f"wrong-guess-{i}" * 2).status == 401
    assert get("127.0.0.3", "10.4.4.4", TOKEN).status == 429
    # X-Forwarded-Proto from the proxy: the server is https to the browser.
    login = proxied.request(
        "GET",
        f"/login?token={TOKEN}",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.6.6.6"},
    )
    assert login.status == 303 and "secure" in login.headers["set-cookie"].lower()


def test_forwarded_allow_ips_takes_addresses_and_networks_only(tmp_path: Path) -> None:
    from greenrunner.web.settings import parse_proxies

    assert parse_proxies(" 127.0.0.1, ::1 ,10.0.0.0/8,") == ("127.0.0.1", "::1", "10.0.0.0/8")
    settings = WebSettings(data_dir=tmp_path, forwarded_allow_ips=("0:0::1", "10.0.0.0/8"))
    assert settings.forwarded_allow_ips == ("::1", "10.0.0.0/8")
    assert WebSettings(data_dir=tmp_path).forwarded_allow_ips == ()  # none trusted by default
    for bad in ("*", "proxy.example", "10.0.0.1/8", "unix:/tmp/s", "127.0.0.1 10.0.0.1"):
        with pytest.raises(ConfigError, match="forwarded-allow-ips"):
            WebSettings(data_dir=tmp_path, forwarded_allow_ips=(bad,))


def test_serve_documents_the_proxy_option() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "greenrunner.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--forwarded-allow-ips" in " ".join(shown.split())
    assert "X-Forwarded-For" in shown


def test_serve_refuses_a_wildcard_proxy(tmp_path: Path) -> None:
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenrunner.cli",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--forwarded-allow-ips",
            "*",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = " ".join((answer.stdout + answer.stderr).split())
    assert answer.returncode == 2 and "every client could then choose its own address" in said


# --- 8: the redirect after ?token= stays on this server -------------------------------------
def raw_get(server: LiveServer, target: str, source: str) -> tuple[int, str | None]:
    """GET with the request target exactly as given (no client normalises it)."""
    with socket.create_connection(
        ("127.0.0.1", server.port), timeout=30, source_address=(source, 0)
    ) as s:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        s.sendall((request + "Connection: close\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    location = next(
        (h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("location:")), None
    )
    return status, location


def assert_stays_here(server: LiveServer, location: str) -> None:
    assert location.startswith("/") and location[1:2] not in ("/", "\\"), location
    assert not any(ord(c) < 0x21 or c == "\\" for c in location), location
    resolved = urlsplit(urljoin(server.origin + "/", location))
    assert (resolved.scheme, resolved.netloc) == ("http", f"127.0.0.1:{server.port}"), location


HOSTILE_PATHS = [
    "//evil.example/x",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "/\\/evil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%5Cevil.example",
    "/%5C%5Cevil.example",
    "/%09/evil.example",
    "/%0A/evil.example",
    "/http://evil.example",
    "/experiments/%2F%2Fevil.example",
    "/experiments/%5C%5Cevil.example",
    "/experiments/..%2F..%2F%2Fevil.example",
    "/experiments/%09%2F%2Fevil.example",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_token_redirects_stay_on_this_server(server: LiveServer, path: str) -> None:
    status, location = raw_get(server, f"{path}?token={TOKEN}&a=1", new_client())
    if status in (301, 302, 303, 307, 308):
        assert location is not None
        assert_stays_here(server, location)
        assert location.endswith("?a=1")


def test_page_redirects_keep_the_page(server: LiveServer) -> None:
    me = new_client()
    assert raw_get(server, f"/history?token={TOKEN}&status=done", me) == (
        303,
        "/history?status=done",
    )
    assert raw_get(server, f"/experiments/7?token={TOKEN}", me) == (303, "/experiments/7")
    # A page path with odd characters keeps them, escaped, on this server.
    status, location = raw_get(server, f"/experiments/%5C%5Cevil.example?token={TOKEN}", me)
    assert status == 303 and location == "/experiments/%5C%5Cevil.example"


@pytest.mark.parametrize(
    "raw",
    [
        b"//evil.example",
        b"/\\evil.example",
        b"/\t/evil.example",
        b"\\\\evil.example",
        b"",
        b"/%2F/evil",
        b"/ /evil",
        b"/\x00//evil",
        "/caf\u00e9//x".encode(),
        b"https://evil.example/",
    ],
)
def test_relative_target_is_always_a_path_on_this_server(raw: bytes) -> None:
    target = auth.relative_target({"raw_path": raw, "path": raw.decode("latin-1")}, [("a", "1")])
    assert target.startswith("/") and target[1:2] not in ("/", "\\")
    assert not any(ord(c) < 0x21 or ord(c) > 0x7E or c == "\\" for c in target), target
    resolved = urlsplit(urljoin("http://127.0.0.1:8000/", target))
    assert resolved.netloc == "127.0.0.1:8000" and target.endswith("?a=1")


# --- 9: log lines cannot be forged ----------------------------------------------------------
FORGED = 'INFO:     127.0.0.1:5555 - "POST /api/experiments/1/run HTTP/1.1" 202 Accepted'


def test_request_text_cannot_forge_log_lines(server: LiveServer) -> None:
    me = new_client()
    for newline in ("%0a", "%0d%0a", "%0d", "%e2%80%a8"):
        path = "/api/x" + newline + quote(FORGED)
        reply = server.request("POST", path, headers={"Origin": "http://evil.example"}, source=me)
        assert reply.status == 403
    lines = server.log.read_text(encoding="utf-8", errors="replace").splitlines()
    assert any("refused a cross-site" in line for line in lines)
    assert not any(line.startswith("INFO:     127.0.0.1:5555") for line in lines)
    assert not any(line.lstrip().startswith("INFO:     127.0.0.1:5555") for line in lines)
