"""The console in a real browser, against a real embedded gateway, with no way off loopback.

Headless Debian Chromium (see conftest.py) opens /console on ``messaging-gateway serve``: the
page connects with the pre-filled development key, sends through its compose form and watches
the thread tick to DELIVERED; a signed Twilio inbound (signed with the official ``twilio``
library) raises an unread badge that search then finds; a dead letter is retried from the page.
The page's segment preview is checked against the gateway's own count. Two tabs on the same
key stay in step: a read mark in one clears the unread badge in the other.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Locator, Page
from playwright.sync_api import expect as pw_expect
from twilio.request_validator import RequestValidator

from gateway.domain.segments import count_segments
from gateway.settings import Settings
from gateway.web.console import PAGE_HEADERS
from harness.processes import Served, serving
from tests.integration.browser import UI_TIMEOUT_MS, Offline
from tests.integration.test_cli import cli_env, dev_key_of
from tests.integration.test_webhooks import inbound_params

ROOT = Path(__file__).resolve().parents[2]
INBOUND = "/webhooks/twilio/messages"
OUR_NUMBER = "+14155550100"
#: Numbers of this module's own gateway and sandbox: no other test sends to them.
CUSTOMER = "+14155550731"
WRITER = "+14155550732"
REFUSED = "+14155550733"
TWO_TABS = "+14155550734"


@dataclass
class Console:
    server: Served
    key: str

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.server.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )
        answer: dict[str, Any] = response.json()
        assert response.status_code == 200 and "errors" not in answer, answer
        data: dict[str, Any] = answer["data"]
        return data

    def unread(self, participant: str) -> list[int]:
        found = self.graphql(
            """query($p: String) {
              conversations(participant: $p) { edges { node { unreadCount } } }
            }""",
            {"p": participant},
        )
        return [e["node"]["unreadCount"] for e in found["conversations"]["edges"]]

    def inbound(self, sender: str, body: str) -> None:
        """A signed Twilio inbound SMS, as Twilio posts it."""
        params = inbound_params(sender, OUR_NUMBER, body)
        signature = RequestValidator(Settings().twilio_auth_token).compute_signature(
            self.server.url + INBOUND, params
        )
        response = httpx.post(
            self.server.url + INBOUND,
            content=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def sandbox(self, **config: object) -> None:
        response = httpx.post(f"{self.server.url}/sandbox/control/config", json=config, timeout=30)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    base = tmp_path_factory.mktemp("console-serve")
    env = cli_env(base / "data", SANDBOX_INVALID_RECIPIENTS=REFUSED)
    with serving(env, base, "serve") as server:
        yield Console(server, dev_key_of(server))


def open_console(offline: Offline, console: Console, page: Page | None = None) -> Page:
    page = page or offline.page
    page.goto(f"{console.server.url}/console", wait_until="load")
    assert offline.blocked == [], offline.blocked
    pw_expect(page.locator("#connection")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    return page


def conversation_of(page: Page, participant: str) -> Locator:
    return page.locator("#conversations .conversation").filter(has_text=participant)


def send_from_the_page(page: Page, to: str, body: str) -> str:
    """Compose and send an SMS; the id of the message the page says was accepted."""
    result = page.locator("#compose-result")
    before = result.inner_text()
    page.locator("#to").fill(to)
    page.locator("#body").fill(body)
    page.get_by_role("button", name="Send").click()
    pw_expect(result).not_to_have_text(before, timeout=UI_TIMEOUT_MS)
    pw_expect(result).to_contain_text("Accepted msg_")
    return result.inner_text().split()[-1]


def test_compose_inbound_search_and_retry_live(
    console: Console, offline: Offline, tmp_path: Path
) -> None:
    page = open_console(offline, console)
    # The development key, on loopback, is in the key field, and kept nowhere else.
    assert page.locator("#api-key").input_value() == console.key

    # Compose: the message appears in its thread and ticks to DELIVERED without a reload.
    message_id = send_from_the_page(page, WRITER, "Your parcel leaves today")
    status = page.locator(f'#thread .message[data-id="{message_id}"] .status')
    pw_expect(status).to_have_attribute("data-status", "DELIVERED", timeout=UI_TIMEOUT_MS)
    pw_expect(status).to_contain_text("\u2713\u2713 DELIVERED")
    loads = [u for u in offline.requested if u.endswith("/console")]
    assert loads == [f"{console.server.url}/console"], loads

    # A signed inbound in another conversation: its unread badge appears, live.
    words = f"zebra{secrets.token_hex(3)}"
    console.inbound(CUSTOMER, f"Where is my {words} order?")
    customer = conversation_of(page, CUSTOMER)
    pw_expect(customer.locator(".badge")).to_have_text("1", timeout=UI_TIMEOUT_MS)

    # Search by its words finds that conversation alone, with the matching message.
    page.locator("#search").fill(words)
    pw_expect(page.locator("#conversations .conversation")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    pw_expect(customer.locator(".match")).to_contain_text(f"Where is my {words} order?")

    # Opening it marks it read: the badge goes, on the page and in the API.
    customer.click()
    pw_expect(page.locator("#thread .message.inbound .status")).to_have_attribute(
        "data-status", "RECEIVED", timeout=UI_TIMEOUT_MS
    )
    pw_expect(customer.locator(".badge")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    assert console.unread(CUSTOMER) == [0]
    page.locator("#search").fill("")

    # A message the sandbox refuses for good becomes a dead letter, shown with its reason.
    refused_id = send_from_the_page(page, REFUSED, "This one is refused")
    dead = page.locator(f'#dead-letters .dead-letter[data-id="{refused_id}"]')
    pw_expect(dead.locator(".reason")).not_to_be_empty(timeout=UI_TIMEOUT_MS)
    refused_status = page.locator(f'#thread .message[data-id="{refused_id}"] .status')
    pw_expect(refused_status).to_have_attribute("data-status", "FAILED", timeout=UI_TIMEOUT_MS)
    pw_expect(refused_status).to_contain_text("\u2717 FAILED \u2014 ")

    # A later inbound in the read conversation is unread again; a draft shows its segments.
    console.inbound(CUSTOMER, "Found it, thanks!")
    pw_expect(customer.locator(".badge")).to_have_text("1", timeout=UI_TIMEOUT_MS)
    page.locator("#body").fill("Sorry for the wait — your refund of €20 is on its way")
    pw_expect(page.locator("#segments")).to_have_attribute("data-encoding", "UCS2")
    shot = tmp_path / "console.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    docs = ROOT / "docs" / "console.png"
    if not docs.exists():  # once, for the README; the test's own copy is in tmp_path
        docs.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, docs)

    # The recipient becomes valid; Retry sends it again and it leaves the dead letters.
    console.sandbox(invalid_recipients=[])
    dead.get_by_role("button", name="Retry").click()
    pw_expect(dead).to_have_count(0, timeout=UI_TIMEOUT_MS)
    pw_expect(refused_status).to_have_attribute("data-status", "DELIVERED", timeout=UI_TIMEOUT_MS)
    retried = console.graphql(
        "query($id: ID!) { message(id: $id) { status attempts } }", {"id": refused_id}
    )
    assert retried["message"]["status"] == "DELIVERED" and retried["message"]["attempts"] >= 2

    offline.assert_stayed_on_loopback()
    assert offline.storage() == {}, "the key is never kept in the browser's storage"


def test_a_read_mark_in_one_tab_clears_the_badge_in_the_other(
    console: Console, offline: Offline
) -> None:
    first = open_console(offline, console)
    second = open_console(offline, console, offline.new_tab())

    # An inbound message raises the badge in both tabs, live.
    console.inbound(TWO_TABS, "Are you there?")
    badges = [conversation_of(tab, TWO_TABS).locator(".badge") for tab in (first, second)]
    for badge in badges:
        pw_expect(badge).to_have_text("1", timeout=UI_TIMEOUT_MS)

    # Reading it in the first tab clears the second's badge: a read mark is no message event,
    # only the inbox subscription tells the second tab of it.
    conversation_of(first, TWO_TABS).click()
    for badge in badges:
        pw_expect(badge).to_have_count(0, timeout=UI_TIMEOUT_MS)
    assert console.unread(TWO_TABS) == [0]
    loads = [u for u in offline.requested if u.endswith("/console")]
    assert len(loads) == 2, f"each tab loaded the page once: {loads}"
    offline.assert_stayed_on_loopback()


SEGMENT_CASES = [
    "",
    "hello",
    "a" * 160,
    "a" * 161,
    "a" * 306,
    "a" * 307,
    "\u20ac" * 80,  # extension characters take two septets
    "\u20ac" * 81,
    "a" * 152 + "\u20ac" + "a" * 10,  # an escape pair is never cut: it moves on
    "caf\u00e9 \u00c7a",  # in the alphabet
    "\u00e7a",  # lower-case c cedilla is not
    "\u0416" * 70,
    "\u0416" * 71,
    "\U0001f600" * 35,  # astral characters take two UTF-16 units
    "\U0001f600" * 36,
    "a" * 66 + "\U0001f600" + "a" * 10,  # a surrogate pair is never cut
    "line\x1bbreak",  # a literal escape is not text a sender can put in GSM-7
]


@pytest.mark.parametrize("body", SEGMENT_CASES, ids=range(len(SEGMENT_CASES)))
def test_the_segment_preview_counts_as_the_gateway_does(
    console: Console, offline: Offline, body: str
) -> None:
    page = open_console(offline, console)
    page.locator("#body").fill(body)
    expected = count_segments(body)
    preview = page.locator("#segments")
    pw_expect(preview).to_have_attribute("data-segments", str(expected.segments))
    pw_expect(preview).to_have_attribute("data-encoding", expected.encoding)
    pw_expect(preview).to_contain_text(f"{expected.units} units")
    offline.assert_stayed_on_loopback()


def test_only_a_client_on_this_machine_gets_the_development_key(console: Console) -> None:
    url = f"{console.server.url}/console"
    local = httpx.get(url, timeout=30)
    # A Host that is not loopback's (a DNS rebinding page, a proxy): an empty key field.
    remote = httpx.get(url, headers={"Host": "console.example.com"}, timeout=30)
    for response in (local, remote):
        assert response.status_code == 200
        assert {k: response.headers[k] for k in PAGE_HEADERS} == PAGE_HEADERS
    assert console.key in local.text
    assert console.key not in remote.text and '{"apiKey": null}' in remote.text


def test_compose_shows_the_fields_of_each_channel(console: Console, offline: Offline) -> None:
    page = open_console(offline, console)
    channel = page.locator("#channel")
    channel.select_option("MMS")
    pw_expect(page.locator("#media")).to_be_visible()
    pw_expect(page.locator("#subject")).to_be_hidden()
    channel.select_option("EMAIL")
    pw_expect(page.locator("#subject")).to_be_visible()
    pw_expect(page.locator("#media")).to_be_hidden()
    pw_expect(page.locator("#segments")).to_have_text("")
    # An e-mail with a subject: the thread shows it, as text.
    page.locator("#from").fill("support@example.com")
    page.locator("#to").fill("reader@example.com")
    page.locator("#subject").fill("<b>Your invoice</b>")
    page.locator("#body").fill("<img src=x onerror=alert(1)> attached")
    page.get_by_role("button", name="Send").click()
    message = page.locator("#thread .message").last
    pw_expect(message.locator(".subject")).to_have_text(
        "<b>Your invoice</b>", timeout=UI_TIMEOUT_MS
    )
    pw_expect(message.locator(".body")).to_have_text("<img src=x onerror=alert(1)> attached")
    assert page.locator("#thread img, #thread b").count() == 0
    offline.assert_stayed_on_loopback()
