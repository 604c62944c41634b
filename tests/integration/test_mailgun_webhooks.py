"""Mailgun through a real gateway: e-mail sent by the Mailgun adapter to the mounted sandbox,
its signed event webhooks, inbound e-mail from Routes, and the posts refused.

The module's gateway sends e-mail through Mailgun only (``EMAIL_PROVIDERS=mailgun``) and verifies
with the mounted sandbox's signing key, not one configured by hand. The sandbox waits an hour
before reporting, so nothing but the test reports on a message, except where a test turns
Mailgun's own callback delay down.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from gateway.domain.channels import Channel
from gateway.entry.bootstrap.shared import build_registry
from gateway.settings import Settings
from harness.http import loopback_client
from providers.http import ProviderSession
from providers.signatures import MAILGUN_TOLERANCE, mailgun_signature
from tests.conftest import GatewayParts, backend_settings, serve
from tests.integration.test_batch_and_rules import send as send_result
from tests.integration.test_provider_suppressions import (
    assert_suppressed_by_event,
    mail_to,
    suppressions_of,
)
from tests.integration.test_webhooks import (
    Tenant,
    conversation_with,
    fetch,
    kinds,
    messages_of,
    new_email,
    new_tenant,
    raw_id,
    send,
    sent_email,
    wait_for,
)


@dataclass
class MailgunGateway:
    base_url: str
    container: GatewayParts
    http: httpx.AsyncClient

    @property
    def key(self) -> str:
        key: str | None = self.container.mailgun_signing_key
        assert key is not None
        return key

    async def tenant(self) -> Tenant:
        return await new_tenant(self.base_url, self.container, self.http)

    @contextmanager
    def sandbox_reporting(self, **recipients: list[str]) -> Iterator[None]:
        """Within the block the sandbox reports on Mailgun messages at once, and bounces or
        unsubscribes the recipients listed (``bounce_recipients=[...]``, ...); after it, the
        sandbox waits again and treats every recipient alike."""
        sandbox = self.container.sandbox
        sandbox.configure({"vendor": "mailgun", "callback_delay": 0.05, **recipients})
        try:
            yield
        finally:
            reset = {"vendor": "mailgun", "callback_delay": None, **dict.fromkeys(recipients)}
            sandbox.configure(reset)


@pytest.fixture(scope="module", params=["postgresql"])
async def mailgun_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MailgunGateway]:
    _, settings = backend_settings(request, tmp_path_factory, "mailgun")
    settings.email_providers = "mailgun"
    settings.sandbox_callback_delay = 3600.0
    async with serve(settings) as (base_url, container), loopback_client(timeout=30) as http:
        yield MailgunGateway(base_url, container, http)


def signature(key: str, *, age: float = 0.0) -> dict[str, str]:
    timestamp, token = str(int(time.time() - age)), secrets.token_hex(25)
    return {
        "timestamp": timestamp,
        "token": token,
        "signature": mailgun_signature(key, timestamp, token),
    }


def mg_event(
    message: dict[str, Any], name: str, *, with_mid: bool = True, **extra: Any
) -> dict[str, Any]:
    return {
        "id": secrets.token_urlsafe(16),
        "event": name,
        "timestamp": time.time(),
        "recipient": message["to"],
        "message": {"headers": {"message-id": message["providerMessageId"]}},
        "user-variables": {"message_id": raw_id(message["id"])} if with_mid else {},
        **extra,
    }


def failure(message: dict[str, Any], severity: str, code: int, text: str) -> dict[str, Any]:
    delivery = {"code": code, "message": text}
    return mg_event(message, "failed", severity=severity, **{"delivery-status": delivery})


async def post_event(
    gw: MailgunGateway, data: dict[str, Any], signed: dict[str, str] | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"event-data": data}
    body["signature"] = signed if signed is not None else signature(gw.key)
    return await gw.http.post(
        gw.base_url + "/webhooks/mailgun/events",
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )


# --- wiring ---------------------------------------------------------------------------------


async def test_email_fails_over_from_sendgrid_to_mailgun_in_the_order_given() -> None:
    settings = Settings(email_providers="sendgrid, mailgun", mailgun_base_url="http://127.0.0.1:9")
    http = ProviderSession.from_settings(settings)
    registry = build_registry(settings, http)
    try:
        names = [provider.name for provider, _ in registry.candidates(Channel.EMAIL)]
        assert names == ["sendgrid", "mailgun"]
    finally:
        await registry.aclose()
        await http.aclose()


# --- end to end through the mounted sandbox --------------------------------------------------


async def test_email_through_mailgun_is_delivered_or_bounces_by_sandbox_signed_events(
    mailgun_gateway: MailgunGateway,
) -> None:
    gw = mailgun_gateway
    assert gw.container.settings.mailgun_webhook_signing_key is None
    assert gw.key == gw.container.sandbox_config.mailgun_signing_key
    sandbox = gw.container.sandbox
    tenant = await gw.tenant()
    bouncing = new_email("gone")
    with gw.sandbox_reporting(bounce_recipients=[bouncing]):
        delivered_id = await send(
            tenant,
            {
                "channel": "EMAIL",
                "from": new_email("news"),
                "to": new_email("reader"),
                "body": "<p>Your <b>weekly</b> digest</p>",
                "metadata": {"subject": "Digest"},
            },
        )
        bounced_id = await send(
            tenant, {"channel": "EMAIL", "from": new_email("news"), "to": bouncing, "body": "Hi"}
        )
        done = await wait_for(
            tenant, delivered_id, lambda m: m["status"] == "DELIVERED", "DELIVERED"
        )
        failed = await wait_for(tenant, bounced_id, lambda m: m["status"] == "FAILED", "FAILED")
    assert done["provider"] == "mailgun"
    assert "<" not in done["providerMessageId"]
    assert kinds(done).count(("delivery_receipt", "DELIVERED")) == 1
    receipt = next(e for e in done["events"] if e["kind"] == "delivery_receipt")
    assert receipt["detail"]["provider"] == "mailgun"
    assert receipt["detail"]["providerMessageId"] == done["providerMessageId"]
    [request] = [r for r in sandbox.requests if r["provider_id"] == done["providerMessageId"]]
    assert request["html"] == "<p>Your <b>weekly</b> digest</p>"
    assert request["body"] == "Your weekly digest"
    assert failed["error"] == {
        "code": "550",
        "description": "5.1.1 The email account that you tried to reach does not exist.",
        "permanent": True,
    }
    assert kinds(failed)[-1] == ("delivery_receipt", "FAILED")


# --- event webhooks --------------------------------------------------------------------------


async def test_delivered_applies_once_by_mailgun_id_alone_and_never_moves_back(
    mailgun_gateway: MailgunGateway,
) -> None:
    gw = mailgun_gateway
    tenant = await gw.tenant()
    message = await sent_email(tenant)
    delivered = mg_event(message, "delivered", with_mid=False)
    response = await post_event(gw, delivered)
    assert response.status_code == 200, response.text
    again = await post_event(gw, delivered)  # Mailgun delivers again on any doubt
    assert again.status_code == 200, again.text
    late = await post_event(gw, mg_event(message, "failed", severity="permanent"))
    assert late.status_code == 200, late.text

    found = await fetch(tenant, message["id"])
    assert found["status"] == "DELIVERED"
    assert kinds(found).count(("delivery_receipt", "DELIVERED")) == 1


async def test_permanent_failure_fails_and_temporary_one_changes_nothing(
    mailgun_gateway: MailgunGateway,
) -> None:
    gw = mailgun_gateway
    tenant = await gw.tenant()
    message = await sent_email(tenant)
    temporary = failure(message, "temporary", 452, "4.2.2 Over quota")
    assert (await post_event(gw, temporary)).status_code == 200
    found = await fetch(tenant, message["id"])
    assert found["status"] == "SENT"
    assert kinds(found)[-1] == ("deferred", "SENT")
    assert found["events"][-1]["detail"]["response"] == "4.2.2 Over quota"

    permanent = failure(message, "permanent", 550, "5.1.1 No such mailbox")
    assert (await post_event(gw, permanent)).status_code == 200
    found = await fetch(tenant, message["id"])
    assert found["status"] == "FAILED"
    assert found["error"] == {
        "code": "550",
        "description": "5.1.1 No such mailbox",
        "permanent": True,
    }


async def test_missing_wrong_stale_and_moved_signatures_change_nothing(
    mailgun_gateway: MailgunGateway,
) -> None:
    gw = mailgun_gateway
    tenant = await gw.tenant()
    message = await sent_email(tenant)
    delivered = mg_event(message, "delivered")

    unsigned = await gw.http.post(
        gw.base_url + "/webhooks/mailgun/events", content=orjson.dumps({"event-data": delivered})
    )
    assert unsigned.status_code == 401, unsigned.text
    assert (await post_event(gw, delivered, signature("not-the-key"))).status_code == 403
    stale = signature(gw.key, age=MAILGUN_TOLERANCE + 60)
    assert (await post_event(gw, delivered, stale)).status_code == 403
    # A genuine signature seen with one payload cannot carry another.
    seen = signature(gw.key)
    engaged = await post_event(gw, mg_event(message, "opened"), seen)
    assert engaged.status_code == 200, engaged.text
    assert (await post_event(gw, delivered, seen)).status_code == 403

    after = await fetch(tenant, message["id"])
    assert after["status"] == "SENT"
    assert [e["kind"] for e in after["events"]] == [e["kind"] for e in message["events"]] + [
        "engagement"
    ]
    genuine = await post_event(gw, delivered)
    assert genuine.status_code == 200, genuine.text
    assert (await fetch(tenant, message["id"]))["status"] == "DELIVERED"


# --- inbound e-mail (Routes) -----------------------------------------------------------------


async def test_inbound_email_through_a_route_is_stored_and_unsigned_posts_are_refused(
    mailgun_gateway: MailgunGateway,
) -> None:
    gw = mailgun_gateway
    tenant = await gw.tenant()
    ours, sender = new_email("support"), new_email("customer")
    owner = await gw.container.webhook_repo.add_address(tenant.account_id, ours, datetime.now(UTC))
    assert owner == tenant.account_id
    headers = [["Message-Id", f"<{secrets.token_hex(8)}@mail.example.org>"], ["Subject", "Help"]]
    fields = {
        "recipient": ours,
        "sender": sender,
        "from": f"Customer <{sender}>",
        "subject": "Help",
        "body-plain": "My order has not arrived.",
        "message-headers": orjson.dumps(headers).decode(),
    }
    path = gw.base_url + "/webhooks/mailgun/inbound"
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    unsigned = await gw.http.post(path, content=urlencode(fields).encode(), headers=form)
    assert unsigned.status_code == 401, unsigned.text
    forged = {**fields, **signature("not-the-key")}
    wrong = await gw.http.post(path, content=urlencode(forged).encode(), headers=form)
    assert wrong.status_code == 403, wrong.text
    assert await conversation_with(tenant, sender) is None

    signed = urlencode({**fields, **signature(gw.key)}).encode()
    response = await gw.http.post(path, content=signed, headers=form)
    assert response.status_code == 200, response.text
    again = await gw.http.post(path, content=signed, headers=form)  # a redelivery
    assert again.status_code == 200, again.text

    conversation = await conversation_with(tenant, sender)
    assert conversation is not None
    [inbound] = messages_of(conversation)
    assert (inbound["direction"], inbound["status"]) == ("INBOUND", "RECEIVED")
    assert (inbound["from"], inbound["to"]) == (sender, ours)
    assert inbound["body"] == "My order has not arrived."
    assert inbound["metadata"] == {"subject": "Help"}


# --- suppressions ----------------------------------------------------------------------------

BOUNCE = {
    "severity": "permanent",
    "reason": "bounce",
    "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
}


@pytest.mark.parametrize(
    ("event", "extra", "with_mid", "reason"),
    [
        ("failed", BOUNCE, True, "HARD_BOUNCE"),
        ("complained", {}, True, "SPAM_REPORT"),
        # Found by Mailgun's message id alone, as any status report can be.
        ("unsubscribed", {}, False, "UNSUBSCRIBE"),
    ],
)
async def test_a_mailgun_event_suppresses_the_address_for_the_account_that_sent_to_it(
    mailgun_gateway: MailgunGateway,
    event: str,
    extra: dict[str, Any],
    with_mid: bool,
    reason: str,
) -> None:
    gw = mailgun_gateway
    tenant = await gw.tenant()
    message = await sent_email(tenant)
    address = message["to"]
    response = await post_event(gw, mg_event(message, event, with_mid=with_mid, **extra))
    assert response.status_code == 200, response.text

    await assert_suppressed_by_event(tenant, address, reason, "mailgun", event)
    # Another account's mail to the address is none of this one's business.
    await send(await gw.tenant(), mail_to(address))


@pytest.mark.parametrize(
    "extra",
    [
        {"severity": "temporary", "reason": "generic", "delivery-status": {"code": 452}},
        # Mailgun's own bounce list dropped it: policy, not the receiving server's word.
        {"severity": "permanent", "reason": "suppress-bounce", "delivery-status": {"code": 605}},
    ],
)
async def test_a_temporary_or_policy_failure_suppresses_nothing(
    mailgun_gateway: MailgunGateway, extra: dict[str, Any]
) -> None:
    gw = mailgun_gateway
    tenant = await gw.tenant()
    message = await sent_email(tenant)
    response = await post_event(gw, mg_event(message, "failed", **extra))
    assert response.status_code == 200, response.text
    found = await fetch(tenant, message["id"])
    assert found["status"] == ("SENT" if extra["severity"] == "temporary" else "FAILED")

    assert await suppressions_of(tenant) == []
    await send(tenant, mail_to(message["to"]))


async def test_a_redelivered_mailgun_event_suppresses_once(
    mailgun_gateway: MailgunGateway,
) -> None:
    gw = mailgun_gateway
    tenant = await gw.tenant()
    message = await sent_email(tenant)
    complained = mg_event(message, "complained")
    signed = signature(gw.key)
    # The same post twice (Mailgun's retry), then the same event under a fresh signature.
    for again in (signed, signed, signature(gw.key)):
        response = await post_event(gw, complained, again)
        assert response.status_code == 200, response.text
    unsubscribed = await post_event(gw, mg_event(message, "unsubscribed"))
    assert unsubscribed.status_code == 200, unsubscribed.text

    [entry] = await suppressions_of(tenant)
    assert entry["reason"] == "SPAM_REPORT"
    found = await fetch(tenant, message["id"])
    assert kinds(found).count(("engagement", "SENT")) == 2


async def test_the_sandbox_reports_an_unsubscribed_recipient_and_it_is_suppressed(
    mailgun_gateway: MailgunGateway,
) -> None:
    gw = mailgun_gateway
    tenant = await gw.tenant()
    address = new_email("leaving")
    with gw.sandbox_reporting(unsubscribed_recipients=[address]):
        message_id = await send(tenant, mail_to(address))
        found = await wait_for(
            tenant,
            message_id,
            lambda m: ("engagement", "DELIVERED") in kinds(m),
            "DELIVERED, then unsubscribed",
        )
    assert found["events"][-1]["detail"]["providerEvent"] == "unsubscribed"
    [entry] = await suppressions_of(tenant)
    assert (entry["address"], entry["reason"]) == (address, "UNSUBSCRIBE")
    refused = await send_result(tenant.client, mail_to(address))
    assert refused["__typename"] == "RecipientSuppressed", refused
