"""What the real-browser tests share: Debian's Chromium, and a page that must stay on loopback.

The fixtures that start them are in conftest.py beside this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK = "127.0.0.1"
UI_TIMEOUT_MS = 30_000  # a guard against hanging, not a performance assertion


@dataclass
class Offline:
    """A fresh browser profile whose requests are recorded; none may leave loopback."""

    context: BrowserContext
    page: Page
    blocked: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_stayed_on_loopback(self, expected_error: str | None = None) -> None:
        """Nothing left loopback, and nothing failed on the page (a CSP violation would)."""
        assert self.blocked == [], f"the page asked for things outside the gateway: {self.blocked}"
        away = [u for u in self.requested + self.sockets if urlsplit(u).hostname != LOOPBACK]
        assert away == [], away
        errors = [e for e in self.errors if expected_error is None or expected_error not in e]
        assert errors == [], errors

    def watch(self, page: Page) -> Page:
        """Record what ``page`` (a tab of this profile) asks for and what fails on it."""
        page.on("request", lambda request: self.requested.append(request.url))
        page.on("websocket", lambda socket: self.sockets.append(socket.url))
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )
        return page

    def new_tab(self) -> Page:
        return self.watch(self.context.new_page())

    def storage(self) -> dict[str, str]:
        stored: dict[str, str] = self.page.evaluate("() => Object.assign({}, localStorage)")
        return stored
