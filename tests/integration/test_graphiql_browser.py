"""GraphiQL in a real browser, on a host without internet.

Headless Chromium (Debian's package, driven by Playwright; scripts/test.sh installs it) opens
/graphql on a real embedded ``messaging-gateway serve`` on loopback. The browser has no way
out: every request to a host other than 127.0.0.1 is aborted and recorded, host names do not
resolve, and anything that would still leave goes to a proxy that is not there. The page must
load from the gateway alone, run the pre-filled ``Send`` mutation through the UI, and show the
``Watch`` subscription reach ``DELIVERED``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, Route
from playwright.sync_api import expect as pw_expect

from gateway.web.graphiql import PAGE_HEADERS, graphiql_html
from harness.processes import Served, serving
from tests.integration.browser import UI_TIMEOUT_MS, Offline
from tests.integration.test_cli import cli_env, dev_key_of

MESSAGE_ID = re.compile(r"msg_[0-9a-f]+")


@dataclass
class Gateway:
    server: Served
    key: str

    @property
    def graphql_url(self) -> str:
        return f"{self.server.url}/graphql"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    base = tmp_path_factory.mktemp("graphiql-serve")
    with serving(cli_env(base / "data"), base, "serve") as server:
        yield Gateway(server, dev_key_of(server))


def open_graphiql(offline: Offline, url: str) -> None:
    offline.page.goto(url, wait_until="load")
    # Before anything else: a page that needs the internet asked for it while loading.
    assert offline.blocked == [], (
        f"the page asked for things outside the gateway: {offline.blocked}"
    )
    pw_expect(offline.page.locator(".graphiql-execute-button")).to_be_visible(timeout=UI_TIMEOUT_MS)


def run_operation(page: Page, name: str) -> None:
    """Press the run button and pick the operation, as a person does with two in the editor."""
    page.locator(".graphiql-execute-button").click()
    page.get_by_role("menuitem", name=name, exact=True).click()


def response_text(page: Page) -> str:
    """What the result pane shows (its editor's text, without gutters and markers)."""
    text: str = page.locator(".graphiql-response .CodeMirror").evaluate(
        "element => element.CodeMirror.getValue()"
    )
    return text


def send_through_the_ui(page: Page) -> str:
    run_operation(page, "Send")
    response = page.locator(".graphiql-response")
    pw_expect(response).to_contain_text('"MessageAccepted"', timeout=UI_TIMEOUT_MS)
    found = MESSAGE_ID.search(response_text(page))
    assert found is not None, response_text(page)
    return found.group(0)


def test_prefilled_send_then_watch_shows_delivered_without_internet(
    gateway: Gateway, offline: Offline
) -> None:
    page = offline.page
    open_graphiql(offline, gateway.graphql_url)
    pw_expect(page.locator(".graphiql-editor-tool")).to_contain_text(
        f"Bearer {gateway.key}", timeout=UI_TIMEOUT_MS
    )

    message_id = send_through_the_ui(page)

    run_operation(page, "Watch")
    response = page.locator(".graphiql-response")
    pw_expect(response).to_contain_text('"DELIVERED"', timeout=UI_TIMEOUT_MS)
    pw_expect(response).to_contain_text(message_id)
    latest = json.loads(response_text(page))["data"]["messageEvents"]
    assert latest["messageId"] == message_id and latest["status"] == "DELIVERED", latest

    assert offline.sockets == [gateway.graphql_url.replace("http://", "ws://")], offline.sockets
    offline.assert_stayed_on_loopback()
    # The development key, on loopback, is kept with the editor's headers.
    assert any(gateway.key in value for value in offline.storage().values()), offline.storage()


def test_without_the_development_key_no_header_is_kept_in_storage(
    gateway: Gateway, offline: Offline
) -> None:
    """The page anyone but a loopback client of the embedded mode gets: an empty header
    editor, and whatever key is typed there stays out of the browser's storage."""
    page = offline.page

    def keyless_page(route: Route) -> None:
        if not route.request.is_navigation_request():
            route.fallback()
            return
        route.fulfill(
            status=200,
            content_type="text/html; charset=utf-8",
            headers=PAGE_HEADERS,
            body=graphiql_html(None),
        )

    # Only the page is swapped; its scripts, styles and the API are the real gateway's.
    page.route(gateway.graphql_url, keyless_page)
    open_graphiql(offline, gateway.graphql_url)
    page.get_by_role("button", name="Headers", exact=True).click()
    headers = page.locator(".graphiql-editor-tool .CodeMirror").filter(visible=True)
    pw_expect(headers).to_have_count(1, timeout=UI_TIMEOUT_MS)
    assert "Bearer" not in headers.inner_text()

    headers.click()
    page.keyboard.insert_text(json.dumps({"Authorization": f"Bearer {gateway.key}"}))
    send_through_the_ui(page)

    page.reload(wait_until="load")
    pw_expect(page.locator(".graphiql-execute-button")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_role("button", name="Headers", exact=True).click()
    assert "Bearer" not in headers.inner_text()
    stored = offline.storage()
    assert stored, "GraphiQL keeps its tabs in storage"
    assert not any(gateway.key in value for value in stored.values()), json.dumps(stored, indent=1)
    # The schema's introspection before a key was typed was refused.
    offline.assert_stayed_on_loopback(expected_error="status of 401 (Unauthorized)")
