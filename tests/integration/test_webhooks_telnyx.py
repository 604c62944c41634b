"""Telnyx webhooks over real HTTP, on PostgreSQL and SQLite: status events through the same
forward-only status path as every vendor's, inbound SMS/MMS, and the Ed25519 signature check.

The module's gateway sends SMS and MMS through Telnyx (the mounted sandbox standing in for it),
whose signing key the tests know, so they sign the events themselves; its sandbox waits an hour
before calling back, so nothing but the test reports on a message, except in the end-to-end
test, which shortens Telnyx's delay alone through the sandbox's per-vendor configuration.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from harness.http import loopback_client
from providers.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    generate_telnyx_keypair,
    telnyx_sign,
)
from tests.conftest import GatewayParts, backend_settings, serve
from tests.integration.test_webhooks import (
    POLL_ATTEMPTS,
    POLL_DELAY,
    Tenant,
    conversation_with,
    fetch,
    is_sent,
    kinds,
    live_events,
    messages_of,
    new_number,
    new_tenant,
    next_event,
    raw_id,
    send,
    unchanged,
    wait_for,
)

PATH = "/webhooks/telnyx"


@dataclass
class TelnyxHooks:
    base_url: str
    container: GatewayParts
    http: httpx.AsyncClient
    #: The key the gateway's sandbox signs with, and so the tests too.
    private_key: str

    async def tenant(self) -> Tenant:
        return await new_tenant(self.base_url, self.container, self.http)

    async def own(self, tenant: Tenant, number: str) -> None:
        owner = await self.container.webhook_repo.add_address(
            tenant.account_id, number, datetime.now(UTC)
        )
        assert owner == tenant.account_id


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def hooks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TelnyxHooks]:
    _, settings = backend_settings(request, tmp_path_factory, "telnyx-hooks")
    private_key, public_key = generate_telnyx_keypair()
    settings.sms_providers = settings.mms_providers = "telnyx"
    settings.sandbox_telnyx_signing_key = private_key
    # The sandbox must not report on our messages: the tests are the provider here.
    settings.sandbox_callback_delay = 3600.0
    async with (
        serve(settings) as (base_url, container),
        loopback_client(timeout=30) as http,
    ):
        # Embedded mode: the gateway verifies with the key of the sandbox standing in.
        assert settings.telnyx_public_key is None
        assert container.telnyx_public_key == public_key
        yield TelnyxHooks(base_url, container, http, private_key)


# --- events as Telnyx sends them ------------------------------------------------------------


def outbound_event(
    message: dict[str, Any], event_type: str, status: str, *, errors: list[Any] | None = None
) -> dict[str, Any]:
    """A ``message.sent`` / ``message.finalized`` event for a message we sent through Telnyx,
    its record carrying the webhook URL our adapter gave (with our id as ``mid``)."""
    return {
        "data": {
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": "2026-12-03T04:00:00.000+00:00",
            "payload": {
                "record_type": "message",
                "direction": "outbound",
                "id": message["providerMessageId"],
                "type": "SMS",
                "from": {"phone_number": message["from"], "carrier": "Telnyx"},
                "to": [{"phone_number": message["to"], "status": status}],
                "text": message["body"],
                "media": [],
                "webhook_url": f"http://gateway.example/webhooks/telnyx?mid={raw_id(message['id'])}",
                "errors": errors or [],
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "http://gateway.example/webhooks/telnyx"},
    }


def received_event(sender: str, to: str, text: str, media: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "data": {
            "event_type": "message.received",
            "id": str(uuid.uuid4()),
            "occurred_at": "2026-12-03T04:00:00.000+00:00",
            "payload": {
                "record_type": "message",
                "direction": "inbound",
                "id": str(uuid.uuid4()),
                "type": "MMS" if media else "SMS",
                "from": {"phone_number": sender, "carrier": "T-Mobile", "line_type": "Wireless"},
                "to": [{"phone_number": to, "status": "webhook_delivered"}],
                "text": text,
                "media": [
                    {"url": url, "content_type": "image/jpeg", "sha256": None, "size": 1024}
                    for url in media
                ],
                "errors": [],
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "http://gateway.example/webhooks/telnyx"},
    }


def signed(hooks: TelnyxHooks, body: bytes, *, age: float = 0.0) -> dict[str, str]:
    timestamp = str(int(time.time() - age))
    return {
        TELNYX_TIMESTAMP_HEADER: timestamp,
        TELNYX_SIGNATURE_HEADER: telnyx_sign(hooks.private_key, timestamp, body),
    }


async def post(
    hooks: TelnyxHooks, event: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST ``event`` as Telnyx does, signed now unless ``headers`` is given (then exactly
    those headers are sent)."""
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    return await hooks.http.post(
        hooks.base_url + PATH,
        content=body,
        headers={
            "Content-Type": "application/json",
            **(signed(hooks, body) if headers is None else headers),
        },
    )


