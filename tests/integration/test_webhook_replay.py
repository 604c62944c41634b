"""The spool and its replay, on real Redis and PostgreSQL, one mechanism at a time.

What the multi-process test (test_lost_callbacks_processes.py) shows end to end is taken apart
here: nothing is tried while the database is down, a payload is applied through the routes'
own path once it is up, a payload that keeps failing is moved to webhook_receipts, and a full
spool refuses rather than dropping what it holds.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from gateway.entry.bootstrap.api import bootstrap_api
from gateway.entry.migrations import upgrade_to_head
from gateway.settings import Settings
from harness.servers import PostgresServer, RedisServer
from persistence.models import WebhookReceiptRow
from providers.webhooks import ReceivedWebhook
from providers.webhooks.twilio import STATUS_ROUTE as TWILIO_STATUS
from tests.conftest import GatewayParts, fresh_postgres_url
from workers.webhook_replay import WebhookReplay
from workers.webhook_spool import RedisWebhookSpool, SpoolFull

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
async def container(postgres: PostgresServer) -> AsyncIterator[GatewayParts]:
    settings = Settings(database_url=fresh_postgres_url(postgres))
    await upgrade_to_head(settings)
    built = GatewayParts(bootstrap_api(settings))
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def spool(redis_server: RedisServer) -> AsyncIterator[RedisWebhookSpool]:
    redis = Redis.from_url(redis_server.url)
    key = f"test-spool-{uuid.uuid4().hex}"
    try:
        yield RedisWebhookSpool(redis, max_entries=3, key=key)
    finally:
        await redis.delete(key, f"{key}:failures")
        await redis.aclose()


def status_callback(sid: str, status: str = "delivered") -> ReceivedWebhook:
    body = urlencode({"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1"}).encode()
    return ReceivedWebhook(TWILIO_STATUS, FORM, f"mid={uuid.uuid4().hex}", body)


async def failed_receipts(container: GatewayParts) -> list[str | None]:
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            select(WebhookReceiptRow.payload).where(WebhookReceiptRow.outcome == "failed")
        )
    return [r[0] for r in rows]


async def test_nothing_is_tried_while_the_database_is_down(
    container: GatewayParts, spool: RedisWebhookSpool
) -> None:
    await spool.keep(status_callback("SM" + "1" * 32))
    down = False

    async def reachable() -> bool:
        return not down

    replay = WebhookReplay(
        spool, container.webhooks, container.webhook_adapters, reachable, max_attempts=1
    )
    down = True
    assert await replay.run_once() == 0
    assert await spool.length() == 1
    # Nothing counted against the payload meanwhile: with max_attempts=1 a counted failure
    # would have moved it out of the spool.
    down = False
    assert await replay.run_once() == 1
    assert await spool.length() == 0


async def test_spooled_payloads_apply_through_the_routes_path_and_repeats_are_harmless(
    container: GatewayParts, spool: RedisWebhookSpool
) -> None:
    callback = status_callback("SM" + "2" * 32)
    for _ in range(3):  # a provider that delivered it three times during the outage
        await spool.keep(callback)
    replay = WebhookReplay(
        spool, container.webhooks, container.webhook_adapters, container.webhook_repo.reachable
    )
    assert await replay.run_once() == 3
    assert await spool.length() == 0
    # An unknown message: recorded as unmatched once, whatever the number of deliveries.
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            select(WebhookReceiptRow.outcome).where(
                WebhookReceiptRow.dedupe_key == f"twilio:{'SM' + '2' * 32}:delivered"
            )
        )
        assert [r[0] for r in rows] == ["unmatched"]


async def test_a_payload_that_keeps_failing_is_kept_raw_and_leaves_the_spool(
    container: GatewayParts, spool: RedisWebhookSpool
) -> None:
    poison = ReceivedWebhook(TWILIO_STATUS, FORM, "", b"MessageSid=SM1&MessageStatus=unheard-of")
    await spool.keep(poison)
    replay = WebhookReplay(
        spool, container.webhooks, container.webhook_adapters, container.webhook_repo.reachable
    )
    replay_attempts = 10
    for _ in range(replay_attempts - 1):
        assert await replay.run_once() == 0
        assert await spool.length() == 1
    assert await replay.run_once() == 0
    assert await spool.length() == 0
    assert poison.body.decode() in await failed_receipts(container)


async def test_a_full_spool_refuses_instead_of_dropping(spool: RedisWebhookSpool) -> None:
    kept = [await spool.keep(status_callback("SM" + f"{n}" * 32)) for n in range(3)]
    with pytest.raises(SpoolFull):
        await spool.keep(status_callback("SM" + "9" * 32))
    assert [entry for entry, _ in await spool.oldest(10)] == kept
