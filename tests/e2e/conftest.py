"""Browser tests: the real server (``greenrunner serve``) driven by Debian's headless Chromium.

The server runs in a subprocess with its own data folder and cache, exactly as a user starts
it; Playwright drives ``/usr/bin/chromium`` (installed by ``scripts/setup.sh dev``), never a
browser Playwright downloads. A browser that cannot start fails the tests: CI installs it,
so a skip would hide a broken set-up. Screenshots of every screen go to
``test-artifacts/screenshots/``; the server's log to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Response

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-background-networking",  # the tests must not reach out
]
SERVER_START_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _worker() -> str:
    # Under pytest-xdist each worker has its own server and browser; keep their files apart.
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@dataclass
class Server:
    url: str
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"the server exited with status {server.process.returncode} before answering; "
                f"its log:\n{server.tail()}"
            )
        try:
            with urllib.request.urlopen(server.url + "/", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer within {SERVER_START_S:g} s; its log:\n{server.tail()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m greenrunner.cli serve`` on a free loopback port with a fresh data folder."""
    root = tmp_path_factory.mktemp("e2e-server")
    port = _free_port()
    log = root / "server.log"
    env = {
        **os.environ,
        "GREENRUNNER_CACHE": str(root / "cache"),  # never the user's cache
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GREENRUNNER_TOKEN", None)  # a token in the environment would lock the pages
    command = [
        sys.executable,
        "-m",
        "greenrunner.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(root / "data"),
        # A long lease: tests write "running" rows without a lease (_force), which the
        # heartbeat's reaping (every lease/5) would otherwise mark interrupted mid-test.
        "--lease-seconds",
        "3600",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    running = Server(f"http://127.0.0.1:{port}", root / "data", log, process)
    try:
        _wait_until_up(running)
        yield running
    finally:
        process.terminate()  # SIGTERM: uvicorn shuts down gracefully
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, ARTIFACTS / f"e2e-server-{_worker()}.log")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless. Fails (never skips) when it cannot be launched."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.fail(
            "the browser tests need Playwright: pip install -e '.[dev]' (scripts/setup.sh dev)"
        )
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: run scripts/setup.sh dev, or "
            "apt-get install -y --no-install-recommends chromium"
        )
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
        except Error as exc:
            pytest.fail(f"Chromium at {CHROMIUM} could not be launched: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Screens:
    """Saves numbered screenshots of one test: ``<test>-<n>-<name>.png``."""

    page: Page
    prefix: str
    count: int = 0

    def __call__(self, name: str) -> Path:
        self.count += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.prefix}-{self.count}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A fresh browser context per test; any JavaScript error on any page fails the test."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))

    def console(message: ConsoleMessage) -> None:
        # Chromium logs every 4xx as "Failed to load resource", including the set-up page
        # answering a bad upload with 400 on purpose; failed assets are caught below.
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(f"console: {message.text} at {message.location.get('url', '?')}")

    def response(answer: Response) -> None:
        if "/static/" in answer.url and answer.status >= 400:
            errors.append(f"asset {answer.url} answered {answer.status}")

    opened.on("console", console)
    opened.on("response", response)
    try:
        yield opened
    finally:
        context.close()
    assert not errors, "JavaScript errors in the pages:\n" + "\n".join(errors)


@pytest.fixture
def shot(page: Page, request: pytest.FixtureRequest) -> Screens:
    name = request.node.name.removeprefix("test_").replace("[", "-").rstrip("]")
    return Screens(page, name)
