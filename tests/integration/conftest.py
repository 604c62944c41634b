"""Fixtures of the real-browser tests: headless Debian Chromium with no way off loopback."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Playwright, Route, sync_playwright

from harness.servers import free_port
from tests.integration.browser import CHROMIUM, LOOPBACK, Offline


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--no-sandbox",  # the tests run as root
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            # No internet route: names other than loopback's do not resolve, and whatever
            # is not on loopback goes to a proxy that nothing listens on.
            f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {LOOPBACK}",
            f"--proxy-server=http://{LOOPBACK}:{free_port()}",
        ],
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def offline(browser: Browser) -> Iterator[Offline]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    state = Offline(context, page)

    def guard(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == LOOPBACK:
            route.continue_()
        else:
            state.blocked.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", guard)
    state.watch(page)
    try:
        yield state
    finally:
        context.close()
