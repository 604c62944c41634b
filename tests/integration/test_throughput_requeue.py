"""A message Twilio failed unsent for its sender's throughput (30001 "Queue overflow", reported
by status callback after the API call succeeded), on PostgreSQL and SQLite: it goes back to
QUEUED and is sent again once the sender's pause is over, its attempt not counted, its audit
trail clean; the sender is paused in the shared pacer; a redelivered callback changes nothing.

The module's gateway waits an hour before its sandbox calls back, so the test is the provider
here, with callbacks signed by the official ``twilio`` library's ``RequestValidator``. The last
test lets the sandbox produce the overflow itself (``queue_overflow_recipients``) on the
session's gateway, with a number no other test sends to.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import update
from twilio.request_validator import RequestValidator

from gateway.domain.pacing import pacing_key
from harness.http import loopback_client
from persistence.rows import MESSAGES
from providers.signatures import TWILIO_SIGNATURE_HEADER
from tests.conftest import (
    GraphQLClient,
    RunningGateway,
    backend_settings,
    serve,
)
from tests.integration.test_webhooks import (
    FORM,
    POLL_ATTEMPTS,
    POLL_DELAY,
    Hooks,
    Tenant,
    hooks_tenant,
    kinds,
    new_number,
    new_tenant,
    raw_id,
    send,
    status_params,
)
from tests.integration.traffic import trail_problems

STATUS = "/webhooks/twilio/status"
#: Long enough that the pause is surely still on when the test looks at it.
SLOWDOWN = 2.0
MESSAGE = """
query One($id: ID!) {
  message(id: $id) {
    id status from to attempts provider providerMessageId error { code }
    events { kind status detail }
  }
}
"""


@dataclass
class Gateway:
    hooks: Hooks
    tenant: Tenant

    @property
    def client(self) -> GraphQLClient:
        return self.tenant.client


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    backend, settings = backend_settings(request, tmp_path_factory, "overflow")
    # The sandbox must not report on our messages: the tests are the provider here.
    settings.sandbox_callback_delay = 3600.0
    settings.provider_slowdown_seconds = SLOWDOWN
    async with (
        serve(settings) as (base_url, container),
        loopback_client(timeout=30) as http,
    ):
        hooks = Hooks(backend, base_url, container, http, sendgrid_private_key="")
        yield Gateway(hooks, await hooks_tenant(hooks))


async def send_sms(gw: Gateway, sender: str, to: str) -> str:
    body = "overflow " + secrets.token_hex(4)
    return await send(gw.tenant, {"channel": "SMS", "from": sender, "to": to, "body": body})


async def fetch(client: GraphQLClient, message_id: str) -> dict[str, Any]:
    message: dict[str, Any] = (await client.execute(MESSAGE, {"id": message_id}))["message"]
    return message


async def wait_for(
    client: GraphQLClient, message_id: str, ready: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    for _ in range(POLL_ATTEMPTS):
        message = await fetch(client, message_id)
        if ready(message):
            return message
        await asyncio.sleep(POLL_DELAY)
    raise AssertionError(f"message never became {what}: {message}")


async def sent_again(gw: Gateway, message_id: str, first: dict[str, Any]) -> dict[str, Any]:
    """The message once it is SENT again, under another provider id than ``first``'s."""
    return await wait_for(
        gw.client,
        message_id,
        lambda m: m["status"] == "SENT" and m["providerMessageId"] != first["providerMessageId"],
        "SENT again under a new provider id",
    )


async def callback(gw: Gateway, message: dict[str, Any], status: str, **extra: str) -> None:
    """POST a Twilio status callback for the message's current provider id, signed."""
    hooks = gw.hooks
    params = status_params(hooks, message, status, **extra)
    target = f"{STATUS}?mid={raw_id(message['id'])}"
    signature = RequestValidator(hooks.settings.twilio_auth_token).compute_signature(
        hooks.settings.public_base_url + target, params
    )
    response = await hooks.http.post(
        hooks.base_url + target,
        content=urlencode(params).encode(),
        headers={"Content-Type": FORM, TWILIO_SIGNATURE_HEADER: signature},
    )
    assert response.status_code == 204, response.text


