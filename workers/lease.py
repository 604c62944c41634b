"""Chores that must run in one worker at a time, whichever: a short lease in Redis.

The holder takes the lease with ``SET key holder NX PX ttl`` and gives it back when its run
ends (only if it still holds it: a run that outlived its lease must not free another's).
A holder that dies mid-run holds it for ``ttl`` at most. The embedded mode runs one worker,
in one process: its chores need no lease.
"""

from __future__ import annotations

import uuid
from typing import Final

from redis.asyncio import Redis

from workers.chores import Chore

# Deletes the key only if it still holds our token.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    def __init__(self, redis: Redis, key: str, *, ttl: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = max(100, int(ttl * 1000))
        self._token = uuid.uuid4().hex
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> bool:
        return bool(await self._redis.set(self._key, self._token, nx=True, px=self._ttl_ms))

    async def release(self) -> None:
        await self._release(keys=[self._key], args=[self._token])


def leased(lease: RedisLease, chore: Chore) -> Chore:
    """``chore``, run only by the worker that holds ``lease`` at the time."""

    async def run() -> object:
        if not await lease.acquire():
            return None
        try:
            return await chore()
        finally:
            await lease.release()

    run.__qualname__ = f"leased({getattr(chore, '__qualname__', repr(chore))})"
    return run
