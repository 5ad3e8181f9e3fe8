"""``/docs`` and ``/redoc`` come from the package: every file they reference is on this
server (no CDN, no Google fonts, no outside favicon) and is served, with its licence next to
it. The browser test (tests/e2e/test_web_docs_e2e.py) shows they render with every outside
request blocked."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient

from greenrunner.web.app import STATIC, create_app
from greenrunner.web.settings import WebSettings
from tests.live_server import LiveServer

BASE = "http://127.0.0.1"
VENDOR = STATIC / "vendor"


class References(HTMLParser):
    """Every URL a page would load or link to: src, href, and the tags that hold them."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name in {"src", "href", "spec-url", "srcset", "action", "data"} and value:
                self.urls.append((tag, value))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(WebSettings(data_dir=tmp_path / "web")), base_url=BASE) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon-32x32.png", "openapi.json"}),
    ],
)
def test_api_pages_reference_only_this_server(
    client: TestClient, path: str, expected: set[str]
) -> None:
    page = client.get(path)
    assert page.status_code == 200
    # The browser itself refuses anything from elsewhere (ReDoc's menu asks for a logo).
    assert page.headers["content-security-policy"].startswith("default-src 'self' ")
    found = references(page.text)
    assert found.urls, f"{path} references nothing: {page.text[:300]}"
    for tag, url in found.urls:
        absolute = urlsplit(urljoin(BASE + path, url))
        assert (absolute.scheme, absolute.netloc) == ("http", "127.0.0.1"), (tag, url)
        asset = client.get(absolute.path)
        assert asset.status_code == 200, (url, asset.status_code)
        assert len(asset.content) > 100, url
    assert {url.rsplit("/", 1)[-1] for _, url in found.urls} == expected
    # Nothing outside in the inline script either (FastAPI's defaults point at
    # cdn.jsdelivr.net, fonts.googleapis.com and fastapi.tiangolo.com).
    assert "//" not in page.text.replace("<!--", "")  # no scheme-relative or absolute URL
    assert "googleapis" not in page.text and "jsdelivr" not in page.text


def test_swagger_ui_fetches_no_validator_badge(client: TestClient) -> None:
    # Swagger UI otherwise asks validator.swagger.io for a badge about the schema.
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_openapi_schema_still_lists_the_api_and_not_the_doc_pages(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/experiments" in paths
    assert "/docs" not in paths and "/redoc" not in paths


def test_vendored_files_carry_their_licences_and_versions() -> None:
    for folder, files, version in (
        ("swagger-ui", ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"), "5.35.0"),
        ("redoc", ("redoc.standalone.js", "LICENSE"), "2.5.4"),
    ):
        for name in (*files, "VERSION.md"):
            assert (VENDOR / folder / name).is_file(), f"{folder}/{name} is missing"
        assert version in (VENDOR / folder / "VERSION.md").read_text()
        assert version in (VENDOR / "README.md").read_text()
    assert "Apache License" in (VENDOR / "swagger-ui" / "LICENSE").read_text()
    assert "MIT License" in (VENDOR / "redoc" / "LICENSE").read_text()


def test_a_real_server_serves_the_api_pages(tmp_path: Path) -> None:
    server = LiveServer(tmp_path)
    try:
        for path in ("/docs", "/redoc"):
            page = server.request("GET", path)
            assert page.status == 200 and "//" not in page.text.replace("<!--", "")
            for _, url in references(page.text).urls:
                assert server.request("GET", url).status == 200, url
    finally:
        server.stop()
