"""Suppressions the providers' word leaves, over real HTTP, on PostgreSQL and SQLite.

SendGrid's signed Event Webhook reports a hard bounce, a spam report or an unsubscribe of one
of our messages: its address is suppressed for the account that sent it. Twilio refuses a send
with 21610 (the recipient texted STOP to that sender): the number is suppressed for that
sender. Either way the next send is refused at accept and a waiting one is canceled at claim.

Every test makes its own account, addresses and numbers (``new_email``, ``new_number``): the
module's sandbox sees every test's sends. The tests sign the events themselves on the module's
gateway (its sandbox never reports); the last one lets the session gateway's sandbox play the
unsubscribing recipient and send the signed events.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from persistence.suppressions import SUPPRESSIONS
from tests.conftest import GraphQLClient, RunningGateway
from tests.integration.test_batch_and_rules import accepted, wait_for_status
from tests.integration.test_batch_and_rules import send as send_result
from tests.integration.test_webhooks import (
    Hooks,
    Tenant,
    fetch,
    hooks,
    hooks_tenant,
    kinds,
    new_email,
    new_number,
    post_events,
    send,
    sent_email,
    sg_event,
    wait_for,
    webhook_count,
)

__all__ = ["hooks"]  # the module's gateway, shared with the webhook tests' helpers

LIST = """
query List($address: String) {
  suppressions(first: 10, address: $address) {
    edges { node { address channel from reason detail } }
  }
}
"""


async def suppressions_of(tenant: Tenant) -> list[dict[str, Any]]:
    data = await tenant.client.execute(LIST, {})
    return [edge["node"] for edge in data["suppressions"]["edges"]]


async def stored_for(hooks: Hooks, address: str) -> int:
    """Suppressions of ``address`` in the database, whichever account they belong to."""
    async with hooks.container.engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(SUPPRESSIONS).where(SUPPRESSIONS.c.address == address)
        )
    return int(count or 0)


def mail_to(address: str, **extra: Any) -> dict[str, Any]:
    return {
        "channel": "EMAIL",
        "from": new_email("news"),
        "to": address,
        "body": "Once more",
        "metadata": {"subject": "Again"},
        **extra,
    }


@pytest.fixture
async def tenant(hooks: Hooks) -> Tenant:
    """An account of its own on the module's gateway."""
    return await hooks_tenant(hooks)


async def assert_not_suppressed(hooks: Hooks, tenant: Tenant, address: str) -> None:
    """No account has ``address`` suppressed, and ``tenant``'s mail to it is accepted."""
    assert await stored_for(hooks, address) == 0
    await send(tenant, mail_to(address))


async def assert_suppressed_by_event(
    tenant: Tenant, address: str, reason: str, provider: str, event: str
) -> dict[str, Any]:
    """``address`` is suppressed for the account once, for ``reason``, by ``provider``'s
    ``event``, and any mail of the account to it is refused at accept; the entry."""
    [entry] = await suppressions_of(tenant)
    assert (entry["address"], entry["channel"], entry["from"], entry["reason"]) == (
        address,
        "EMAIL",
        None,
        reason,
    )
    assert entry["detail"]["provider"] == provider
    assert entry["detail"]["providerEvent"] == event
    # Refused at accept, whichever sender of the account writes to it.
    refused = await send_result(tenant.client, mail_to(address))
    assert refused["__typename"] == "RecipientSuppressed", refused
    assert refused["reason"] == reason
    return entry


HARD_BOUNCE = {
    "type": "bounce",
    "status": "5.1.1",
    "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
    "bounce_classification": "Invalid Address",
}


@pytest.mark.parametrize(
    ("event", "extra", "with_mid", "reason"),
    [
        ("bounce", HARD_BOUNCE, True, "HARD_BOUNCE"),
        ("spamreport", {}, True, "SPAM_REPORT"),
        ("unsubscribe", {}, True, "UNSUBSCRIBE"),
        # Found by SendGrid's message id alone, as any status report can be.
        ("group_unsubscribe", {"asm_group_id": 42}, False, "UNSUBSCRIBE"),
    ],
)
async def test_a_sendgrid_event_suppresses_the_address_for_the_account_that_sent_to_it(
    hooks: Hooks, tenant: Tenant, event: str, extra: dict[str, Any], with_mid: bool, reason: str
) -> None:
    message = await sent_email(tenant)
    address = message["to"]
    response = await post_events(hooks, [sg_event(message, event, with_mid=with_mid, **extra)])
    assert response.status_code == 204, response.text

    entry = await assert_suppressed_by_event(tenant, address, reason, "sendgrid", event)
    assert entry["detail"]["messageId"] == message["id"]
    # Another account's mail to the address is none of this one's business.
    other = await hooks_tenant(hooks)
    await send(other, mail_to(address))


async def test_a_blocked_bounce_fails_the_message_and_suppresses_nothing(
    hooks: Hooks, tenant: Tenant
) -> None:
    message = await sent_email(tenant)
    blocked = sg_event(
        message, "bounce", type="blocked", status="4.7.1", reason="421 try again later"
    )
    response = await post_events(hooks, [blocked])
    assert response.status_code == 204, response.text
    found = await fetch(tenant, message["id"])
    assert found["status"] == "FAILED" and found["error"]["permanent"] is False

    assert await suppressions_of(tenant) == []
    await assert_not_suppressed(hooks, tenant, message["to"])


