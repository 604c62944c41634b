"""Batch writes through Redis scripts: the same messages as one command each."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from harness.servers import RedisServer
from workers.redis_scripts import BatchWriter


async def test_publish_delivers_each_payload_to_its_channel(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    pubsub = redis.pubsub()
    one, two = "test:" + uuid.uuid4().hex, "test:" + uuid.uuid4().hex
    try:
        await pubsub.subscribe(one, two)
        writer = BatchWriter(redis)
        await writer.publish([(one, b"x"), (two, b"y"), (one, b"z")])
        got: list[tuple[bytes, bytes]] = []
        async with asyncio.timeout(5):
            while len(got) < 3:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    got.append((message["channel"], message["data"]))
        assert got == [(one.encode(), b"x"), (two.encode(), b"y"), (one.encode(), b"z")]
    finally:
        await pubsub.aclose()
        await redis.aclose()
