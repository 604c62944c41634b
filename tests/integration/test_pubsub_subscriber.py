"""workers.pubsub.Subscriber against a real Redis: confirmation, delivery, reconnection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.services.hub import LiveEventsInterrupted
from tests.servers import RedisServer
from workers.pubsub import Subscriber
from workers.redis_broker import RedisBroker


async def wait_for(condition: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def settled(value: bool) -> bool:
    return value


async def test_receives_what_is_published_after_subscribe_returns_and_survives_a_kill(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    kwargs = redis.connection_pool.connection_kwargs
    received: list[bytes] = []
    subscriber = Subscriber(received.extend, host=kwargs["host"], port=kwargs["port"])
    one, two = "test:" + uuid.uuid4().hex, "test:" + uuid.uuid4().hex
    try:
        await subscriber.subscribe(one)
        # Confirmed: a publish right after subscribe() returns is received.
        assert await redis.publish(one, b"a") == 1
        await subscriber.subscribe(two)
        async with redis.pipeline(transaction=False) as pipe:
            for payload in (b"b", b"c", b"d"):
                pipe.publish(two if payload == b"c" else one, payload)
            await pipe.execute()
        await wait_for(lambda: settled(len(received) == 4))
        assert received == [b"a", b"b", b"c", b"d"]

        await subscriber.unsubscribe(two)

        async def unsubscribed() -> bool:
            return await redis.publish(two, b"gone") == 0

        await wait_for(unsubscribed)

        # A lost connection: reconnect and subscribe again, by itself.
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

        async def resubscribed() -> bool:
            return await redis.publish(one, b"e") == 1

        await wait_for(resubscribed)
        await wait_for(lambda: settled(b"e" in received))
        assert b"gone" not in received
        assert subscriber.connected
    finally:
        await subscriber.close()
        await redis.aclose()


async def test_authenticates_when_the_url_has_a_password(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    kwargs = redis.connection_pool.connection_kwargs
    received: list[bytes] = []
    # The test server has no password: AUTH is refused, and the subscriber keeps retrying
    # instead of reading as if it were subscribed.
    subscriber = Subscriber(
        received.extend, host=kwargs["host"], port=kwargs["port"], password="wrong"
    )
    channel = "test:" + uuid.uuid4().hex
    try:
        task = asyncio.create_task(subscriber.subscribe(channel))
        await asyncio.sleep(0.3)
        assert await redis.publish(channel, b"x") == 0
        task.cancel()
    finally:
        await subscriber.close()
        await redis.aclose()


async def test_a_lost_connection_cuts_subscribers_off_so_they_resume_from_their_cursor(
    redis_server: RedisServer,
) -> None:
    broker = RedisBroker(redis_server.url)
    redis = Redis.from_url(redis_server.url)
    account = uuid.uuid4()
    event = MessageEvent(
        id=1,
        account_id=account,
        message_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        status=MessageStatus.QUEUED,
        kind="accepted",
        detail=None,
        occurred_at=datetime.now(UTC),
    )
    try:
        async with broker.subscribe(account) as events:
            await broker.publish([event])
            async with asyncio.timeout(5):
                assert (await anext(events)).id == 1
            # Whatever is published while the connection is down never arrives: the
            # subscriber must be told instead of silently missing it.
            await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            async with asyncio.timeout(5):
                with pytest.raises(LiveEventsInterrupted, match="interrupted"):
                    await anext(events)
    finally:
        await redis.aclose()
        await broker.close()
