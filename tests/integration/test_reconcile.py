"""Reconciliation in the embedded worker, on PostgreSQL and SQLite: a message whose callbacks
never arrive is looked up at the (mounted) sandbox and settled, one the sandbox does not know
keeps its status and is looked up again later, never sooner than its schedule.

The gateway's sandbox loses every callback (SANDBOX_LOSE_CALLBACKS), so nothing but a lookup
can settle a message; RECONCILE_AFTER_SECONDS is short. The multi-process shape (a worker
fleet, one at a time by lease) is in test_lost_callbacks_processes.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from gateway.observability.metrics import REGISTRY
from harness.http import loopback_client
from harness.servers import PostgresServer
from persistence.models import MessageRow
from tests.conftest import GatewayParts, GraphQLClient, gateway_settings, serve

SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) { ... on MessageAccepted { message { id } } }
}
"""
MESSAGE = """
query One($id: ID!) {
  message(id: $id) { id status providerMessageId events { kind status detail } }
}
"""
AFTER = 0.5


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[GatewayParts, GraphQLClient]]:
    backend: str = request.param
    postgres: PostgresServer | None = (
        request.getfixturevalue("postgres") if backend == "postgresql" else None
    )
    settings = gateway_settings(backend, tmp_path_factory.mktemp(f"rc-{backend}"), postgres)
    settings.sandbox_lose_callbacks = True
    settings.reconcile_after_seconds = AFTER
    async with serve(settings) as (base_url, container), loopback_client(timeout=30) as http:
        _, key = await container.api_keys.create(f"rc-{uuid.uuid4().hex[:8]}")
        yield container, GraphQLClient(base_url, key, "rc", http)


async def send(client: GraphQLClient, message: dict[str, Any]) -> str:
    data = await client.execute(SEND, {"input": message})
    message_id: str = data["sendMessage"]["message"]["id"]
    return message_id


async def wait_for(
    client: GraphQLClient, message_id: str, done: Callable[[dict[str, Any]], bool], within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        message: dict[str, Any] = (await client.execute(MESSAGE, {"id": message_id}))["message"]
        if done(message):
            return message
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


async def reconcile_at(container: GatewayParts, message_id: str) -> datetime | None:
    async with container.engine.connect() as conn:
        value: datetime | None = (
            await conn.execute(
                select(MessageRow.reconcile_at).where(
                    MessageRow.id == uuid.UUID(hex=message_id.removeprefix("msg_"))
                )
            )
        ).scalar_one()
    return value


async def test_messages_whose_callbacks_are_lost_are_settled_by_looking_them_up(
    gateway: tuple[GatewayParts, GraphQLClient],
) -> None:
    container, client = gateway
    sms = await send(
        client, {"channel": "SMS", "from": "+14155550100", "to": "+14155550111", "body": "Hi"}
    )
    mail = await send(
        client,
        {
            "channel": "EMAIL",
            "from": "news@example.com",
            "to": "reader@example.com",
            "body": "Hello",
            "metadata": {"subject": "Lost events"},
        },
    )
    for message_id in (sms, mail):
        done = await wait_for(client, message_id, lambda m: m["status"] == "DELIVERED", 30)
        reconciled = [e for e in done["events"] if e["kind"] == "reconciled"]
        assert [e["status"] for e in reconciled] == ["DELIVERED"], done["events"]
        assert reconciled[0]["detail"]["providerStatus"] == "delivered"
        assert reconciled[0]["detail"]["providerMessageId"] == done["providerMessageId"]
    sandbox = container.sandbox
    assert sandbox is not None
    # Nothing arrived by callback: the lookups did it all.
    assert {c["error"] for c in sandbox.callbacks} == {"lost"}


async def test_a_message_the_provider_does_not_know_keeps_its_status(
    gateway: tuple[GatewayParts, GraphQLClient],
) -> None:
    container, client = gateway
    sandbox = container.sandbox
    assert sandbox is not None
    sandbox.config.callback_delay = 3600  # the sandbox's own record stays "queued" meanwhile
    try:
        message_id = await send(
            client, {"channel": "SMS", "from": "+14155550100", "to": "+14155550112", "body": "?"}
        )
        sent = await wait_for(client, message_id, lambda m: m["status"] == "SENT", 30)
    finally:
        sandbox.config.callback_delay = 0.05
    # The vendor forgets it (its retention ended, say): a lookup finds nothing.
    del sandbox.messages["twilio"][sent["providerMessageId"]]
    unknown = {"provider": "twilio", "outcome": "unknown"}
    before = REGISTRY.get_sample_value("gateway_reconciliations_total", unknown) or 0.0
    deadline = time.monotonic() + 30
    while (when := await reconcile_at(container, message_id)) is None:
        assert time.monotonic() < deadline, "never looked up"
        await asyncio.sleep(0.05)
    message = (await client.execute(MESSAGE, {"id": message_id}))["message"]
    assert message["status"] == "SENT"
    assert not [e for e in message["events"] if e["kind"] == "reconciled"]
    assert REGISTRY.get_sample_value("gateway_reconciliations_total", unknown) == before + 1
    # Looked up again no sooner than it had been waiting: not on every sweep.
    assert (when - datetime.now(when.tzinfo)).total_seconds() > 0
