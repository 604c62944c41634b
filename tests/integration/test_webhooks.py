"""Provider webhooks over real HTTP, on PostgreSQL and SQLite.

Twilio status callbacks and inbound SMS/MMS, the SendGrid Event Webhook and Inbound Parse, the
generic Standard-Webhooks JSON endpoints, raw payloads kept when we fail, and end-to-end runs
through the real adapters and the mounted sandbox.

Most tests use the module's own ``hooks`` gateway: it knows the generic webhook secret, the
Inbound Parse token and a SendGrid key pair of ours (so the tests sign events themselves), and its
sandbox waits an hour before calling back, so nothing but the test reports on a message.

Determinism: "no second event" is checked with a sentinel. A test subscribes from the message's
last stored cursor, posts the reports, then posts a report that is always recorded (a Twilio
``queued`` or a SendGrid ``processed``); the event after the expected one must be the sentinel.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from gateway.domain.records import DeliveryError
from gateway.domain.reports import StatusReport
from gateway.domain.statuses import MessageStatus
from gateway.settings import Settings
from harness.http import loopback_client
from persistence.models import MessageRow, WebhookReceiptRow
from providers.signatures import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    generate_sendgrid_keypair,
    sendgrid_sign,
    standard_webhook_sign,
    twilio_signature,
)
from tests.conftest import (
    SEND,
    GatewayParts,
    GraphQLClient,
    RunningGateway,
    Subscription,
    backend_settings,
    serve,
)
from tests.integration.test_cli import cli_env, run_cli

FORM = "application/x-www-form-urlencoded"
POLL_ATTEMPTS = 400
POLL_DELAY = 0.05


MESSAGE = """
query One($id: ID!) {
  message(id: $id) {
    id status channel direction from to body attachments sentAt metadata
    provider providerMessageId
    error { code description permanent }
    conversation { id participants }
    events { cursor kind status detail }
  }
}
"""

CONVERSATIONS = """
query Conversations($participant: String!) {
  conversations(first: 10, participant: $participant) {
    edges { node {
      id participants messageCount
      messages(first: 50) { edges { node {
        id channel direction status from to body attachments sentAt metadata providerMessageId
        conversation { id }
      } } }
    } }
  }
}
"""

EVENTS = """
subscription Events($messageId: ID, $after: String) {
  messageEvents(messageId: $messageId, after: $after) { cursor kind status messageId detail }
}
"""

CONVERSATION_EVENTS = """
subscription Events($conversationId: ID, $after: String) {
  messageEvents(conversationId: $conversationId, after: $after) {
    cursor kind status messageId detail
  }
}
"""

# --- gateways, accounts and addresses -------------------------------------------------------


@dataclass
class Hooks:
    """A running gateway whose webhook secrets and SendGrid key pair the tests know."""

    backend: str
    base_url: str
    container: GatewayParts
    http: httpx.AsyncClient
    sendgrid_private_key: str

    @property
    def settings(self) -> Settings:
        return self.container.settings

    @property
    def generic_secret(self) -> str:
        secret = self.settings.generic_webhook_secret
        assert secret is not None
        return secret

    @property
    def inbound_token(self) -> str:
        token = self.settings.sendgrid_inbound_token
        assert token is not None
        return token


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def hooks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Hooks]:
    backend, settings = backend_settings(request, tmp_path_factory, "hooks")
    private_key, public_key = generate_sendgrid_keypair()
    settings.generic_webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    settings.sendgrid_inbound_token = secrets.token_urlsafe(24)
    settings.sendgrid_webhook_public_key = public_key
    # The sandbox must not report on our messages: the tests are the provider here.
    settings.sandbox_callback_delay = 3600.0
    async with (
        serve(settings) as (base_url, container),
        loopback_client(timeout=30) as http,
    ):
        yield Hooks(backend, base_url, container, http, private_key)


@dataclass
class Tenant:
    account_id: UUID
    client: GraphQLClient


async def new_tenant(base_url: str, container: GatewayParts, http: httpx.AsyncClient) -> Tenant:
    name = "wh-" + uuid.uuid4().hex[:10]
    account, key = await container.api_keys.create(name)
    return Tenant(account.id, GraphQLClient(base_url, key, name, http))


async def hooks_tenant(hooks: Hooks) -> Tenant:
    return await new_tenant(hooks.base_url, hooks.container, hooks.http)


_used_numbers: set[str] = set()


def new_number() -> str:
    """A valid, E.164-normalized US number not used before in this run."""
    while True:
        number = f"+1415{secrets.randbelow(800) + 200}{secrets.randbelow(10_000):04d}"
        if number not in _used_numbers:
            _used_numbers.add(number)
            return number


def new_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def own(hooks: Hooks, tenant: Tenant, address: str) -> None:
    owner = await hooks.container.webhook_repo.add_address(
        tenant.account_id, address, datetime.now(UTC)
    )
    assert owner == tenant.account_id


async def tenant_with_a_number(hooks: Hooks) -> tuple[Tenant, str, str]:
    """A new tenant, a number it owns, and a number nobody owns (the other party)."""
    tenant = await hooks_tenant(hooks)
    ours, theirs = new_number(), new_number()
    await own(hooks, tenant, ours)
    return tenant, ours, theirs


def raw_id(public_id: str) -> str:
    """Our message id as providers echo it back (``mid``, ``message_id``): 32 hex digits."""
    assert public_id.startswith("msg_"), public_id
    return public_id.removeprefix("msg_")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- GraphQL helpers ------------------------------------------------------------------------


async def send(tenant: Tenant, message_input: dict[str, Any]) -> str:
    data = await tenant.client.execute(SEND, {"input": message_input})
    result = data["sendMessage"]
    assert result["__typename"] == "MessageAccepted", result
    message_id: str = result["message"]["id"]
    return message_id


async def fetch(tenant: Tenant, message_id: str) -> dict[str, Any]:
    data = await tenant.client.execute(MESSAGE, {"id": message_id})
    message: dict[str, Any] | None = data["message"]
    assert message is not None, f"{message_id} is not visible to {tenant.client.account}"
    return message


async def wait_for(
    tenant: Tenant, message_id: str, ready: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll (bounded) until the message satisfies ``ready``."""
    message = await fetch(tenant, message_id)
    for _ in range(POLL_ATTEMPTS):
        if ready(message):
            return message
        await asyncio.sleep(POLL_DELAY)
        message = await fetch(tenant, message_id)
    raise AssertionError(f"message never became {what}: {message}")


async def unchanged(tenant: Tenant, message: dict[str, Any]) -> None:
    """The message is still SENT, with no event past those ``message`` shows: what was
    refused or could not apply changed nothing."""
    after = await fetch(tenant, message["id"])
    assert after["status"] == "SENT"
    assert after["events"] == message["events"]


def is_sent(message: dict[str, Any]) -> bool:
    return message["status"] == "SENT" and bool(message["providerMessageId"])


async def sent_sms(
    tenant: Tenant, sender: str | None = None, to: str | None = None
) -> dict[str, Any]:
    message_id = await send(
        tenant,
        {
            "channel": "SMS",
            "from": sender or new_number(),
            "to": to or new_number(),
            "body": "webhook test " + uuid.uuid4().hex[:6],
        },
    )
    return await wait_for(tenant, message_id, is_sent, "SENT with a provider id")


