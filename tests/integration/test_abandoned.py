"""Messages left SENDING by a worker that died: taken back, or dead-lettered when spent.

Invariant: a message never stays SENDING forever, and one that kills its worker every time
ends FAILED after MAX_ATTEMPTS instead of looping.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

from sqlalchemy import update

from gateway.services.clock import utcnow
from persistence.rows import MESSAGES
from tests.conftest import GraphQLClient, RunningGateway

SEND = """mutation S($i: SendMessageInput!) { sendMessage(input: $i) {
  ... on MessageAccepted { message { id } } } }"""
TRAIL = "query T($id: ID!) { message(id: $id) { status attempts events { kind status } } }"


async def stranded(gateway: RunningGateway, client: GraphQLClient, attempts: int) -> str:
    """A message that looks like its worker died an hour ago in the middle of a call."""
    send_at = (utcnow() + timedelta(hours=1)).isoformat()
    data = await client.execute(
        SEND,
        {"i": {"channel": "SMS", "from": "+14155550100", "to": "+14155550142", "body": "x",
               "sendAt": send_at}},
    )  # fmt: skip
    public_id = data["sendMessage"]["message"]["id"]
    async with gateway.container.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == UUID(hex=public_id[4:]))
            .values(status="SENDING", attempts=attempts, updated_at=utcnow() - timedelta(hours=1))
        )
    return str(public_id)


async def settle(client: GraphQLClient, public_id: str, statuses: set[str]) -> dict[str, object]:
    for _ in range(200):
        message: dict[str, object] = (await client.execute(TRAIL, {"id": public_id}))["message"]
        if message["status"] in statuses:
            return message
        await asyncio.sleep(0.05)
    return message


async def test_a_stranded_message_is_taken_back_and_delivered(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    public_id = await stranded(gateway, client, attempts=1)
    await gateway.container.sweeper.sweep_once()
    message = await settle(client, public_id, {"DELIVERED"})
    kinds = [e["kind"] for e in message["events"]]  # type: ignore[attr-defined]
    assert message["status"] == "DELIVERED"
    assert "attempt_abandoned" in kinds


async def test_a_stranded_message_with_no_attempts_left_is_dead_lettered(
    gateway: RunningGateway, client: GraphQLClient
) -> None:
    spent = gateway.container.settings.max_attempts
    public_id = await stranded(gateway, client, attempts=spent)
    await gateway.container.sweeper.sweep_once()
    message = await settle(client, public_id, {"FAILED"})
    assert message["status"] == "FAILED"
    assert message["attempts"] == spent, "no further provider call"
    assert message["events"][-1] == {"kind": "dead_lettered", "status": "FAILED"}  # type: ignore[index]
