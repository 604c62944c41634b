"""Batch writes to Redis as one command each.

A ``sendMessages`` of 100 inputs publishes 100 live events (and enqueues 100 entries, see
``workers.lanes``). Pipelined, that is still 100 commands for redis-py to pack and 100 replies to
parse in Python, a large share of the API's CPU for such a call. As one script call it is one
command and one reply; Redis does the loop. Scripts run atomically and are replicated by their
effects.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

# ARGV: channel, payload, channel, payload, ...
_PUBLISH = """
for i = 1, #ARGV, 2 do
    redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""


class BatchWriter:
    def __init__(self, redis: Redis) -> None:
        # register_script: EVALSHA, falling back to EVAL when Redis does not know the script
        # (e.g. after a restart).
        self._publish = redis.register_script(_PUBLISH)

    async def publish(self, messages: Sequence[tuple[str, bytes | str]]) -> None:
        args: list[bytes | str] = []
        for channel, payload in messages:
            args += (channel, payload)
        await self._publish(args=args)
