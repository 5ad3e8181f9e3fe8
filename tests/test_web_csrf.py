"""Cross-site requests: a page elsewhere cannot make the user's browser change anything.

A real server in a process gets what a browser sends for a page on another site (its
``Origin`` and ``Sec-Fetch-Site``): uploads, the set-up form and a start are refused before
anything is read or created. The pages' forms also need their form token. Programs (no
browser headers) keep working. Unit tests pin the origin comparison (IPv6, default ports).
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient

from greenrunner.web import csrf
from greenrunner.web.app import create_app
from greenrunner.web.settings import WebSettings
from tests.live_server import LiveServer, Reply, multipart
from tests.web_helpers import image_folder_files, zip_bytes

USE_CASE = "Recommend a model for detecting objects deployed on a drone"
FORM = {
    "repository": "objectnet-sim",
    "dataset": "",
    "use_case": USE_CASE,
    "strategy": "default",
    "budget": "0.1",
    "budget_unit": "calls",
    "seed": "0",
}
HTML = {"Accept": "text/html,application/xhtml+xml"}
URLENCODED = {"Content-Type": "application/x-www-form-urlencoded"}
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    running = LiveServer(tmp_path_factory.mktemp("csrf-server"))
    try:
        yield running
    finally:
        running.stop()


def api(server: LiveServer, method: str, path: str, body: Any = None) -> Any:
    """A program's call: JSON, no browser headers."""
    data = b"" if body is None else json.dumps(body).encode()
    reply = server.request(method, path, data, {"Content-Type": "application/json"})
    assert reply.status < 300, reply.text
    return json.loads(reply.text)


def counts(server: LiveServer) -> tuple[int, int, int]:
    """How many experiments, repositories and datasets the server has."""
    experiments = api(server, "GET", "/api/experiments")
    # A page of summaries ({"items", "total", ...}) or, before paging, the whole list.
    total = experiments["total"] if isinstance(experiments, dict) else len(experiments)
    return (
        int(total),
        len(api(server, "GET", "/api/repositories")),
        len(api(server, "GET", "/api/datasets")),
    )


def browser_session(server: LiveServer, path: str = "/", cookie: str = "") -> tuple[str, str]:
    """What a browser holds after opening a page: the form-token cookie (a new one unless
    it sends ``cookie``) and the token in the page."""
    jar = {"Cookie": f"{csrf.COOKIE}={cookie}"} if cookie else {}
    page = server.request("GET", path, headers={**HTML, **jar})
    assert page.status == 200, page.text
    cookie = page.cookie(csrf.COOKIE) or cookie
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    return cookie, token.group(1) if token else ""


def same_origin(server: LiveServer, cookie: str) -> dict[str, str]:
    """The headers Chromium sends with a form on this server's own page."""
    return {
        **HTML,
        "Origin": server.origin,
        "Sec-Fetch-Site": "same-origin",
        "Cookie": f"{csrf.COOKIE}={cookie}",
    }


def error_of(reply: Reply) -> str:
    found = re.search(r'<div id="error"[^>]*role="alert"[^>]*>(.*?)</div>', reply.text, re.S)
    assert found, f"no #error on the page: {reply.text[:500]}"
    return found.group(1)


def staged_via_api(server: LiveServer) -> int:
    body = {"repository": "objectnet-sim", "use_case": USE_CASE, "budget": 0.1, "seed": 0}
    return int(api(server, "POST", "/api/experiments", body)["id"])


# --- a real server: refused ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["repositories", "datasets"])
def test_cross_site_multipart_upload_is_refused(server: LiveServer, kind: str) -> None:
    before = counts(server)
    body, content_type = multipart({}, {"file": ("photos.zip", zip_bytes(image_folder_files(6)))})
    for origin in (EVIL, "null", "http://127.0.0.1:1", f"https://127.0.0.1:{server.port}"):
        reply = server.request(
            "POST", f"/api/{kind}", body, {"Content-Type": content_type, "Origin": origin}
        )
        assert reply.status == 403, (origin, reply.text)
        assert (
            "GreenRunner accepts changes only from its own pages"
            in json.loads(reply.text)["detail"]
        )
    # What Chromium sends for fetch(..., {mode: "no-cors", body: formData}) from a page on
    # another port of this machine.
    reply = server.request(
        "POST",
        f"/api/{kind}",
        body,
        {
            "Content-Type": content_type,
            "Origin": "http://127.0.0.1:9",
            "Sec-Fetch-Site": "same-site",
        },
    )
    assert reply.status == 403 and "Sec-Fetch-Site: same-site" in reply.text
    assert counts(server) == before