async def sent_email(tenant: Tenant) -> dict[str, Any]:
    message_id = await send(
        tenant,
        {
            "channel": "EMAIL",
            "from": new_email("news"),
            "to": new_email("reader"),
            "body": "Hello by e-mail",
            "metadata": {"subject": "Webhook test"},
        },
    )
    return await wait_for(tenant, message_id, is_sent, "SENT with a provider id")


async def conversation_with(tenant: Tenant, participant: str) -> dict[str, Any] | None:
    data = await tenant.client.execute(CONVERSATIONS, {"participant": participant})
    edges: list[dict[str, Any]] = data["conversations"]["edges"]
    assert len(edges) <= 1, edges
    return edges[0]["node"] if edges else None


def messages_of(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in conversation["messages"]["edges"]]


def kinds(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [(event["kind"], event["status"]) for event in message["events"]]


@contextlib.asynccontextmanager
async def live_events(tenant: Tenant, message: dict[str, Any]) -> AsyncIterator[Subscription]:
    """The message's events after the last one ``message`` shows: replayed, then live."""
    after = message["events"][-1]["cursor"]
    async with tenant.client.subscription(EVENTS, {"messageId": message["id"], "after": after}) as (
        subscription
    ):
        yield subscription


async def next_event(subscription: Subscription) -> dict[str, Any]:
    payload = await subscription.next()
    assert "errors" not in payload, payload
    event: dict[str, Any] = payload["data"]["messageEvents"]
    return event


# --- raw database views (white-box) ---------------------------------------------------------


async def receipts(container: GatewayParts, outcome: str) -> list[dict[str, Any]]:
    table = WebhookReceiptRow.__table__
    async with container.engine.connect() as conn:
        rows = await conn.execute(select(*table.c).where(WebhookReceiptRow.outcome == outcome))
        return [dict(row) for row in rows.mappings()]


async def stored_with_provider_id(container: GatewayParts, provider_message_id: str) -> int:
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            select(MessageRow.id).where(MessageRow.provider_message_id == provider_message_id)
        )
        return len(rows.all())


