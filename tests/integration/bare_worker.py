"""A stream worker with a delivery and nothing else, for tests that drive its reads and
reclaims one call at a time on a real Redis: no lifecycle, sweeper or liveness behind it, so
only the calls a test makes can touch them (and any such call fails loudly)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from workers.stream_worker import LINGER, StreamWorker


def bare_worker(
    redis: Redis,
    *,
    stream: str,
    group: str,
    consumer: str,
    delivery: Any,
    concurrency: int,
    linger: float = LINGER,
) -> StreamWorker:
    nothing: Any = None
    return StreamWorker(
        redis,
        stream=stream,
        group=group,
        consumer=consumer,
        delivery=delivery,
        lifecycle=nothing,
        sweeper=nothing,
        concurrency=concurrency,
        min_idle_ms=0,
        max_deliveries=10,
        sweep_interval=1.0,
        liveness=nothing,
        linger=linger,
    )