async def test_a_queue_overflow_callback_requeues_pauses_the_sender_and_is_sent_again(
    gw: Gateway,
) -> None:
    sender, to = new_number(), new_number()
    message_id = await send_sms(gw, sender, to)
    first = await wait_for(
        gw.client, message_id, lambda m: m["status"] == "SENT", "SENT the first time"
    )
    assert first["attempts"] == 1
    pacer = gw.hooks.container.queue.pacer
    key = pacing_key(sender)
    assert pacer.ready_in(key) == 0.0  # not paused before the report

    await callback(gw, first, "failed", ErrorCode="30001")
    # Answered only once applied: the sender's pause is on in the shared pacer now.
    assert pacer.ready_in(key) > 0.0

    again = await sent_again(gw, message_id, first)
    # Not lost and not failed: the requeue gave its attempt back, the new send took one.
    assert again["attempts"] == 1
    assert again["error"] is None
    requeue = [e for e in again["events"] if e["kind"] == "throughput_requeued"]
    assert len(requeue) == 1, kinds(again)
    assert requeue[0]["status"] == "QUEUED"
    assert requeue[0]["detail"]["errorCode"] == "30001"
    assert "throughput" in requeue[0]["detail"]["reason"]

    # The same callback redelivered, now that the message is SENT again: a duplicate.
    await callback(gw, first, "failed", ErrorCode="30001")
    assert kinds(await fetch(gw.client, message_id)) == kinds(again)

    await callback(gw, again, "delivered")
    delivered = await fetch(gw.client, message_id)
    assert delivered["status"] == "DELIVERED"
    assert delivered["attempts"] == 1
    assert trail_problems(delivered["events"]) == []
    assert [k for k, _ in kinds(delivered)].count("throughput_requeued") == 1


async def test_a_queue_overflow_that_overtakes_the_worker_s_record_requeues_too(
    gw: Gateway,
) -> None:
    message_id = await send_sms(gw, new_number(), new_number())
    first = await wait_for(gw.client, message_id, lambda m: m["status"] == "SENT", "SENT")
    # As if the callback arrived between Twilio's answer and the worker's record of it.
    async with gw.hooks.container.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == uuid.UUID(raw_id(message_id)))
            .values(status="SENDING")
        )
    await callback(gw, first, "failed", ErrorCode="30001")

    again = await sent_again(gw, message_id, first)
    assert again["attempts"] == 1
    assert again["error"] is None
    [requeue] = [e for e in again["events"] if e["kind"] == "throughput_requeued"]
    assert requeue["status"] == "QUEUED"
    assert requeue["detail"]["errorCode"] == "30001"


async def test_any_other_late_failure_of_a_sent_message_stays_final(gw: Gateway) -> None:
    message_id = await send_sms(gw, new_number(), new_number())
    sent = await wait_for(gw.client, message_id, lambda m: m["status"] == "SENT", "SENT")
    await callback(gw, sent, "failed", ErrorCode="30007")
    failed = await fetch(gw.client, message_id)
    assert failed["status"] == "FAILED"
    assert failed["error"]["code"] == "30007"
    assert "throughput_requeued" not in [k for k, _ in kinds(failed)]


async def test_the_sandbox_overflows_a_message_once_and_the_retry_is_delivered(
    gateway: RunningGateway,
) -> None:
    sandbox: Any = gateway.container.sandbox
    if not hasattr(sandbox, "config"):
        pytest.skip("the in-process provider has no queue overflow")
    tenant = await new_tenant(gateway.base_url, gateway.container, gateway.http)
    client = tenant.client
    to = "+14155550987"  # no other test sends to it
    sandbox.config.queue_overflow_recipients.add(to)
    try:
        sms = {"channel": "SMS", "from": new_number(), "to": to, "body": "overflow"}
        message_id = await send(tenant, sms)
        delivered = await wait_for(
            client, message_id, lambda m: m["status"] == "DELIVERED", "DELIVERED"
        )
    finally:
        sandbox.config.queue_overflow_recipients.discard(to)
    assert delivered["attempts"] == 1
    assert trail_problems(delivered["events"]) == []
    assert [k for k, _ in kinds(delivered)].count("throughput_requeued") == 1
    calls = [r for r in sandbox.requests if r.get("to") == to]
    assert [r["queue_overflow"] for r in calls] == [True, False]
