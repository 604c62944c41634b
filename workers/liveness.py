"""Which delivery workers are alive: heartbeats, so that a dead worker's messages are taken
back within seconds of its death while a live worker's slow provider call never is.

Redis mode: each worker writes its heartbeat (Redis's own clock, so the machines' clocks
need not agree) into one sorted set every ``dead_after / 5`` seconds; a worker whose last
heartbeat is older than ``dead_after`` is dead. A Redis that lost its data (restarted without
persistence) has lost every heartbeat too: until ``dead_after`` has passed since the first
heartbeat it holds again, nobody is declared dead, so that the live workers get their turn
to beat first.

Embedded mode: one process is the only worker there is; any other holder of a message is a
previous run of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Final

import structlog
from redis.asyncio import Redis

from workers.codec import redis_text

log = structlog.get_logger(__name__)

WORKERS: Final = "mgw:workers"
#: Redis time of the first heartbeat the current Redis data set holds.
EPOCH: Final = "mgw:workers:epoch"
#: Dead workers' entries are dropped from the set after this long.
FORGET_AFTER: Final = 86_400

# KEYS[1]: the set, KEYS[2]: the epoch; ARGV[1]: the worker.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('SET', KEYS[2], tostring(now), 'NX')
return tostring(now)
"""

# KEYS as above; ARGV[1]: dead after (seconds), ARGV[2]: forget after (seconds).
# Returns {seconds since the epoch, live worker, live worker, ...}.
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local epoch = tonumber(redis.call('GET', KEYS[2]) or now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
table.insert(live, 1, tostring(now - epoch))
return live
"""


def worker_name() -> str:
    """Unique per process, readable in XINFO CONSUMERS and in ``messages.claimed_by``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RedisLiveness:
    def __init__(self, redis: Redis, *, dead_after: float) -> None:
        self._redis = redis
        self.dead_after = dead_after
        self._beat = redis.register_script(_BEAT)
        self._live = redis.register_script(_LIVE)

    async def beat(self, worker: str) -> None:
        await self._beat(keys=[WORKERS, EPOCH], args=[worker])

    async def live(self) -> frozenset[str] | None:
        """The live workers; None while that cannot be known yet (see the module doc)."""
        reply = await self._live(keys=[WORKERS, EPOCH], args=[self.dead_after, FORGET_AFTER])
        warm_for, *live = (redis_text(item) for item in reply)
        if float(warm_for) < self.dead_after:
            return None
        return frozenset(live)

    async def forget(self, worker: str) -> None:
        """A worker stopping cleanly leaves nothing behind to take back."""
        await self._redis.zrem(WORKERS, worker)

    async def keep_beating(self, worker: str, stop: asyncio.Event) -> None:
        """Beat until ``stop``, on its own: no other chore can hold a heartbeat up."""
        interval = self.dead_after / 5
        while not stop.is_set():
            try:
                await self.beat(worker)
            except Exception as exc:
                log.warning("heartbeat_failed", worker=worker, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


class LocalLiveness:
    """The embedded mode: this process's worker is the only one alive."""

    def __init__(self, worker: str) -> None:
        self._live = frozenset({worker})

    async def live(self) -> frozenset[str] | None:
        return self._live
