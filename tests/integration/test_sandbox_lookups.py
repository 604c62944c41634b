"""The sandbox answers lookups in the vendors' own shapes: the official SDKs read them.

Twilio's Python SDK (``twilio``) creates, fetches and lists messages on a sandbox served on
loopback, and reads Twilio's error for an unknown message (HTTP 404, code 20404) as it would
read Twilio's. SendGrid's Email Activity answers are checked against the documented fields.
The SDK is synchronous (requests): its calls run in a thread while the server runs here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from gateway.settings import Settings
from harness.asgi import run_uvicorn
from harness.http import loopback_client
from providers.sandbox_app import Sandbox, SandboxConfig, create_sandbox_app

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "sdk-auth-token"
API_KEY = "SG.sdk-key"
SENDER = "+15005550006"
T = TypeVar("T")


@dataclass
class Served:
    url: str
    sandbox: Sandbox
    twilio: Client
    http: httpx.AsyncClient

    async def call(self, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[Served]:
    settings = Settings(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        sendgrid_api_key=API_KEY,
        sandbox_callback_delay=0.05,
        # Nobody listens there: the messages move along, the callbacks fail quietly.
        sandbox_event_webhook_url="http://127.0.0.1:9/events",
    )
    app = create_sandbox_app(SandboxConfig.from_settings(settings))
    sandbox: Sandbox = app.state.sandbox
    sandbox.config.lose_callbacks = True
    async with run_uvicorn(app) as url, loopback_client() as http:
        http_client = TwilioHttpClient()
        assert http_client.session is not None
        http_client.session.trust_env = False  # loopback only, whatever the environment says
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client)
        client.api.base_url = url
        try:
            yield Served(url, sandbox, client, http)
        finally:
            http_client.session.close()


async def test_the_twilio_sdk_fetches_a_message_as_it_moves_along(served: Served) -> None:
    client = served.twilio
    created = await served.call(
        lambda: client.messages.create(to="+14155550101", from_=SENDER, body="Hello")
    )
    assert created.sid is not None and created.sid.startswith("SM")
    assert created.status == "queued"
    await served.sandbox.drain()

    fetched = await served.call(lambda: client.messages(created.sid).fetch())
    assert fetched.sid == created.sid
    assert fetched.status == "delivered"
    assert fetched.to == "+14155550101" and fetched.from_ == SENDER
    assert fetched.body == "Hello"
    assert fetched.account_sid == ACCOUNT_SID
    assert isinstance(fetched.date_sent, datetime)
    assert fetched.error_code is None
    assert fetched.num_segments == "1"


async def test_the_twilio_sdk_reads_an_undelivered_message_and_its_error(served: Served) -> None:
    served.sandbox.config.undeliverable_recipients = {"+14155550102"}
    try:
        created = await served.call(
            lambda: served.twilio.messages.create(to="+14155550102", from_=SENDER, body="Hi")
        )
        await served.sandbox.drain()
    finally:
        served.sandbox.config.undeliverable_recipients = set()
    fetched = await served.call(lambda: served.twilio.messages(created.sid).fetch())
    assert fetched.status == "undelivered"
    assert fetched.error_code == 30003
    assert fetched.error_message


async def test_the_twilio_sdk_reads_the_error_for_an_unknown_message(served: Served) -> None:
    missing = "SM" + "0" * 32
    with pytest.raises(TwilioRestException) as caught:
        await served.call(lambda: served.twilio.messages(missing).fetch())
    error = caught.value
    assert error.status == 404
    assert error.code == 20404
    assert f"/Messages/{missing}.json was not found" in error.msg

    # The body itself, as Twilio documents its REST errors.
    response = await served.http.get(
        f"{served.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{missing}.json",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
    )
    assert response.status_code == 404
    assert response.json() == {
        "code": 20404,
        "message": f"The requested resource /2010-04-01/Accounts/{ACCOUNT_SID}/Messages/"
        f"{missing}.json was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }


async def test_the_twilio_sdk_refuses_wrong_credentials_like_twilio(served: Served) -> None:
    intruder = Client(ACCOUNT_SID, "not-the-token", http_client=served.twilio.http_client)
    intruder.api.base_url = served.url
    with pytest.raises(TwilioRestException) as caught:
        await served.call(lambda: intruder.messages("SM" + "1" * 32).fetch())
    assert (caught.value.status, caught.value.code) == (401, 20003)


async def test_the_twilio_sdk_lists_messages_page_by_page(served: Served) -> None:
    recipient = "+14155550103"
    sids = []
    for n in range(3):
        created = await served.call(
            lambda n=n: served.twilio.messages.create(
                to=recipient, from_=SENDER, body=f"Listed {n}"
            )
        )
        sids.append(created.sid)
    # Two per page: the SDK follows next_page_uri to the second page.
    listed = await served.call(lambda: served.twilio.messages.list(to=recipient, page_size=2))
    assert [m.sid for m in listed] == list(reversed(sids))  # newest first, as Twilio lists
    assert {m.to for m in listed} == {recipient}
    page = await served.call(lambda: served.twilio.messages.page(to=recipient, page_size=2))
    assert len(list(page)) == 2
    assert page.next_page_url is not None


async def test_sendgrid_email_activity_answers_in_its_documented_shape(served: Served) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    sent = await served.http.post(
        f"{served.url}/v3/mail/send",
        headers=auth,
        json={
            "personalizations": [{"to": [{"email": "reader@example.com"}]}],
            "from": {"email": "news@example.com"},
            "subject": "Activity",
            "content": [{"type": "text/plain", "value": "Hello"}],
        },
    )
    assert sent.status_code == 202, sent.text
    x_message_id = sent.headers["X-Message-Id"]
    await served.sandbox.drain()

    listed = await served.http.get(
        f"{served.url}/v3/messages",
        headers=auth,
        params={"query": f"msg_id LIKE '{x_message_id}%'", "limit": "10"},
    )
    assert listed.status_code == 200, listed.text
    [summary] = listed.json()["messages"]
    assert set(summary) == {
        "from_email",
        "msg_id",
        "subject",
        "to_email",
        "status",
        "opens_count",
        "clicks_count",
        "last_event_time",
    }
    assert summary["msg_id"].startswith(f"{x_message_id}.")
    assert (summary["status"], summary["to_email"]) == ("delivered", "reader@example.com")

    one = await served.http.get(f"{served.url}/v3/messages/{summary['msg_id']}", headers=auth)
    assert one.status_code == 200
    detail: dict[str, Any] = one.json()
    assert detail["msg_id"] == summary["msg_id"]
    assert [e["event_name"] for e in detail["events"]] == ["processed", "delivered"]
    assert {"from_email", "subject", "to_email", "status", "originating_ip"} <= set(detail)

    missing = await served.http.get(f"{served.url}/v3/messages/nope", headers=auth)
    assert missing.status_code == 404
    assert missing.json() == {"errors": [{"message": "not found", "field": "message_id"}]}
    bad = await served.http.get(
        f"{served.url}/v3/messages", headers=auth, params={"query": "bad_field='x'"}
    )
    assert bad.status_code == 400
    assert "not a known field" in bad.json()["errors"][0]["message"]
    refused = await served.http.get(f"{served.url}/v3/messages/nope")
    assert refused.status_code == 401
