"""Requests the server cannot serve get an answer, never a traceback or a dropped
connection, against a real server.

- Forms it cannot parse (no multipart boundary, too many fields or files, a field too
  large, broken multipart) answer their own 4xx as a page, on every page that takes a form.
- An exception nothing handles, on any route or in a middleware, answers 500 with a short
  message (JSON for the API, a page for a browser), logs its traceback, and leaves the
  connection usable. The broken server gets its faults from a ``sitecustomize`` module put
  on its PYTHONPATH (the test's own code, so that any later fix to a real fault does not
  make the test vacuous).
"""

from __future__ import annotations

import http.client
import json
import os
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from tests.live_server import LiveServer

HTML = {"Accept": "text/html,application/xhtml+xml"}
MB = 1 << 20


def error_of(text: str) -> str:
    found = re.search(r'<div id="error"[^>]*>(.*?)</div>', text, re.S)
    assert found, f"no #error on the page: {text[:500]}"
    return found.group(1).strip()


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--b\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


MULTIPART = "multipart/form-data; boundary=b"
URLENCODED = "application/x-www-form-urlencoded"
# (body, Content-Type, what the page must say)
BAD_FORMS = {
    "multipart without a boundary": (b"--x\r\n", "multipart/form-data", "boundary"),
    "an empty boundary": (b"--x\r\n", "multipart/form-data; boundary=", "multipart"),
    "too many fields": (
        "&".join(f"f{i}=1" for i in range(1100)).encode(),
        URLENCODED,
        "Too many fields",
    ),
    "too many multipart fields": (
        b"".join(part(f"f{i}", b"1") for i in range(1001)) + b"--b--\r\n",
        MULTIPART,
        "Too many fields",
    ),
    "too many files": (
        b"".join(part(f"f{i}", b"1", "a.zip") for i in range(1001)) + b"--b--\r\n",
        MULTIPART,
        "Too many files",
    ),
    "a field over 1 MB": (b"use_case=" + b"a" * (MB + 1), URLENCODED, "maximum size"),
    "a multipart field over 1 MB": (
        part("use_case", b"a" * (MB + 5)) + b"--b--\r\n",
        MULTIPART,
        "maximum size",
    ),
    "a part without a name": (b"--b\r\nX: y\r\n\r\n1\r\n--b--\r\n", MULTIPART, "name"),
    "garbage": (b"garbage\r\n\r\n", MULTIPART, "multipart"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    running = LiveServer(tmp_path_factory.mktemp("robust-server"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def staged(server: LiveServer) -> int:
    body = {"repository": "objectnet-sim", "use_case": "sort photos", "budget": 0.1, "seed": 0}
    reply = server.request(
        "POST", "/api/experiments", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    assert reply.status == 201, reply.text
    return int(json.loads(reply.text)["id"])


@pytest.mark.parametrize("page", ["/", "/experiments/{id}/start", "/experiments/{id}/resume"])
@pytest.mark.parametrize("bad", sorted(BAD_FORMS))
def test_unreadable_forms_answer_their_own_status_as_a_page(
    server: LiveServer, staged: int, page: str, bad: str
) -> None:
    body, content_type, says = BAD_FORMS[bad]
    headers = {
        **HTML,
        "Origin": server.origin,
        "Sec-Fetch-Site": "same-origin",
        "Content-Type": content_type,
    }
    reply = server.request("POST", page.format(id=staged), body, headers)
    assert reply.status == 400, (bad, reply.status, reply.text[:300])
    assert reply.headers.get_content_type() == "text/html"
    assert says.lower() in error_of(reply.text).lower()
    assert "Traceback" not in reply.text
    # Nothing changed: the experiment is still waiting to start.
    view = server.request("GET", f"/api/experiments/{staged}")
    assert json.loads(view.text)["status"] == "staging"


def test_a_page_with_a_malformed_id_answers_a_page(server: LiveServer) -> None:
    reply = server.request("GET", "/experiments/not-a-number", headers=HTML)
    assert reply.status == 422 and reply.headers.get_content_type() == "text/html"
    assert "experiment_id" in error_of(reply.text)
    api = server.request("GET", "/api/experiments/not-a-number")
    assert api.status == 422 and "experiment_id" in json.loads(api.text)["detail"]


# --- exceptions nothing handles -----------------------------------------------------------
FAULTS = '''
"""Faults for tests/test_web_robustness.py (imported at start-up from PYTHONPATH)."""
from greenrunner.web import auth, service

def _strategies(self):
    raise RuntimeError("boom-for-the-test")

service.Service.strategies = _strategies
_dispatch = auth.LoopbackHostMiddleware.dispatch

async def _exploding(self, request, call_next):
    if "explode" in request.url.path:
        raise KeyError("boom-in-a-middleware")
    return await _dispatch(self, request, call_next)

auth.LoopbackHostMiddleware.dispatch = _exploding
'''


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("broken-server")
    hooks = root / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FAULTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(hooks), prepend=os.pathsep)
        running = LiveServer(root)  # it copies the environment when it starts
    try:
        yield running
    finally:
        running.stop()


def on_one_connection(
    server: LiveServer, requests: list[tuple[str, dict[str, str]]]
) -> list[tuple[int, str, str]]:
    """GETs on one keep-alive connection: (status, content type, body) of each."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    answers = []
    try:
        for path, headers in requests:
            conn.request("GET", path, headers=headers)
            reply = conn.getresponse()
            answers.append((reply.status, reply.msg.get_content_type(), reply.read().decode()))
    finally:
        conn.close()
    return answers


def test_unexpected_errors_answer_500_and_keep_the_connection(broken: LiveServer) -> None:
    forged = '/explode\nINFO:     127.0.0.1:5555 - "GET / HTTP/1.1" 200 OK'
    answers = on_one_connection(
        broken,
        [
            ("/api/strategies", {}),  # an API route
            ("/api/repositories", {}),  # the same connection still answers
            ("/api/explode", {}),  # in a middleware, before any route
            ("/explode/page", HTML),  # the same, from a browser
            ("/", HTML),  # a page (it shows the strategies)
            (quote(forged), {}),
            ("/api/repositories", {}),
        ],
    )
    (api, after, middleware, page_mw, page, forging, last) = answers
    for status, kind, text in (api, middleware, forging):
        assert (status, kind) == (500, "application/json"), (status, text)
        detail = json.loads(text)["detail"]
        assert "server log" in detail and "boom" not in detail and "Traceback" not in text
    for status, kind, text in (page_mw, page):
        assert (status, kind) == (500, "text/html"), (status, text[:300])
        assert "server log" in error_of(text) and "boom" not in text
    assert after[0] == last[0] == 200
    log = broken.log.read_text(encoding="utf-8", errors="replace")
    assert "boom-for-the-test" in log and "boom-in-a-middleware" in log
    assert "Traceback" in log
    assert not any(line.startswith("INFO:     127.0.0.1:5555") for line in log.splitlines())
