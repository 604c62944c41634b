"""The per-sender limiter (``SenderPacer``): in Redis for every worker, or in this process.

Both keep each sender's theoretical arrival time (TAT) and hand out slots as
``gateway.domain.pacing.gcra_slot`` does. In Redis the TAT lives in ``mgw:pace:<key>``, in
milliseconds of Redis's own clock (``TIME``), and each change is one Lua script, so that the
workers of every machine share one schedule without sharing a clock. The stream worker's read
script embeds the same arithmetic (:data:`GCRA_LUA`), so that reading a sender's entries and
taking their slots happen in one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis

from gateway.domain.pacing import gcra_slot

PACE_PREFIX: Final = "mgw:pace:"

#: Lua helpers: the time now in milliseconds, and a sender's TAT read and written back. A TAT
#: key outlives its TAT by a minute and then vanishes: an idle sender costs nothing.
GCRA_LUA: Final = """
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function tat_of(key)
    return tonumber(redis.call('GET', key) or '0') or 0
end
local function keep_tat(key, tat, now)
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 60000)
end
"""

# KEYS[1]: the TAT; ARGV: emission interval (ms per segment), cost (segments), within (ms).
# Returns {1, delay} (the slot taken, ``delay`` ms from now) or {0, delay} (not taken).
_RESERVE: Final = (
    GCRA_LUA
    + """
local now = now_ms()
local tat = tat_of(KEYS[1])
local slot = math.max(tat, now)
if slot - now > tonumber(ARGV[3]) then
    return {0, string.format('%.3f', slot - now)}
end
keep_tat(KEYS[1], slot + math.max(1, tonumber(ARGV[2])) * tonumber(ARGV[1]), now)
return {1, string.format('%.3f', slot - now)}
"""
)

# KEYS[1]: the TAT; ARGV[1]: pause (ms).
_SLOW_DOWN: Final = (
    GCRA_LUA
    + """
local now = now_ms()
keep_tat(KEYS[1], math.max(tat_of(KEYS[1]), now + tonumber(ARGV[1])), now)
return 1
"""
)


def pace_key(sender: str) -> str:
    return PACE_PREFIX + sender


class RedisPacer:
    def __init__(self, redis: Redis) -> None:
        self._reserve = redis.register_script(_RESERVE)
        self._slow_down = redis.register_script(_SLOW_DOWN)

    async def reserve(self, sender: str, rate: float, cost: int, *, within: float) -> float | None:
        taken, delay = await self._reserve(
            keys=[pace_key(sender)], args=[1000.0 / rate, cost, within * 1000.0]
        )
        return float(delay) / 1000.0 if int(taken) else None

    async def slow_down(self, sender: str, seconds: float) -> None:
        await self._slow_down(keys=[pace_key(sender)], args=[seconds * 1000.0])


class MemoryPacer:
    """The embedded mode's limiter: the same schedule, on this process's monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def reserve(self, sender: str, rate: float, cost: int, *, within: float) -> float | None:
        return self.take(sender, rate, cost, within=within)

    def take(self, sender: str, rate: float, cost: int, *, within: float) -> float | None:
        """``reserve`` without suspending: the in-process broker takes slots while it picks
        a lane, with nothing else running in between."""
        now = self._clock()
        slot, tat = gcra_slot(self._tat.get(sender, 0.0), now, rate, cost)
        if slot - now > within:
            return None
        self._tat[sender] = tat
        if len(self._tat) > 100_000:
            # Forget senders whose TAT has passed: they would start afresh anyway.
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return slot - now

    def ready_in(self, sender: str) -> float:
        """Seconds until the sender's next slot (0: free now)."""
        return max(0.0, self._tat.get(sender, 0.0) - self._clock())

    async def slow_down(self, sender: str, seconds: float) -> None:
        self._tat[sender] = max(self._tat.get(sender, 0.0), self._clock() + seconds)