def test_cross_site_setup_form_is_refused_even_with_a_valid_token(server: LiveServer) -> None:
    cookie, token = browser_session(server)
    before = counts(server)
    body = urlencode({**FORM, "csrf_token": token}).encode()
    for extra in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        headers = {**HTML, **URLENCODED, "Cookie": f"{csrf.COOKIE}={cookie}", **extra}
        reply = server.request("POST", "/", body, headers)
        assert reply.status == 403, (extra, reply.text[:300])
        assert "accepts changes only from its own pages" in error_of(reply)
    # The multipart form (the one with the upload fields) too.
    files = {"dataset_file": ("photos.zip", zip_bytes(image_folder_files(6)))}
    body, content_type = multipart({**FORM, "csrf_token": token}, files)
    headers = {
        **HTML,
        "Content-Type": content_type,
        "Origin": EVIL,
        "Cookie": f"{csrf.COOKIE}={cookie}",
    }
    reply = server.request("POST", "/", body, headers)
    assert reply.status == 403 and "evil.example" in error_of(reply)
    assert counts(server) == before


def test_start_and_run_from_another_site_are_refused(server: LiveServer) -> None:
    experiment = staged_via_api(server)
    cookie, token = browser_session(server, f"/experiments/{experiment}/staging")
    body = urlencode({"csrf_token": token, "weight-accuracy": "1"}).encode()
    headers = {**HTML, **URLENCODED, "Cookie": f"{csrf.COOKIE}={cookie}"}
    reply = server.request(
        "POST",
        f"/experiments/{experiment}/start",
        body,
        {**headers, "Sec-Fetch-Site": "cross-site"},
    )
    assert reply.status == 403 and "Sec-Fetch-Site: cross-site" in error_of(reply)
    run = server.request("POST", f"/api/experiments/{experiment}/run", headers={"Origin": EVIL})
    assert run.status == 403
    weights = server.request(
        "PUT",
        f"/api/experiments/{experiment}/weights",
        json.dumps({"weights": {"accuracy": 1.0}}).encode(),
        {"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"},
    )
    assert weights.status == 403
    view = api(server, "GET", f"/api/experiments/{experiment}")
    assert view["status"] == "staging" and view["decision"] == "accepted"


def test_forms_without_their_token_are_refused_and_keep_what_was_typed(server: LiveServer) -> None:
    cookie, token = browser_session(server)
    before = counts(server)
    typed = {**FORM, "use_case": "Sort photos of birds on a phone", "seed": "7"}
    for given, jar in (
        ({}, cookie),
        ({"csrf_token": "0" * 64}, cookie),
        ({"csrf_token": token}, ""),
    ):
        headers = {**same_origin(server, jar), **URLENCODED}
        if not jar:
            del headers["Cookie"]
        reply = server.request("POST", "/", urlencode({**typed, **given}).encode(), headers)
        assert reply.status == 403, reply.text[:300]
        assert "form token" in error_of(reply)
        assert "Sort photos of birds on a phone</textarea>" in reply.text
        assert 'id="seed" name="seed" type="number" min="0" step="1" value="7"' in reply.text
    assert counts(server) == before

    experiment = staged_via_api(server)
    moved = urlencode({"weight-accuracy": "0.9", "weight-size": "0.05"}).encode()
    reply = server.request(
        "POST",
        f"/experiments/{experiment}/start",
        moved,
        {**same_origin(server, cookie), **URLENCODED},
    )
    assert reply.status == 403 and "form token" in error_of(reply)
    assert 'id="weight-accuracy" name="weight-accuracy"' in reply.text
    assert 'value="0.90"' in reply.text  # the slider stays where it was moved
    assert api(server, "GET", f"/api/experiments/{experiment}")["status"] == "staging"

    resume = server.request(
        "POST",
        f"/experiments/{experiment}/resume",
        b"",
        {**same_origin(server, cookie), **URLENCODED},
    )
    assert resume.status == 403 and "form token" in error_of(resume)


# --- a real server: accepted ---------------------------------------------------------------
def test_same_origin_forms_with_their_token_work(server: LiveServer) -> None:
    cookie, token = browser_session(server)
    assert cookie and token, "the page set no form-token cookie or has no token field"
    headers = {**same_origin(server, cookie), **URLENCODED}
    created = server.request(
        "POST", "/", urlencode({**FORM, "csrf_token": token}).encode(), headers
    )
    assert created.status == 303, created.text[:500]
    found = re.fullmatch(r"/experiments/(\d+)/staging", created.headers["location"])
    assert found
    experiment = int(found.group(1))
    # The staging page's form, posted as Chromium does (the cookie is the same).
    _, token = browser_session(server, f"/experiments/{experiment}/staging", cookie)
    body = urlencode({"csrf_token": token, "weight-accuracy": "0.8", "weight-size": "0.1"})
    started = server.request("POST", f"/experiments/{experiment}/start", body.encode(), headers)
    assert started.status == 303, started.text[:500]
    assert api(server, "GET", f"/api/experiments/{experiment}")["status"] in {
        "queued",
        "running",
        "done",
    }
    # A program (no browser headers) uses the API as before.
    assert staged_via_api(server) > experiment