async def test_a_redelivered_event_suppresses_once_and_the_first_reason_stays(
    hooks: Hooks, tenant: Tenant
) -> None:
    message = await sent_email(tenant)
    spam = sg_event(message, "spamreport")
    for batch in ([spam], [spam], [spam, spam]):
        response = await post_events(hooks, batch)
        assert response.is_success, response.text
    # Another event of the same recipient finds it suppressed already.
    unsubscribed = await post_events(hooks, [sg_event(message, "unsubscribe")])
    assert unsubscribed.status_code == 204, unsubscribed.text

    [entry] = await suppressions_of(tenant)
    assert entry["reason"] == "SPAM_REPORT"
    assert await stored_for(hooks, message["to"]) == 1
    # The report itself was applied once too, forward only as ever.
    found = await fetch(tenant, message["id"])
    assert found["status"] == "SENT"
    assert kinds(found).count(("engagement", "SENT")) == 2


async def test_an_event_for_an_unknown_message_suppresses_nothing(
    hooks: Hooks, tenant: Tenant
) -> None:
    message = await sent_email(tenant)
    stranger = {
        **message,
        "id": "msg_" + uuid.uuid4().hex,
        "providerMessageId": "unknown" + uuid.uuid4().hex[:12],
    }
    unmatched = await webhook_count(hooks, "sendgrid", "unmatched")
    response = await post_events(hooks, [sg_event(stranger, "spamreport")])
    assert response.status_code == 204, response.text
    assert await webhook_count(hooks, "sendgrid", "unmatched") == unmatched + 1
    await assert_not_suppressed(hooks, tenant, message["to"])


async def test_a_waiting_message_to_a_reported_address_is_canceled_not_sent(
    hooks: Hooks, tenant: Tenant
) -> None:
    message = await sent_email(tenant)
    address = message["to"]
    send_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    waiting = await send(tenant, mail_to(address, sendAt=send_at))
    response = await post_events(hooks, [sg_event(message, "unsubscribe")])
    assert response.status_code == 204, response.text

    found = await wait_for(tenant, waiting, lambda m: m["status"] == "CANCELED", "CANCELED")
    assert found["error"] == {
        "code": "RECIPIENT_SUPPRESSED",
        "description": "UNSUBSCRIBE",
        "permanent": True,
    }
    assert kinds(found)[-1] == ("canceled", "CANCELED")
    # Only the first message ever reached the provider.
    sandbox: Any = hooks.container.sandbox
    assert len([r for r in sandbox.requests if r.get("to") == address]) == 1


async def test_a_twilio_refusal_of_an_unsubscribed_recipient_suppresses_it_for_that_sender(
    hooks: Hooks, tenant: Tenant
) -> None:
    sender, other_sender, number = new_number(), new_number(), new_number()
    sandbox: Any = hooks.container.sandbox
    sandbox.config.unsubscribed_recipients.add(number)
    try:
        message_id = await send(
            tenant, {"channel": "SMS", "from": sender, "to": number, "body": "Hi"}
        )
        found = await wait_for(tenant, message_id, lambda m: m["status"] == "FAILED", "FAILED")
    finally:
        sandbox.config.unsubscribed_recipients.discard(number)
    assert found["error"] == {
        "code": "21610",
        "description": "Attempt to send to unsubscribed recipient",
        "permanent": True,
    }
    last = found["events"][-1]
    assert (last["kind"], last["detail"]["recipientUnsubscribed"]) == ("dead_lettered", True)

    [entry] = await suppressions_of(tenant)
    assert entry == {
        "address": number,
        "channel": None,
        "from": sender,
        "reason": "PROVIDER_UNSUBSCRIBED",
        "detail": {"provider": "twilio", "code": "21610", "messageId": message_id},
    }
    # That sender may no longer write to the number, by SMS or MMS; nothing more was sent.
    for again in (
        {"channel": "SMS", "from": sender, "to": number, "body": "Again"},
        {
            "channel": "MMS",
            "from": sender,
            "to": number,
            "attachments": ["https://example.com/a.png"],
        },
    ):
        refused = await send_result(tenant.client, again)
        assert refused["__typename"] == "RecipientSuppressed", refused
        assert refused["reason"] == "PROVIDER_UNSUBSCRIBED"
    assert len([r for r in sandbox.requests if r.get("to") == number]) == 1
    # The carrier's STOP answered one sender number; another may still write.
    await send(tenant, {"channel": "SMS", "from": other_sender, "to": number, "body": "Hello"})


async def test_the_sandbox_plays_an_unsubscribe_and_the_address_is_suppressed(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    # The session's gateway, whose sandbox reports on its messages itself, signed.
    address = new_email("leaver")
    sandbox: Any = gateway.container.sandbox
    sandbox.config.unsubscribed_recipients.add(address)
    try:
        message = accepted(await send_result(client, mail_to(address)))
        found = await wait_for_status(client, message["id"], "DELIVERED")
        for _ in range(400):
            entries = (await client.execute(LIST, {"address": address}))["suppressions"]["edges"]
            if entries:
                break
            await asyncio.sleep(0.05)
    finally:
        sandbox.config.unsubscribed_recipients.discard(address)
    [entry] = [edge["node"] for edge in entries]
    assert (entry["reason"], entry["detail"]["providerEvent"]) == ("UNSUBSCRIBE", "unsubscribe")
    assert found["status"] == "DELIVERED"
    refused = await send_result(client, mail_to(address))
    assert refused["__typename"] == "RecipientSuppressed", refused
