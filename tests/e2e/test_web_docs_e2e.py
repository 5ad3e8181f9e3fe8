"""``/docs`` and ``/redoc`` render in a real browser with every request to anything but this
server aborted: their scripts, styles, fonts and icons all come from the package."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

    from tests.e2e.conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def test_api_docs_render_offline(browser: Browser, server: Server) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    outside: list[str] = []
    errors: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:  # what an offline machine could not reach
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # What the pages' Content-Security-Policy refused to load: only ReDoc's logo from
        # cdn.redoc.ly may be (its side menu always asks for it; the policy keeps it out).
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and "cdn.redoc.ly/redoc/logo-mini.svg" not in m.text
                else None
            ),
        )
        page.goto("/docs")
        operations = page.locator(".opblock")
        operations.first.wait_for()
        assert operations.count() >= 5
        expect(page.locator(".info .title")).to_contain_text("GreenRunner")
        expect(page.locator("#swagger-ui")).to_contain_text("/api/experiments")

        page.goto("/redoc")
        expect(page.locator("h1").first).to_contain_text("GreenRunner")
        sections = page.locator("[data-section-id^='operation/']")
        sections.first.wait_for()
        assert sections.count() >= 5
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert not outside, f"the API pages tried to reach outside servers: {outside}"
    assert not errors, f"JavaScript or policy errors: {errors}"
