"""Trimming the delivery stream drops acknowledged entries only, never pending ones."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from harness.servers import RedisServer
from workers.stream_worker import StreamWorker


async def test_trim_keeps_every_unacknowledged_entry(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    stream, group = "trim-test-stream", "trim-test-group"
    nothing: Any = None
    worker = StreamWorker(
        redis,
        stream=stream,
        group=group,
        consumer="c1",
        delivery=nothing,
        lifecycle=nothing,
        sweeper=nothing,
        concurrency=1,
        min_idle_ms=60_000,
        max_deliveries=3,
        sweep_interval=1.0,
        liveness=nothing,
    )
    try:
        await redis.delete(stream)
        await worker.ensure_group()
        ids = [await redis.xadd(stream, {"id": f"{i:032x}"}) for i in range(30)]
        reply = await redis.xreadgroup(group, "c1", {stream: ">"}, count=30)
        assert len(reply[0][1]) == 30
        # Acknowledge all but a few scattered ones: those stay pending.
        pending = {ids[3], ids[17], ids[29]}
        await redis.xack(stream, group, *[i for i in ids if i not in pending])
        await worker._trim()
        left = {entry_id for entry_id, _ in await redis.xrange(stream)}
        assert pending <= left, "a pending entry was trimmed away"
        assert ids[0] not in left and ids[2] not in left, "entries before the oldest pending go"

        await redis.xack(stream, group, *pending)
        await worker._trim()
        left = {entry_id for entry_id, _ in await redis.xrange(stream)}
        assert len(left) <= 1, "with nothing pending, everything read is trimmed"
    finally:
        await redis.delete(stream)
        await redis.aclose()