def test_pages_forbid_framing(server: LiveServer) -> None:
    reply = server.request("GET", "/", headers=HTML)
    assert reply.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]


# --- the rules, without a server ------------------------------------------------------------
def _scope(
    host: str | None, *, scheme: str = "http", method: str = "POST", **headers: str
) -> dict[str, Any]:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    if host is not None:
        raw.append((b"host", host.encode()))
    return {
        "type": "http",
        "method": method,
        "scheme": scheme,
        "headers": raw,
        "server": ("127.0.0.1", 8000),
    }


@pytest.mark.parametrize(
    ("host", "origin", "scheme"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000", "http"),
        ("LOCALHOST:8000", "http://localhost:8000", "http"),
        ("[::1]:8000", "http://[::1]:8000", "http"),
        ("[0:0::1]:8000", "http://[::1]:8000", "http"),  # one address, two spellings
        ("127.0.0.1", "http://127.0.0.1:80", "http"),  # default ports
        ("127.0.0.1:80", "http://127.0.0.1", "http"),
        ("gr.example.org", "https://gr.example.org:443", "https"),
        (None, "http://127.0.0.1:8000", "http"),  # no Host: the socket's address
    ],
)
def test_same_origin_is_recognised(host: str | None, origin: str, scheme: str) -> None:
    assert csrf.cross_site_reason(_scope(host, scheme=scheme, origin=origin)) is None


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8000", "http://evil.example"),
        ("127.0.0.1:8000", "http://127.0.0.1:8001"),  # another port: another origin
        ("127.0.0.1:8000", "https://127.0.0.1:8000"),  # another scheme
        ("127.0.0.1:8000", "http://127.0.0.1:8000.evil.example"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000@evil.example"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000/path"),
        ("127.0.0.1:8000", "http://127.0.0.1:99999"),
        ("127.0.0.1:8000", "ftp://127.0.0.1:8000"),
        ("127.0.0.1:8000", "null"),
        ("127.0.0.1:8000", ""),
        ("[::1]:8000", "http://[::2]:8000"),
        ("[::1]:8000", "http://[::1:8000"),
        ("127.0.0.1:8000", "http://[::1]:8000"),
        ("not a host", "http://127.0.0.1:8000"),  # an unproven own origin
    ],
)
def test_other_origins_are_refused(host: str, origin: str) -> None:
    assert csrf.cross_site_reason(_scope(host, origin=origin)) is not None


def test_fetch_metadata_decides_when_present() -> None:
    host = "127.0.0.1:8000"
    for site in ("cross-site", "same-site", "none", "CROSS-SITE", "whatever"):
        assert csrf.cross_site_reason(_scope(host, sec_fetch_site=site)) is not None
    assert csrf.cross_site_reason(_scope(host, sec_fetch_site="same-origin")) is None
    # Origin null with Sec-Fetch-Site same-origin: a same-origin post under a strict
    # referrer policy. Sec-Fetch-Site is set by the browser, so it is trusted.
    assert csrf.cross_site_reason(_scope(host, sec_fetch_site="same-origin", origin="null")) is None
    assert csrf.cross_site_reason(_scope(host, sec_fetch_site="same-origin", origin=EVIL))
    # Programs send neither header: not a browser tricked by a page.
    assert csrf.cross_site_reason(_scope(host)) is None


def test_only_state_changing_methods_are_checked(tmp_path: Path) -> None:
    settings = WebSettings(data_dir=tmp_path / "web")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        cross = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
        assert client.get("/api/repositories", headers=cross).status_code == 200
        assert client.get("/", headers=cross).status_code == 200  # a link from elsewhere
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            answer = client.request(method, "/api/experiments/1/weights", headers=cross)
            assert answer.status_code == 403, method


def test_form_tokens_are_bound_to_the_cookie_and_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "web"
    first = csrf.FormTokens(csrf.load_secret(data))
    nonce, other = "a" * 43, "b" * 43
    token = first.token(nonce)
    assert first.valid(nonce, token)
    assert not first.valid(other, token)  # a cookie set by another page needs its own token
    assert not first.valid(nonce, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not first.valid(None, token) and not first.valid(nonce, None)
    assert not first.valid("short", first.token("short"))
    # The secret is kept in the data folder, readable by its owner only: a page opened
    # before a restart still posts.
    assert csrf.FormTokens(csrf.load_secret(data)).valid(nonce, token)
    mode = stat.S_IMODE((data / csrf.SECRET_FILE).stat().st_mode)
    assert mode == 0o600
    assert not csrf.FormTokens(csrf.load_secret(tmp_path / "other")).valid(nonce, token)
