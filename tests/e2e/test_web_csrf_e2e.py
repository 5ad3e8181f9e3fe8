"""A page on another site (here: another port of 127.0.0.1, as a local dev server or a
malicious download would be) makes the user's browser post to GreenRunner: the set-up
form, a multipart upload by script and a start. The server refuses each and nothing is
created or started."""

from __future__ import annotations

import base64
import html
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from tests.web_helpers import image_folder_files, zip_bytes

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.e2e.conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USE_CASE = "Recommend a model for detecting objects deployed on a drone"


class Attacker:
    """A plain web server on its own port; ``pages`` maps a path to the HTML it serves."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0], "not here").encode()
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    running = Attacker()
    try:
        yield running
    finally:
        running.close()


def _auto_form(action: str, fields: dict[str, str], enctype: str) -> str:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return (
        '<!doctype html><title>You won a prize</title><body onload="document.forms[0].submit()">'
        f'<form method="post" action="{html.escape(action)}" enctype="{enctype}">{inputs}</form>'
    )


def _counts(page: Page) -> tuple[int, int, int]:
    def get(path: str) -> Any:
        answer = page.request.get(path)
        assert answer.ok, answer.text()
        return answer.json()

    experiments = get("/api/experiments")
    total = experiments["total"] if isinstance(experiments, dict) else len(experiments)
    return int(total), len(get("/api/repositories")), len(get("/api/datasets"))


def _refused_navigation(page: Page, url: str, target: str) -> str:
    """Open ``url`` (which auto-posts to ``target``); the answer's status and #error text."""
    with page.expect_response(
        lambda r: r.url == target and r.request.method == "POST", timeout=15_000
    ) as answer:
        page.goto(url)
    status = answer.value.status
    page.wait_for_url(target)
    return f"{status} {page.locator('#error').inner_text()}"


def test_forms_from_another_site_are_refused(
    page: Page, attacker: Attacker, server: Server
) -> None:
    page.goto("/")  # the user has GreenRunner open: the browser holds its cookies
    before = _counts(page)
    fields = {"repository": "objectnet-sim", "use_case": USE_CASE, "budget": "0.1", "seed": "0"}
    for enctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        attacker.pages["/setup.html"] = _auto_form(server.url + "/", fields, enctype)
        result = _refused_navigation(page, attacker.url + "/setup.html", server.url + "/")
        assert result.startswith("403 "), result
        assert "accepts changes only from its own pages" in result
    assert _counts(page) == before

    created = page.request.post(
        "/api/experiments", data={"repository": "objectnet-sim", "use_case": USE_CASE}
    )
    assert created.ok, created.text()
    experiment = int(created.json()["id"])
    page.goto(f"/experiments/{experiment}/staging")
    target = f"{server.url}/experiments/{experiment}/start"
    attacker.pages["/start.html"] = _auto_form(
        target, {"weight-accuracy": "1"}, "application/x-www-form-urlencoded"
    )
    result = _refused_navigation(page, attacker.url + "/start.html", target)
    assert result.startswith("403 "), result
    view = page.request.get(f"/api/experiments/{experiment}").json()
    assert view["status"] == "staging" and view["decision"] == "accepted"


def test_an_upload_by_script_from_another_site_is_refused(
    page: Page, attacker: Attacker, server: Server
) -> None:
    before = _counts(page)
    archive = base64.b64encode(zip_bytes(image_folder_files(6))).decode()
    # fetch(..., {mode: "no-cors"}) with a FormData body needs no preflight: the browser
    # sends it and only hides the answer from the page.
    attacker.pages["/upload.html"] = f"""<!doctype html><title>Loading</title><script>
      const bytes = Uint8Array.from(atob({json.dumps(archive)}), (c) => c.charCodeAt(0));
      const form = new FormData();
      form.append("file", new Blob([bytes], {{type: "application/zip"}}), "photos.zip");
      Promise.all(["/api/datasets", "/api/repositories"].map((path) =>
        fetch({json.dumps(server.url)} + path, {{method: "POST", mode: "no-cors", body: form}})))
        .then(() => {{ document.title = "sent"; }}, () => {{ document.title = "failed"; }});
    </script>"""
    statuses: list[int] = []
    page.on(
        "response",
        lambda r: statuses.append(r.status) if r.url.startswith(server.url + "/api/") else None,
    )
    page.goto(attacker.url + "/upload.html")
    page.wait_for_function("document.title === 'sent' || document.title === 'failed'")
    # The answers are opaque to the page, but the browser saw them.
    assert statuses == [403, 403], statuses
    assert _counts(page) == before