async def sent_sms(hooks: TelnyxHooks, tenant: Tenant) -> dict[str, Any]:
    message_id = await send(
        tenant,
        {
            "channel": "SMS",
            "from": new_number(),
            "to": new_number(),
            "body": "telnyx webhook test " + uuid.uuid4().hex[:6],
        },
    )
    message = await wait_for(tenant, message_id, is_sent, "SENT with a provider id")
    assert message["provider"] == "telnyx"
    assert uuid.UUID(message["providerMessageId"])
    return message


# --- signatures -----------------------------------------------------------------------------


async def test_missing_wrong_and_stale_signatures_are_refused_without_change(
    hooks: TelnyxHooks,
) -> None:
    tenant = await hooks.tenant()
    message = await sent_sms(hooks, tenant)
    body = orjson.dumps(outbound_event(message, "message.finalized", "delivered"))

    missing = await post(hooks, body, headers={})
    assert missing.status_code == 401, missing.text
    assert "missing Telnyx signature" in missing.json()["error"]
    no_timestamp = {TELNYX_SIGNATURE_HEADER: signed(hooks, body)[TELNYX_SIGNATURE_HEADER]}
    assert (await post(hooks, body, headers=no_timestamp)).status_code == 401

    stranger, _ = generate_telnyx_keypair()
    timestamp = str(int(time.time()))
    forged = {
        TELNYX_TIMESTAMP_HEADER: timestamp,
        TELNYX_SIGNATURE_HEADER: telnyx_sign(stranger, timestamp, body),
    }
    assert (await post(hooks, body, headers=forged)).status_code == 403
    # The right key over another body: the payload was tampered with.
    other = orjson.dumps(outbound_event(message, "message.finalized", "delivery_failed"))
    assert (await post(hooks, body, headers=signed(hooks, other))).status_code == 403
    # Genuine but ten minutes old: a replay.
    stale = await post(hooks, body, headers=signed(hooks, body, age=600))
    assert stale.status_code == 403, stale.text
    garbled = {TELNYX_TIMESTAMP_HEADER: timestamp, TELNYX_SIGNATURE_HEADER: "not base64!"}
    assert (await post(hooks, body, headers=garbled)).status_code == 403

    await unchanged(tenant, message)

    # The refused deliveries did not use up the report: the genuine one still applies.
    genuine = await post(hooks, body)
    assert genuine.status_code == 200, genuine.text
    assert (await fetch(tenant, message["id"]))["status"] == "DELIVERED"


# --- status reports -------------------------------------------------------------------------


async def test_finalized_delivered_applies_once_and_never_moves_backwards(
    hooks: TelnyxHooks,
) -> None:
    tenant = await hooks.tenant()
    message = await sent_sms(hooks, tenant)
    delivered = outbound_event(message, "message.finalized", "delivered")
    async with live_events(tenant, message) as events:
        first = await post(hooks, delivered)
        assert first.status_code == 200, first.text
        done = await fetch(tenant, message["id"])
        assert done["status"] == "DELIVERED"
        assert done["error"] is None
        published = await next_event(events)
        assert (published["kind"], published["status"]) == ("delivery_receipt", "DELIVERED")
        assert published["detail"]["providerStatus"] == "delivered"
        assert published["detail"]["providerEvent"] == "message.finalized"

        # Telnyx delivers it again, and the earlier "sent" arrives late: neither changes it.
        assert (await post(hooks, delivered)).status_code == 200
        late = await post(hooks, outbound_event(message, "message.sent", "sent"))
        assert late.status_code == 200, late.text
        assert await fetch(tenant, message["id"]) == done

        # Sentinel: always recorded. Had the duplicate or the late "sent" published anything,
        # it would come before this.
        sentinel = await post(hooks, outbound_event(message, "message.sent", "sending"))
        assert sentinel.status_code == 200, sentinel.text
        following = await next_event(events)
        assert (following["kind"], following["status"]) == ("provider_status", "DELIVERED")
        assert following["detail"]["providerStatus"] == "sending"

    final = await fetch(tenant, message["id"])
    assert kinds(final) == [
        *kinds(message),
        ("delivery_receipt", "DELIVERED"),
        ("provider_status", "DELIVERED"),
    ]