async def webhook_count(hooks: Hooks, source: str, outcome: str) -> float:
    """The ``webhooks`` counter for (source, outcome) as GET /metrics shows it."""
    text = (await hooks.http.get(hooks.base_url + "/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "gateway_webhooks_total"
                and sample.labels.get("source") == source
                and sample.labels.get("outcome") == outcome
            ):
                return float(sample.value)
    return 0.0


# --- Twilio ---------------------------------------------------------------------------------

Params = Mapping[str, str | Sequence[str]]


async def post_twilio(
    hooks: Hooks,
    path: str,
    params: Params,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST a form as Twilio does, signed over PUBLIC_BASE_URL + path + query unless
    ``headers`` is given (then exactly those headers are sent)."""
    target = path + (f"?{query}" if query else "")
    if headers is None:
        signed_url = hooks.settings.public_base_url + target
        headers = {
            TWILIO_SIGNATURE_HEADER: twilio_signature(
                hooks.settings.twilio_auth_token, signed_url, params
            )
        }
    return await hooks.http.post(
        hooks.base_url + target,
        content=urlencode(params, doseq=True).encode(),
        headers={"Content-Type": FORM, **headers},
    )


def status_params(
    hooks: Hooks, message: dict[str, Any], status: str, **extra: str
) -> dict[str, str]:
    sid: str = message["providerMessageId"]
    return {
        "AccountSid": hooks.settings.twilio_account_sid,
        "ApiVersion": "2010-04-01",
        "From": message["from"],
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": message["to"],
        **extra,
    }


async def twilio_status(
    hooks: Hooks, message: dict[str, Any], status: str, *, with_mid: bool = True, **extra: str
) -> httpx.Response:
    query = f"mid={raw_id(message['id'])}" if with_mid else ""
    return await post_twilio(
        hooks,
        "/webhooks/twilio/status",
        status_params(hooks, message, status, **extra),
        query=query,
    )


def inbound_params(sender: str, to: str, body: str, media: Sequence[str] = ()) -> dict[str, str]:
    sid = ("MM" if media else "SM") + secrets.token_hex(16)
    params: dict[str, str] = {
        "AccountSid": "ACsandbox00000000000000000000000000",
        "ApiVersion": "2010-04-01",
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": str(len(media)),
        "NumSegments": "1",
    }
    for index, url in enumerate(media):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = "image/jpeg"
    return params


async def test_twilio_status_refuses_missing_and_wrong_signatures_without_change(
    hooks: Hooks,
) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    params = status_params(hooks, message, "delivered")
    query = f"mid={raw_id(message['id'])}"
    url = hooks.settings.public_base_url + "/webhooks/twilio/status?" + query

    missing = await post_twilio(hooks, "/webhooks/twilio/status", params, query=query, headers={})
    assert missing.status_code == 401, missing.text
    assert "X-Twilio-Signature" in missing.json()["error"]

    forged = {
        # The wrong auth token, the right URL and parameters.
        TWILIO_SIGNATURE_HEADER: twilio_signature("not-the-auth-token", url, params),
    }
    wrong = await post_twilio(hooks, "/webhooks/twilio/status", params, query=query, headers=forged)
    assert wrong.status_code == 403, wrong.text

    # The right token over other parameters: the body was tampered with.
    tampered = {
        TWILIO_SIGNATURE_HEADER: twilio_signature(
            hooks.settings.twilio_auth_token, url, {**params, "MessageStatus": "sent"}
        )
    }
    altered = await post_twilio(
        hooks, "/webhooks/twilio/status", params, query=query, headers=tampered
    )
    assert altered.status_code == 403, altered.text

    # The right signature, for another message's id in the query string.
    moved = await post_twilio(
        hooks,
        "/webhooks/twilio/status",
        params,
        query=f"mid={uuid.uuid4().hex}",
        headers={
            TWILIO_SIGNATURE_HEADER: twilio_signature(hooks.settings.twilio_auth_token, url, params)
        },
    )
    assert moved.status_code == 403, moved.text

    await unchanged(tenant, message)

    # The refused deliveries did not use up the report: the genuine one still applies.
    genuine = await twilio_status(hooks, message, "delivered")
    assert genuine.status_code == 204, genuine.text
    assert (await fetch(tenant, message["id"]))["status"] == "DELIVERED"


async def test_twilio_delivered_applies_once_and_never_moves_backwards(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    applied = await webhook_count(hooks, "twilio", "applied")
    duplicates = await webhook_count(hooks, "twilio", "duplicate")
    async with live_events(tenant, message) as events:
        first = await twilio_status(hooks, message, "delivered")
        assert first.status_code == 204, first.text
        assert await webhook_count(hooks, "twilio", "applied") == applied + 1
        delivered = await fetch(tenant, message["id"])
        assert delivered["status"] == "DELIVERED"
        assert delivered["error"] is None

        published = await next_event(events)
        assert (published["kind"], published["status"]) == ("delivery_receipt", "DELIVERED")
        assert published["messageId"] == message["id"]
        assert published["detail"]["providerStatus"] == "delivered"

        again = await twilio_status(hooks, message, "delivered")
        assert again.is_success, again.text
        assert await webhook_count(hooks, "twilio", "duplicate") == duplicates + 1
        late = await twilio_status(hooks, message, "sent")
        assert late.is_success, late.text
        assert await fetch(tenant, message["id"]) == delivered

        # Sentinel: always recorded. Had the duplicate or the late "sent" published anything,
        # it would come before this.
        sentinel = await twilio_status(hooks, message, "queued")
        assert sentinel.status_code == 204, sentinel.text
        following = await next_event(events)
        assert (following["kind"], following["status"]) == ("provider_status", "DELIVERED")
        assert following["detail"]["providerStatus"] == "queued"

    final = await fetch(tenant, message["id"])
    assert final["status"] == "DELIVERED"
    assert kinds(final) == [
        *kinds(message),
        ("delivery_receipt", "DELIVERED"),
        ("provider_status", "DELIVERED"),
    ]


async def test_twilio_status_found_by_message_sid_alone(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    response = await twilio_status(hooks, message, "delivered", with_mid=False)
    assert response.status_code == 204, response.text
    found = await fetch(tenant, message["id"])
    assert found["status"] == "DELIVERED"
    receipt = found["events"][-1]
    assert (receipt["kind"], receipt["status"]) == ("delivery_receipt", "DELIVERED")
    assert receipt["detail"]["providerMessageId"] == message["providerMessageId"]


async def test_twilio_undelivered_records_the_error_code(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    response = await twilio_status(hooks, message, "undelivered", ErrorCode="30003")
    assert response.status_code == 204, response.text
    found = await fetch(tenant, message["id"])
    assert found["status"] == "UNDELIVERED"
    assert found["error"]["code"] == "30003"
    assert "30003" in found["error"]["description"]
    assert found["error"]["permanent"] is True
    assert found["events"][-1]["detail"]["errorCode"] == "30003"

    # A final status is final: a later "delivered" does not resurrect it.
    late = await twilio_status(hooks, message, "delivered")
    assert late.is_success, late.text
    assert (await fetch(tenant, message["id"]))["status"] == "UNDELIVERED"


async def test_twilio_malformed_status_is_400_naming_the_field(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    base = status_params(hooks, message, "delivered")
    cases: list[tuple[dict[str, str], str]] = [
        ({k: v for k, v in base.items() if k != "MessageStatus"}, "MessageStatus"),
        ({**base, "MessageStatus": ""}, "MessageStatus"),
        ({**base, "MessageStatus": "exploded"}, "MessageStatus"),
        ({k: v for k, v in base.items() if k != "MessageSid"}, "MessageSid"),
    ]
    query = f"mid={raw_id(message['id'])}"
    for params, field in cases:
        response = await post_twilio(hooks, "/webhooks/twilio/status", params, query=query)
        assert response.status_code == 400, (params, response.text)
        assert field in response.json()["error"], (params, response.text)
    await unchanged(tenant, message)


async def test_twilio_concurrent_duplicate_callbacks_apply_once(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    async with live_events(tenant, message) as events:
        responses = await asyncio.gather(
            *(twilio_status(hooks, message, "delivered") for _ in range(10))
        )
        assert all(r.status_code == 204 for r in responses), [
            (r.status_code, r.text) for r in responses
        ]
        published = await next_event(events)
        assert (published["kind"], published["status"]) == ("delivery_receipt", "DELIVERED")
        sentinel = await twilio_status(hooks, message, "queued")
        assert sentinel.status_code == 204, sentinel.text
        following = await next_event(events)
        assert following["kind"] == "provider_status", following
    final = await fetch(tenant, message["id"])
    assert final["status"] == "DELIVERED"
    assert kinds(final).count(("delivery_receipt", "DELIVERED")) == 1


def twilio_report(
    message: dict[str, Any] | None,
    status: MessageStatus | None,
    raw: str,
    error: DeliveryError | None = None,
) -> StatusReport:
    """A Twilio report on ``message`` (None: a message nobody has)."""
    sid = message["providerMessageId"] if message else "SM" + secrets.token_hex(16)
    return StatusReport(
        dedupe_key=f"twilio:{sid}:{raw}",
        message_id=UUID(raw_id(message["id"])) if message else uuid.uuid4(),
        provider="twilio",
        provider_message_id=sid,
        status=status,
        kind="delivery_receipt" if status else "provider_status",
        detail={"providerStatus": raw},
        error=error,
    )


async def test_one_batch_applies_its_reports_in_order_and_each_once(hooks: Hooks) -> None:
    """What concurrent callbacks sharing one transaction must get: the outcome each would
    have had alone, applied in the order they came."""
    tenant = await hooks_tenant(hooks)
    first, second = await sent_sms(tenant), await sent_sms(tenant)
    S = MessageStatus
    failure = DeliveryError("30003", "Unreachable destination handset", permanent=True)
    batch = [
        twilio_report(first, S.DELIVERED, "delivered"),
        twilio_report(first, S.DELIVERED, "delivered"),  # the same report twice in one batch
        twilio_report(second, S.SENT, "sent"),  # the worker recorded SENT already
        twilio_report(second, S.UNDELIVERED, "undelivered", failure),
        twilio_report(second, S.DELIVERED, "delivered"),  # after UNDELIVERED: never applies
        twilio_report(None, S.DELIVERED, "delivered"),
        twilio_report(first, None, "queued"),  # recorded with the status it has by then
    ]
    repo = hooks.container.webhook_repo
    results = await repo.apply_reports([("twilio", r) for r in batch], datetime.now(UTC))
    outcomes = [(r.outcome, r.event.status.value if r.event else None) for r in results]
    assert outcomes == [
        ("applied", "DELIVERED"),
        ("duplicate", None),
        ("stale", None),
        ("applied", "UNDELIVERED"),
        ("stale", None),
        ("unmatched", None),
        ("applied", "DELIVERED"),
    ]
    cursors = [r.event.id for r in results if r.event is not None]
    assert cursors == sorted(cursors)

    one, two = await fetch(tenant, first["id"]), await fetch(tenant, second["id"])
    assert (one["status"], two["status"]) == ("DELIVERED", "UNDELIVERED")
    assert one["error"] is None
    assert two["error"] == {
        "code": "30003",
        "description": "Unreachable destination handset",
        "permanent": True,
    }
    assert kinds(one) == [
        *kinds(first),
        ("delivery_receipt", "DELIVERED"),
        ("provider_status", "DELIVERED"),
    ]
    assert kinds(two) == [*kinds(second), ("delivery_receipt", "UNDELIVERED")]
    unmatched_keys = {r["dedupe_key"] for r in await receipts(hooks.container, "unmatched")}
    assert batch[5].dedupe_key in unmatched_keys

    # Delivered again, in any grouping: nothing more happens.
    again = await repo.apply_reports([("twilio", r) for r in batch], datetime.now(UTC))
    assert {r.outcome for r in again} == {"duplicate"}
    assert await fetch(tenant, first["id"]) == one


async def test_concurrent_callbacks_for_many_messages_apply_once_each(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    messages = await asyncio.gather(*(sent_sms(tenant) for _ in range(8)))
    posts = [
        twilio_status(hooks, message, status)
        for message in messages
        for status in ("sent", "delivered", "delivered", "sent")
    ]
    responses = await asyncio.gather(*posts)
    assert all(r.status_code == 204 for r in responses), [
        (r.status_code, r.text) for r in responses
    ]
    for message in messages:
        final = await fetch(tenant, message["id"])
        assert final["status"] == "DELIVERED", final
        receipts_seen = kinds(final)[len(kinds(message)) :]
        assert receipts_seen.count(("delivery_receipt", "DELIVERED")) == 1, receipts_seen
        # The worker recorded SENT already: "sent" changes nothing, whenever it comes.
        assert receipts_seen == [("delivery_receipt", "DELIVERED")], receipts_seen


async def test_twilio_inbound_sms_and_mms_join_the_outbound_conversation(hooks: Hooks) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    outbound_id = await send(
        tenant, {"channel": "SMS", "from": ours, "to": theirs, "body": "Your order shipped"}
    )

    sms = inbound_params(theirs, ours, "Thanks! When will it arrive?")
    response = await post_twilio(hooks, "/webhooks/twilio/messages", sms)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response>" in response.text

    media = ["https://media.example.com/photo-1.jpg", "https://media.example.com/photo-2.jpg"]
    mms = inbound_params(theirs, ours, "Here is the damage", media)
    response = await post_twilio(hooks, "/webhooks/twilio/messages", mms)
    assert response.status_code == 200, response.text

    # Twilio redelivers the SMS: stored once.
    again = await post_twilio(hooks, "/webhooks/twilio/messages", sms)
    assert again.status_code == 200, again.text

    conversation = await conversation_with(tenant, theirs)
    assert conversation is not None
    assert conversation["participants"] == sorted([ours, theirs])
    assert conversation["messageCount"] == 3
    stored = messages_of(conversation)
    assert stored[0]["id"] == outbound_id
    inbound = [m for m in stored if m["direction"] == "INBOUND"]
    assert [(m["channel"], m["status"], m["from"], m["to"]) for m in inbound] == [
        ("SMS", "RECEIVED", theirs, ours),
        ("MMS", "RECEIVED", theirs, ours),
    ]
    assert [m["body"] for m in inbound] == [sms["Body"], mms["Body"]]
    assert [m["attachments"] for m in inbound] == [[], media]
    assert [m["providerMessageId"] for m in inbound] == [sms["MessageSid"], mms["MessageSid"]]
    assert {m["conversation"]["id"] for m in stored} == {conversation["id"]}

    received = await fetch(tenant, inbound[0]["id"])
    assert kinds(received) == [("received", "RECEIVED")]
    assert await stored_with_provider_id(hooks.container, sms["MessageSid"]) == 1

    # Nobody else sees it.
    stranger = await hooks_tenant(hooks)
    assert await conversation_with(stranger, theirs) is None


RECENT = """
query Recent { conversations(first: 10) { edges { node { id participants lastMessageAt } } } }
"""


async def test_an_inbound_message_makes_its_conversation_the_most_recent(hooks: Hooks) -> None:
    """README: ``conversations`` lists the most recently active first. A reply is activity."""
    tenant = await hooks_tenant(hooks)
    ours, alice, bob = new_number(), new_number(), new_number()
    await own(hooks, tenant, ours)
    await send(tenant, {"channel": "SMS", "from": ours, "to": alice, "body": "to alice"})
    await send(tenant, {"channel": "SMS", "from": ours, "to": bob, "body": "to bob"})

    async def recent() -> list[dict[str, Any]]:
        data = await tenant.client.execute(RECENT)
        return [edge["node"] for edge in data["conversations"]["edges"]]

    before = await recent()
    assert [c["participants"] for c in before] == [sorted([ours, bob]), sorted([ours, alice])]

    reply = inbound_params(alice, ours, "alice replies")
    response = await post_twilio(hooks, "/webhooks/twilio/messages", reply)
    assert response.status_code == 200, response.text

    conversation = await conversation_with(tenant, alice)
    assert conversation is not None
    received = next(m for m in messages_of(conversation) if m["direction"] == "INBOUND")
    created_at = parse_time(await fetch_created(tenant, received["id"]))

    after = await recent()
    assert [c["participants"] for c in after] == [sorted([ours, alice]), sorted([ours, bob])]
    assert parse_time(after[0]["lastMessageAt"]) >= created_at


async def fetch_created(tenant: Tenant, message_id: str) -> str:
    data = await tenant.client.execute(
        "query C($id: ID!) { message(id: $id) { createdAt } }", {"id": message_id}
    )
    created: str = data["message"]["createdAt"]
    return created


async def test_concurrent_inbound_from_a_new_sender_share_one_conversation(hooks: Hooks) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    distinct = [inbound_params(theirs, ours, f"part {n}") for n in range(4)]
    # Every message twice at once: the first ones race to create the conversation, the
    # second ones race their own first delivery.
    responses = await asyncio.gather(
        *(post_twilio(hooks, "/webhooks/twilio/messages", p) for p in distinct + distinct)
    )
    assert all(r.status_code == 200 for r in responses), [
        (r.status_code, r.text) for r in responses
    ]
    conversation = await conversation_with(tenant, theirs)
    assert conversation is not None
    assert conversation["messageCount"] == 4
    assert sorted(m["body"] for m in messages_of(conversation)) == [f"part {n}" for n in range(4)]


async def test_an_inbound_message_is_published_live(hooks: Hooks) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    outbound = await sent_sms(tenant, sender=ours, to=theirs)
    conversation_id = outbound["conversation"]["id"]
    variables = {"conversationId": conversation_id, "after": outbound["events"][-1]["cursor"]}
    async with tenant.client.subscription(CONVERSATION_EVENTS, variables) as events:
        params = inbound_params(theirs, ours, "live reply")
        response = await post_twilio(hooks, "/webhooks/twilio/messages", params)
        assert response.status_code == 200, response.text
        event = await next_event(events)
    assert (event["kind"], event["status"]) == ("received", "RECEIVED")
    assert event["messageId"] != outbound["id"]
    received = await fetch(tenant, event["messageId"])
    assert received["providerMessageId"] == params["MessageSid"]


async def test_twilio_inbound_refuses_missing_and_wrong_signatures(hooks: Hooks) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    params = inbound_params(theirs, ours, "let me in")
    url = hooks.settings.public_base_url + "/webhooks/twilio/messages"

    missing = await post_twilio(hooks, "/webhooks/twilio/messages", params, headers={})
    assert missing.status_code == 401, missing.text
    forged = {TWILIO_SIGNATURE_HEADER: twilio_signature("wrong-token", url, params)}
    wrong = await post_twilio(hooks, "/webhooks/twilio/messages", params, headers=forged)
    assert wrong.status_code == 403, wrong.text

    assert await conversation_with(tenant, theirs) is None
    assert await stored_with_provider_id(hooks.container, params["MessageSid"]) == 0


async def test_twilio_inbound_to_unowned_address_is_kept_raw(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The embedded default gives every address to the development account; this test is about
    # a deployment without one (see the test after it for the embedded rule).
    monkeypatch.setattr(hooks.container.api, "default_owner", None)
    tenant = await hooks_tenant(hooks)
    nobodys, theirs = new_number(), new_number()
    params = inbound_params(theirs, nobodys, "is anybody there?")
    before = {row["id"] for row in await receipts(hooks.container, "unowned")}
    counted = await webhook_count(hooks, "twilio", "inbound_unowned")

    response = await post_twilio(hooks, "/webhooks/twilio/messages", params)
    assert response.is_success, response.text

    assert await stored_with_provider_id(hooks.container, params["MessageSid"]) == 0
    assert await conversation_with(tenant, theirs) is None
    kept = [r for r in await receipts(hooks.container, "unowned") if r["id"] not in before]
    assert len(kept) == 1, kept
    assert kept[0]["source"] == "twilio"
    assert kept[0]["content_type"] == FORM
    assert kept[0]["payload"] == urlencode(params)
    assert await webhook_count(hooks, "twilio", "inbound_unowned") == counted + 1


async def test_embedded_default_gives_unowned_inbound_to_the_development_account(
    hooks: Hooks,
) -> None:
    if hooks.backend != "sqlite":
        pytest.skip("only the embedded default (SQLite, no Redis) has a development account")
    owner = hooks.container.default_owner
    assert owner is not None
    nobodys, theirs = new_number(), new_number()
    params = inbound_params(theirs, nobodys, "hello developer")
    response = await post_twilio(hooks, "/webhooks/twilio/messages", params)
    assert response.status_code == 200, response.text
    async with hooks.container.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(MessageRow.account_id, MessageRow.status).where(
                    MessageRow.provider_message_id == params["MessageSid"]
                )
            )
        ).all()
    assert [(r[0], r[1]) for r in rows] == [(owner, "RECEIVED")]


# --- SendGrid Event Webhook -----------------------------------------------------------------


def sg_event(
    message: dict[str, Any], event: str, *, with_mid: bool = True, **extra: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "email": message["to"],
        "timestamp": int(time.time()),
        "smtp-id": f"<{message['providerMessageId']}@example.sendgrid.net>",
        "event": event,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": f"{message['providerMessageId']}.filterdrecv-1-ABCDEF-0.0",
        **extra,
    }
    if with_mid:
        fields["message_id"] = raw_id(message["id"])
    return fields


async def post_sendgrid(
    hooks: Hooks,
    body: bytes,
    *,
    timestamp: int | None = None,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST signed as SendGrid does (ECDSA over timestamp + body) unless ``headers`` is given."""
    if headers is None:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            SENDGRID_SIGNATURE_HEADER: sendgrid_sign(
                key or hooks.sendgrid_private_key, stamp, body
            ),
            SENDGRID_TIMESTAMP_HEADER: stamp,
        }
    return await hooks.http.post(
        hooks.base_url + "/webhooks/sendgrid/events",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )


async def post_events(hooks: Hooks, events: list[dict[str, Any]]) -> httpx.Response:
    return await post_sendgrid(hooks, json.dumps(events).encode())


async def test_sendgrid_delivered_applies_once(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_email(tenant)
    delivered = sg_event(message, "delivered", response="250 OK")
    async with live_events(tenant, message) as events:
        response = await post_events(hooks, [delivered])
        assert response.status_code == 204, response.text
        found = await fetch(tenant, message["id"])
        assert found["status"] == "DELIVERED"
        published = await next_event(events)
        assert (published["kind"], published["status"]) == ("delivery_receipt", "DELIVERED")

        # The same event again (SendGrid redelivers on any doubt), alone and inside a batch.
        again = await post_events(hooks, [delivered])
        assert again.is_success, again.text
        sentinel = sg_event(message, "processed")
        batch = await post_events(hooks, [delivered, sentinel])
        assert batch.status_code == 204, batch.text
        following = await next_event(events)
        assert following["kind"] == "provider_status", following
        assert following["detail"]["providerEvent"] == "processed"

    final = await fetch(tenant, message["id"])
    assert final["status"] == "DELIVERED"
    assert kinds(final).count(("delivery_receipt", "DELIVERED")) == 1


async def test_sendgrid_bounce_fails_with_the_reason(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_email(tenant)
    reason = "550 5.1.1 The email account that you tried to reach does not exist."
    bounce = sg_event(
        message,
        "bounce",
        reason=reason,
        status="5.1.1",
        type="bounce",
        bounce_classification="Invalid Address",
    )
    response = await post_events(hooks, [bounce])
    assert response.status_code == 204, response.text
    found = await fetch(tenant, message["id"])
    assert found["status"] == "FAILED"
    assert found["error"] == {"code": "5.1.1", "description": reason, "permanent": True}
    last = found["events"][-1]
    assert (last["kind"], last["status"]) == ("delivery_receipt", "FAILED")
    assert last["detail"]["bounceClassification"] == "Invalid Address"

    # A late "delivered" cannot undo a final failure.
    late = await post_events(hooks, [sg_event(message, "delivered")])
    assert late.is_success, late.text
    assert (await fetch(tenant, message["id"]))["status"] == "FAILED"


async def test_sendgrid_deferred_and_engagement_are_recorded_without_status_change(
    hooks: Hooks,
) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_email(tenant)

    deferred = sg_event(message, "deferred", attempt="1", response="421 try again later")
    response = await post_events(hooks, [deferred])
    assert response.status_code == 204, response.text
    found = await fetch(tenant, message["id"])
    assert found["status"] == "SENT"
    assert kinds(found)[-1] == ("deferred", "SENT")
    assert found["events"][-1]["detail"]["response"] == "421 try again later"

    delivered = await post_events(hooks, [sg_event(message, "delivered")])
    assert delivered.status_code == 204, delivered.text
    opened = sg_event(message, "open", useragent="Mozilla/5.0")
    clicked = sg_event(
        message, "click", url="https://shop.example.com/reset?token=secret-one-time-token#top"
    )
    response = await post_events(hooks, [opened, clicked])
    assert response.status_code == 204, response.text
    # A redelivered open has no second effect.
    duplicate = await post_events(hooks, [opened])
    assert duplicate.is_success, duplicate.text

    found = await fetch(tenant, message["id"])
    assert found["status"] == "DELIVERED"
    engagement = [e for e in found["events"] if e["kind"] == "engagement"]
    assert [(e["status"], e["detail"]["providerEvent"]) for e in engagement] == [
        ("DELIVERED", "open"),
        ("DELIVERED", "click"),
    ]
    # The link is kept without its one-time token.
    assert engagement[1]["detail"]["url"] == "https://shop.example.com/reset"
    assert "secret-one-time-token" not in json.dumps(found["events"])


async def test_sendgrid_event_found_by_sg_message_id_alone(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_email(tenant)
    response = await post_events(hooks, [sg_event(message, "delivered", with_mid=False)])
    assert response.status_code == 204, response.text
    assert (await fetch(tenant, message["id"]))["status"] == "DELIVERED"


async def test_sendgrid_refuses_missing_stale_and_forged_signatures(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_email(tenant)
    body = json.dumps([sg_event(message, "delivered")]).encode()
    now = int(time.time())
    stamp = str(now)
    signature = sendgrid_sign(hooks.sendgrid_private_key, stamp, body)

    for headers in (
        {},
        {SENDGRID_TIMESTAMP_HEADER: stamp},
        {SENDGRID_SIGNATURE_HEADER: signature},
    ):
        response = await post_sendgrid(hooks, body, headers=headers)
        assert response.status_code == 401, (headers, response.text)

    stale = await post_sendgrid(hooks, body, timestamp=now - 600)
    assert stale.status_code == 403, stale.text
    future = await post_sendgrid(hooks, body, timestamp=now + 600)
    assert future.status_code == 403, future.text
    other_key, _ = generate_sendgrid_keypair()
    forged = await post_sendgrid(hooks, body, key=other_key)
    assert forged.status_code == 403, forged.text
    # A genuine signature over another body.
    tampered = await post_sendgrid(
        hooks,
        body,
        headers={
            SENDGRID_SIGNATURE_HEADER: sendgrid_sign(hooks.sendgrid_private_key, stamp, b"[]"),
            SENDGRID_TIMESTAMP_HEADER: stamp,
        },
    )
    assert tampered.status_code == 403, tampered.text
    garbage = await post_sendgrid(
        hooks, body, headers={SENDGRID_SIGNATURE_HEADER: "***", SENDGRID_TIMESTAMP_HEADER: "x"}
    )
    assert garbage.status_code == 403, garbage.text

    await unchanged(tenant, message)
    # None of the refused posts used up the event.
    genuine = await post_sendgrid(hooks, body)
    assert genuine.status_code == 204, genuine.text
    assert (await fetch(tenant, message["id"]))["status"] == "DELIVERED"


async def test_sendgrid_malformed_events_are_400_after_a_valid_signature(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_email(tenant)
    bad_json = await post_sendgrid(hooks, b'[{"event": "delivered",')
    assert bad_json.status_code == 400, bad_json.text
    assert "JSON" in bad_json.json()["error"]

    not_a_list = await post_sendgrid(hooks, b'{"event": "delivered"}')
    assert not_a_list.status_code == 400, not_a_list.text
    assert "array" in not_a_list.json()["error"]

    event = sg_event(message, "delivered")
    del event["sg_event_id"]
    no_id = await post_events(hooks, [event])
    assert no_id.status_code == 400, no_id.text
    assert "sg_event_id" in no_id.json()["error"]

    await unchanged(tenant, message)


# --- SendGrid Inbound Parse -----------------------------------------------------------------

Upload = tuple[str, str, bytes, str]  # field name, file name, content, content type


def parse_fields(sender: str, recipient: str, message_id: str, subject: str) -> dict[str, str]:
    return {
        "headers": (
            f"Message-ID: <{message_id}>\r\n"
            "Date: Fri, 01 Nov 2024 15:03:05 +0100\r\n"
            f"From: Jane Doe <{sender}>\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        ),
        "from": f"Jane Doe <{sender}>",
        "to": f"Support <{recipient}>",
        "subject": subject,
        "text": "My parcel never arrived.\n",
        "html": "<p>My parcel never arrived.</p>",
        "envelope": json.dumps({"to": [recipient], "from": sender}),
        "charsets": json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}),
        "SPF": "pass",
    }


def multipart(fields: Mapping[str, str], uploads: Sequence[Upload] = ()) -> tuple[bytes, str]:
    """A multipart/form-data body as Inbound Parse posts it, and its content type."""
    boundary = "xYzZY" + uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in {**fields, "attachments": str(len(uploads))}.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")
    for name, filename, content, content_type in uploads:
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def post_inbound_parse(
    hooks: Hooks,
    fields: Mapping[str, str],
    *,
    uploads: Sequence[Upload] = (),
    query: str = "",
    auth: httpx.BasicAuth | None = None,
) -> httpx.Response:
    body, content_type = multipart(fields, uploads)
    return await hooks.http.post(
        hooks.base_url + "/webhooks/sendgrid/inbound" + (f"?{query}" if query else ""),
        content=body,
        headers={"Content-Type": content_type},
        auth=auth,
    )


async def test_sendgrid_inbound_parse_needs_the_token(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    support, customer = new_email("support"), new_email("jane")
    await own(hooks, tenant, support)
    fields = parse_fields(customer, support, f"{uuid.uuid4().hex}@mail.example.org", "Help")

    missing = await post_inbound_parse(hooks, fields)
    assert missing.status_code == 401, missing.text
    wrong_query = await post_inbound_parse(hooks, fields, query="token=not-the-token")
    assert wrong_query.status_code == 403, wrong_query.text
    wrong_password = await post_inbound_parse(
        hooks, fields, auth=httpx.BasicAuth("sendgrid", "not-the-token")
    )
    assert wrong_password.status_code == 403, wrong_password.text
    assert await conversation_with(tenant, customer) is None


async def test_sendgrid_inbound_parse_stores_an_inbound_email(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    support, customer = new_email("support"), new_email("jane")
    await own(hooks, tenant, support)
    first_id = f"{uuid.uuid4().hex}@mail.example.org"
    first = parse_fields(customer, support, first_id, "Where is my parcel?")
    second = parse_fields(customer, support, f"{uuid.uuid4().hex}@mail.example.org", "Again")

    by_query = await post_inbound_parse(hooks, first, query=f"token={hooks.inbound_token}")
    assert by_query.status_code == 200, by_query.text
    by_password = await post_inbound_parse(
        hooks, second, auth=httpx.BasicAuth("sendgrid", hooks.inbound_token)
    )
    assert by_password.status_code == 200, by_password.text
    # SendGrid posts the first one again: stored once.
    again = await post_inbound_parse(hooks, first, query=f"token={hooks.inbound_token}")
    assert again.status_code == 200, again.text

    conversation = await conversation_with(tenant, customer)
    assert conversation is not None
    assert conversation["participants"] == sorted([support, customer])
    stored = messages_of(conversation)
    assert [(m["channel"], m["direction"], m["status"], m["from"], m["to"]) for m in stored] == [
        ("EMAIL", "INBOUND", "RECEIVED", customer, support)
    ] * 2
    assert [m["metadata"] for m in stored] == [
        {"subject": "Where is my parcel?"},
        {"subject": "Again"},
    ]
    assert stored[0]["body"] == "My parcel never arrived.\n"
    assert stored[0]["providerMessageId"] == first_id
    assert stored[0]["attachments"] == []
    assert parse_time(stored[0]["sentAt"]) == datetime(2024, 11, 1, 14, 3, 5, tzinfo=UTC)


async def test_sendgrid_inbound_parse_with_an_attachment_releases_the_upload(
    hooks: Hooks,
) -> None:
    """Inbound Parse posts attachments as file parts. The message is stored (attachments are
    not kept), and the spooled upload must be closed: an unclosed one is a ResourceWarning,
    which fails this test (warnings are errors), and a leaked temporary file in production."""
    tenant = await hooks_tenant(hooks)
    support, customer = new_email("support"), new_email("jane")
    await own(hooks, tenant, support)
    fields = parse_fields(customer, support, f"{uuid.uuid4().hex}@mail.example.org", "Photo")
    uploads = [("attachment1", "receipt.txt", b"tracking number 42", "text/plain")]

    response = await post_inbound_parse(
        hooks, fields, uploads=uploads, query=f"token={hooks.inbound_token}"
    )
    assert response.status_code == 200, response.text
    conversation = await conversation_with(tenant, customer)
    assert conversation is not None
    [stored] = messages_of(conversation)
    assert (stored["channel"], stored["direction"]) == ("EMAIL", "INBOUND")
    assert stored["attachments"] == []
    # Any upload the request left open is finalized (and reported) now, inside this test.
    gc.collect()


# --- generic JSON webhooks (Standard Webhooks) ----------------------------------------------


def standard_headers(
    secret: str, body: bytes, *, timestamp: int | None = None, msg_id: str | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    webhook_id = msg_id or "msg_" + uuid.uuid4().hex
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": standard_webhook_sign(secret, webhook_id, stamp, body),
    }


async def post_generic(
    hooks: Hooks, kind: str, body: bytes, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    if headers is None:
        headers = standard_headers(hooks.generic_secret, body)
    return await hooks.http.post(
        f"{hooks.base_url}/api/webhooks/{kind}",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )


def generic_sms(sender: str, to: str, **extra: Any) -> dict[str, Any]:
    return {
        "from": sender,
        "to": to,
        "type": "sms",
        "messaging_provider_id": "gen-" + uuid.uuid4().hex,
        "body": "generic hello",
        "attachments": None,
        "timestamp": "2024-11-01T15:03:05+01:00",
        **extra,
    }


def encoded(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def test_generic_sms_and_mms_are_stored_with_the_sender_timestamp(hooks: Hooks) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    sms = generic_sms(theirs, ours)
    media = ["https://media.example.com/cat.png"]
    mms = generic_sms(
        theirs, ours, type="mms", attachments=media, body=None, timestamp="2024-11-02T08:00:00Z"
    )
    for payload in (sms, mms):
        response = await post_generic(hooks, "sms", encoded(payload))
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}

    conversation = await conversation_with(tenant, theirs)
    assert conversation is not None
    stored = messages_of(conversation)
    assert [(m["channel"], m["direction"], m["status"]) for m in stored] == [
        ("SMS", "INBOUND", "RECEIVED"),
        ("MMS", "INBOUND", "RECEIVED"),
    ]
    assert [m["providerMessageId"] for m in stored] == [
        sms["messaging_provider_id"],
        mms["messaging_provider_id"],
    ]
    assert [(m["body"], m["attachments"]) for m in stored] == [("generic hello", []), (None, media)]
    assert [parse_time(m["sentAt"]) for m in stored] == [
        datetime(2024, 11, 1, 14, 3, 5, tzinfo=UTC),
        datetime(2024, 11, 2, 8, 0, 0, tzinfo=UTC),
    ]


async def test_generic_email_is_stored_with_the_sender_timestamp(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    inbox, sender = new_email("inbox"), new_email("alice")
    await own(hooks, tenant, inbox)
    payload = {
        "from": f"Alice <{sender}>",
        "to": inbox,
        "xillio_id": "x-" + uuid.uuid4().hex,
        "body": "<p>Hello <b>there</b></p>",
        "attachments": ["https://files.example.com/invoice.pdf"],
        "timestamp": "2024-11-01T14:03:05.250Z",
    }
    response = await post_generic(hooks, "email", encoded(payload))
    assert response.status_code == 200, response.text

    conversation = await conversation_with(tenant, sender)
    assert conversation is not None
    [stored] = messages_of(conversation)
    assert (stored["channel"], stored["direction"], stored["status"]) == (
        "EMAIL",
        "INBOUND",
        "RECEIVED",
    )
    assert (stored["from"], stored["to"]) == (sender, inbox)
    assert stored["body"] == payload["body"]
    assert stored["attachments"] == payload["attachments"]
    assert stored["providerMessageId"] == payload["xillio_id"]
    assert parse_time(stored["sentAt"]) == datetime(2024, 11, 1, 14, 3, 5, 250_000, tzinfo=UTC)


async def test_generic_refuses_replays_wrong_secrets_and_missing_signatures(
    hooks: Hooks,
) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    payload = generic_sms(theirs, ours)
    body = encoded(payload)

    # A request captured ten minutes ago, replayed byte for byte.
    captured = standard_headers(hooks.generic_secret, body, timestamp=int(time.time()) - 600)
    replayed = await post_generic(hooks, "sms", body, captured)
    assert replayed.status_code == 403, replayed.text

    other_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    wrong = await post_generic(hooks, "sms", body, standard_headers(other_secret, body))
    assert wrong.status_code == 403, wrong.text

    headers = standard_headers(hooks.generic_secret, body)
    tampered = await post_generic(hooks, "sms", body.replace(b"generic hello", b"pay me"), headers)
    assert tampered.status_code == 403, tampered.text

    missing = await post_generic(
        hooks, "sms", body, {k: v for k, v in headers.items() if k != "webhook-signature"}
    )
    assert missing.status_code == 401, missing.text
    email_missing = await post_generic(hooks, "email", b"{}", {})
    assert email_missing.status_code == 401, email_missing.text

    assert await conversation_with(tenant, theirs) is None
    # Nothing was used up: the genuine request is still accepted, here signed during a secret
    # rotation (several signatures, one of them valid).
    rotating = standard_headers(hooks.generic_secret, body)
    stale_signature = standard_headers(other_secret, body, msg_id=rotating["webhook-id"])
    rotating["webhook-signature"] = (
        f"{stale_signature['webhook-signature']} {rotating['webhook-signature']}"
    )
    genuine = await post_generic(hooks, "sms", body, rotating)
    assert genuine.status_code == 200, genuine.text
    assert await conversation_with(tenant, theirs) is not None


async def test_generic_malformed_payload_is_400_naming_the_problem(hooks: Hooks) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    valid = generic_sms(theirs, ours)
    cases: list[tuple[str, bytes, str]] = [
        ("sms", b'{"from": "+14155550100", ', "not valid JSON"),
        ("sms", b"", "empty"),
        ("sms", b"[1, 2]", "JSON object"),
        (
            "sms",
            encoded({k: v for k, v in valid.items() if k != "messaging_provider_id"}),
            "messaging_provider_id",
        ),
        ("sms", encoded({**valid, "type": "fax"}), "type"),
        ("sms", encoded({**valid, "from": "whatsapp:+14155550100"}), "from"),
        ("sms", encoded({**valid, "timestamp": "yesterday"}), "timestamp"),
        ("sms", encoded({**valid, "attachments": ["https://x.example/a.png"]}), "attachments"),
        ("email", encoded({"from": "a@example.com", "to": "b@example.com"}), "xillio_id"),
    ]
    for kind, body, problem in cases:
        response = await post_generic(hooks, kind, body)
        assert response.status_code == 400, (body, response.text)
        assert problem in response.json()["error"], (body, response.text)
    assert await conversation_with(tenant, theirs) is None


async def test_generic_duplicate_provider_id_is_stored_once(hooks: Hooks) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    payload = generic_sms(theirs, ours)
    first = await post_generic(hooks, "sms", encoded(payload))
    assert first.status_code == 200, first.text
    # A new delivery (new webhook-id, new signature) of the same message, then one racing pair.
    second = await post_generic(hooks, "sms", encoded(payload))
    assert second.status_code == 200, second.text
    racing = await asyncio.gather(*(post_generic(hooks, "sms", encoded(payload)) for _ in range(4)))
    assert all(r.status_code == 200 for r in racing), [r.text for r in racing]

    conversation = await conversation_with(tenant, theirs)
    assert conversation is not None
    assert conversation["messageCount"] == 1
    assert await stored_with_provider_id(hooks.container, payload["messaging_provider_id"]) == 1


# --- our own failures -----------------------------------------------------------------------


async def _broken(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("storage exploded")


@contextlib.contextmanager
def storage_broken(hooks: Hooks, *methods: str) -> Iterator[None]:
    """The webhook repository's ``methods`` raise while the block runs."""
    with pytest.MonkeyPatch.context() as patch:
        for name in methods:
            patch.setattr(hooks.container.webhook_repo, name, _broken)
        yield


async def test_a_report_we_fail_to_apply_is_kept_raw_for_replay(hooks: Hooks) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    params = status_params(hooks, message, "delivered")
    query = f"mid={raw_id(message['id'])}"

    with storage_broken(hooks, "apply_reports"):
        response = await post_twilio(hooks, "/webhooks/twilio/status", params, query=query)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "kept for replay"

    [row] = [r for r in await receipts(hooks.container, "failed") if r["id"] == answer["receipt"]]
    assert row["source"] == "twilio"
    assert row["payload"] == urlencode(params)
    assert row["content_type"] == FORM
    assert "RuntimeError" in row["error"]
    assert (await fetch(tenant, message["id"]))["status"] == "SENT"

    # Replaying the kept payload (here: the provider's own redelivery) applies it.
    replay = await post_twilio(hooks, "/webhooks/twilio/status", params, query=query)
    assert replay.status_code == 204, replay.text
    assert (await fetch(tenant, message["id"]))["status"] == "DELIVERED"


async def test_replay_receipts_applies_a_report_kept_while_storage_failed_once(
    hooks: Hooks, tmp_path: Path
) -> None:
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    query = f"mid={raw_id(message['id'])}"
    with storage_broken(hooks, "apply_reports"):
        response = await post_twilio(
            hooks,
            "/webhooks/twilio/status",
            status_params(hooks, message, "delivered"),
            query=query,
        )
    assert response.status_code == 202, response.text
    receipt = response.json()["receipt"]
    [row] = [r for r in await receipts(hooks.container, "failed") if r["id"] == receipt]
    # Verified, so kept with what replaying it takes.
    assert (row["route"], row["query"], row["replayed_at"]) == ("twilio_status", query, None)

    # The command, on the gateway's own database, while the gateway runs.
    env = cli_env(hooks.settings.data_dir, hooks.settings.database_url)
    for expected in ("applied", "duplicate"):
        proc = await asyncio.to_thread(
            run_cli, "replay-receipts", "--id", str(receipt), env=env, cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"receipt {receipt} twilio received " in proc.stdout
        assert proc.stdout.splitlines()[0].endswith(f": {expected}"), proc.stdout
    found = await fetch(tenant, message["id"])
    assert found["status"] == "DELIVERED"
    assert kinds(found).count(("delivery_receipt", "DELIVERED")) == 1
    [row] = [r for r in await receipts(hooks.container, "failed") if r["id"] == receipt]
    assert row["replayed_at"] is not None


async def test_an_inbound_message_we_fail_to_store_is_kept_raw(hooks: Hooks) -> None:
    tenant, ours, theirs = await tenant_with_a_number(hooks)
    body = encoded(generic_sms(theirs, ours))

    with storage_broken(hooks, "receive"):
        response = await post_generic(hooks, "sms", body)
    assert response.status_code == 202, response.text
    receipt = response.json()["receipt"]
    [row] = [r for r in await receipts(hooks.container, "failed") if r["id"] == receipt]
    assert (row["source"], row["payload"]) == ("generic", body.decode())
    assert await conversation_with(tenant, theirs) is None

    retried = await post_generic(hooks, "sms", body)
    assert retried.status_code == 200, retried.text
    assert await conversation_with(tenant, theirs) is not None


async def test_with_nowhere_to_keep_a_payload_the_provider_is_asked_to_deliver_it_again(
    hooks: Hooks,
) -> None:
    """The database takes neither the report nor the raw payload, and there is no spool
    (no Redis): 503 with Retry-After, so that the provider delivers it again."""
    tenant = await hooks_tenant(hooks)
    message = await sent_sms(tenant)
    params = status_params(hooks, message, "delivered")
    query = f"mid={raw_id(message['id'])}"

    with storage_broken(hooks, "apply_reports", "keep_raw"):
        response = await post_twilio(hooks, "/webhooks/twilio/status", params, query=query)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert "deliver it again" in response.json()["error"]
    assert (await fetch(tenant, message["id"]))["status"] == "SENT"

    again = await post_twilio(hooks, "/webhooks/twilio/status", params, query=query)
    assert again.status_code == 204, again.text
    assert (await fetch(tenant, message["id"]))["status"] == "DELIVERED"


async def test_a_twilio_inbound_message_kept_for_replay_is_answered_with_twiml(
    hooks: Hooks,
) -> None:
    _, ours, theirs = await tenant_with_a_number(hooks)
    with storage_broken(hooks, "receive"):
        response = await post_twilio(
            hooks, "/webhooks/twilio/messages", inbound_params(theirs, ours, "Hello?")
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response>" in response.text


# --- end to end: real adapters, mounted sandbox, sandbox-signed events ----------------------


async def test_email_reaches_delivered_through_sandbox_signed_events(
    gateway: RunningGateway,
) -> None:
    container = gateway.container
    # The gateway verifies with the sandbox's own key, not one configured by hand.
    assert container.settings.sendgrid_webhook_public_key is None
    assert container.sandbox_config is not None
    assert container.sendgrid_public_key == container.sandbox_config.public_key

    tenant = await new_tenant(gateway.base_url, container, gateway.http)
    message_id = await send(
        tenant,
        {
            "channel": "EMAIL",
            "from": new_email("news"),
            "to": new_email("reader"),
            "body": "Your weekly digest",
            "metadata": {"subject": "Digest"},
        },
    )
    done = await wait_for(tenant, message_id, lambda m: m["status"] == "DELIVERED", "DELIVERED")
    assert done["provider"] == "sendgrid"
    # The events may overtake the worker's record of the hand-over; either way each applies once.
    assert kinds(done)[:2] == [("accepted", "QUEUED"), ("attempt", "SENDING")]
    assert kinds(done).count(("delivery_receipt", "DELIVERED")) == 1
    assert [e["detail"].get("providerEvent") for e in done["events"] if e["detail"]].count(
        "processed"
    ) == 1
    receipt = next(e for e in done["events"] if e["kind"] == "delivery_receipt")
    assert receipt["status"] == "DELIVERED"
    assert receipt["detail"]["provider"] == "sendgrid"
    assert receipt["detail"]["providerMessageId"] == done["providerMessageId"]

    sandbox = container.sandbox
    assert sandbox is not None

    def posted() -> list[tuple[int | None, list[str]]]:
        return [
            (c["http_status"], c["events"])
            for c in sandbox.callbacks
            if c["vendor"] == "sendgrid" and c["provider_id"] == done["providerMessageId"]
        ]

    # The sandbox records our answer after the gateway has committed: wait for it (bounded).
    for _ in range(POLL_ATTEMPTS):
        if posted() and posted()[0][0] is not None:
            break
        await asyncio.sleep(POLL_DELAY)
    assert posted() == [(204, ["processed", "delivered"])]


async def test_email_bounce_through_sandbox_signed_events(gateway: RunningGateway) -> None:
    tenant = await new_tenant(gateway.base_url, gateway.container, gateway.http)
    bouncing = new_email("gone")
    control = f"{gateway.base_url}/sandbox/control/config"
    before = (await gateway.http.get(control)).json()["bounce_recipients"]
    changed = await gateway.http.post(control, json={"bounce_recipients": [*before, bouncing]})
    assert changed.status_code == 200, changed.text
    try:
        message_id = await send(
            tenant,
            {"channel": "EMAIL", "from": new_email("news"), "to": bouncing, "body": "Hi"},
        )
        failed = await wait_for(tenant, message_id, lambda m: m["status"] == "FAILED", "FAILED")
    finally:
        restored = await gateway.http.post(control, json={"bounce_recipients": before})
        assert restored.status_code == 200, restored.text
    assert failed["error"]["code"] == "5.1.1"
    assert "does not exist" in failed["error"]["description"]
    assert kinds(failed)[-1] == ("delivery_receipt", "FAILED")
