"""Webhook payloads kept in Redis while the database cannot take them (Redis mode).

A verified payload that could be neither applied nor kept in the database is appended to a
Redis Stream; the provider is answered 2xx only once Redis has it. The replay chore reads the
stream from its oldest entry, applies each payload as the route would have, and deletes the
entries it applied. Entries are as durable as Redis is configured to be (append-only file
recommended in production).

The stream is bounded by ``max_entries``: past it, a payload is refused (the route answers
503, and the provider delivers it again later) rather than trimming kept payloads away.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import structlog
from redis.asyncio import Redis

from providers.webhooks import ReceivedWebhook
from workers.codec import redis_text

log = structlog.get_logger(__name__)

SPOOL: Final = "mgw:webhook-spool"


class SpoolFull(Exception):
    """The spool holds ``max_entries`` payloads already."""


class RedisWebhookSpool:
    def __init__(self, redis: Redis, *, max_entries: int, key: str = SPOOL) -> None:
        self._redis = redis
        self._max_entries = max_entries
        self._key = key
        # Failed replays per entry id: a payload that keeps failing is moved out of the way.
        self._failures = f"{key}:failures"

    async def keep(self, received: ReceivedWebhook) -> str:
        """Append ``received``; returns its entry id once Redis has it."""
        # Checked, then added: concurrent routes may pass the bound by a few entries.
        if await self._redis.xlen(self._key) >= self._max_entries:
            raise SpoolFull(f"{self._max_entries} webhook payloads kept already")
        entry_id = await self._redis.xadd(
            self._key,
            {
                "route": received.route,
                "content_type": received.content_type or "",
                "query": received.query,
                "body": received.body,
                "received_at": repr(time.time()),
            },
        )
        return redis_text(entry_id)

    async def oldest(self, count: int) -> list[tuple[str, ReceivedWebhook | None]]:
        """Up to ``count`` entries, oldest first; None for an entry that cannot be read."""
        entries: Any = await self._redis.xrange(self._key, "-", "+", count=count)
        return [(redis_text(entry_id), _received(fields)) for entry_id, fields in entries]

    async def remove(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xdel(self._key, *entry_ids)
            pipe.hdel(self._failures, *entry_ids)
            await pipe.execute()

    async def failed(self, entry_id: str) -> int:
        """Count one more failed replay of the entry; returns how many there were."""
        return int(await self._redis.hincrby(self._failures, entry_id, 1))

    async def length(self) -> int:
        return int(await self._redis.xlen(self._key))


def _received(fields: dict[Any, Any]) -> ReceivedWebhook | None:
    def field(name: str) -> bytes | None:
        value = fields.get(name.encode(), fields.get(name))
        return value.encode() if isinstance(value, str) else value

    route, body = field("route"), field("body")
    if route is None or body is None:
        return None
    try:
        return ReceivedWebhook(
            route=route.decode(),
            content_type=(field("content_type") or b"").decode() or None,
            query=(field("query") or b"").decode(),
            body=body,
        )
    except UnicodeDecodeError:
        return None