async def test_delivery_failed_is_undelivered_with_telnyx_error(hooks: TelnyxHooks) -> None:
    tenant = await hooks.tenant()
    message = await sent_sms(hooks, tenant)
    errors = [{"code": "40001", "title": "Not routable", "detail": "Destination is a landline"}]
    response = await post(
        hooks, outbound_event(message, "message.finalized", "delivery_failed", errors=errors)
    )
    assert response.status_code == 200, response.text
    failed = await fetch(tenant, message["id"])
    assert failed["status"] == "UNDELIVERED"
    assert failed["error"] == {
        "code": "40001",
        "description": "Destination is a landline",
        "permanent": True,
    }
    # A later "delivered" for the same message cannot undo a final outcome.
    await post(hooks, outbound_event(message, "message.finalized", "delivered"))
    assert (await fetch(tenant, message["id"]))["status"] == "UNDELIVERED"


async def test_other_events_are_acknowledged_and_bad_payloads_refused(hooks: TelnyxHooks) -> None:
    tenant = await hooks.tenant()
    message = await sent_sms(hooks, tenant)
    other = outbound_event(message, "message.sent", "delivered")
    other["data"]["event_type"] = "number_order.complete"
    assert (await post(hooks, other)).status_code == 200
    unknown = await post(hooks, outbound_event(message, "message.finalized", "teleported"))
    assert unknown.status_code == 400
    assert "to[0].status" in unknown.json()["error"]
    assert (await post(hooks, b"[1, 2]")).status_code == 400
    assert (await fetch(tenant, message["id"]))["events"] == message["events"]


# --- inbound --------------------------------------------------------------------------------


async def test_inbound_sms_and_mms_are_stored_once(hooks: TelnyxHooks) -> None:
    tenant = await hooks.tenant()
    ours, theirs = new_number(), new_number()
    await hooks.own(tenant, ours)
    sms = received_event(theirs, ours, "Hello from a handset")
    media = ["https://media.example.com/a.jpg", "https://media.example.com/b.jpg"]
    mms = received_event(theirs, ours, "", media)

    assert (await post(hooks, sms)).status_code == 200
    assert (await post(hooks, mms)).status_code == 200
    # Telnyx retries a webhook it thinks failed: the same event once more stores nothing.
    assert (await post(hooks, sms)).status_code == 200

    conversation = await conversation_with(tenant, theirs)
    assert conversation is not None
    stored = sorted(messages_of(conversation), key=lambda m: m["channel"])
    assert [(m["channel"], m["direction"], m["status"]) for m in stored] == [
        ("MMS", "INBOUND", "RECEIVED"),
        ("SMS", "INBOUND", "RECEIVED"),
    ]
    assert stored[0]["attachments"] == list(media) and stored[0]["body"] is None
    assert stored[1]["body"] == "Hello from a handset"
    assert stored[1]["providerMessageId"] == sms["data"]["payload"]["id"]
    assert (stored[1]["from"], stored[1]["to"]) == (theirs, ours)


# --- end to end -----------------------------------------------------------------------------


async def test_sms_reaches_delivered_through_sandbox_signed_webhooks(hooks: TelnyxHooks) -> None:
    control = f"{hooks.base_url}/sandbox/control/config"
    quick = await hooks.http.post(control, json={"vendor": "telnyx", "callback_delay": 0.05})
    assert quick.status_code == 200, quick.text
    try:
        tenant = await hooks.tenant()
        message_id = await send(
            tenant, {"channel": "SMS", "from": new_number(), "to": new_number(), "body": "Hi"}
        )
        done = await wait_for(tenant, message_id, lambda m: m["status"] == "DELIVERED", "DELIVERED")
    finally:
        restored = await hooks.http.post(control, json={"vendor": "telnyx", "callback_delay": None})
        assert restored.status_code == 200, restored.text
    assert done["provider"] == "telnyx"
    assert kinds(done).count(("delivery_receipt", "DELIVERED")) == 1

    sandbox = hooks.container.sandbox
    assert sandbox is not None

    def posted() -> list[tuple[int | None, str]]:
        return [
            (c["http_status"], c["event_type"])
            for c in sandbox.callbacks
            if c["vendor"] == "telnyx" and c["provider_id"] == done["providerMessageId"]
        ]

    # The sandbox records our answer after the gateway has committed: wait for it (bounded).
    for _ in range(POLL_ATTEMPTS):
        if len(posted()) == 2 and all(status is not None for status, _ in posted()):
            break
        await asyncio.sleep(POLL_DELAY)
    assert posted() == [(200, "message.sent"), (200, "message.finalized")]
