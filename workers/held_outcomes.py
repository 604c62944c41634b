"""Outcomes of provider calls that could not be written yet (the database was down).

An outcome is what a provider said about a message: above all a ``Sent`` carries the
provider's id for it, and dropping that would make the message look abandoned and be sent a
second time. So a worker that cannot record an outcome hands it here; the sweeper records
what is held before it takes anything back, and never takes back a message whose outcome is
held. Redis mode keeps them in one Redis hash (message id -> outcome), which outlives the
worker; the embedded mode in memory, which lives as long as the only worker there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import orjson
from redis.asyncio import Redis

from gateway.domain.records import DeliveryError
from gateway.domain.results import Failure, Hold, Outcome, Release, Retry, Sent
from workers.codec import redis_text

HELD: Final = "mgw:outcomes"


def encode_outcome(outcome: Outcome) -> bytes:
    data: dict[str, Any] = {"m": outcome.message_id.hex}
    if isinstance(outcome, Sent):
        data |= {
            "t": "sent",
            "p": outcome.provider,
            "pm": outcome.provider_message_id,
            "d": outcome.detail,
        }
    elif isinstance(outcome, Retry):
        data |= {
            "t": "retry",
            "e": _error(outcome.error),
            "at": outcome.next_attempt_at.isoformat(),
            "d": outcome.detail,
            "p": outcome.provider,
        }
    elif isinstance(outcome, Failure):
        data |= {"t": "failure", "e": _error(outcome.error), "d": outcome.detail}
    elif isinstance(outcome, Hold):
        data |= {"t": "hold", "at": outcome.until.isoformat(), "d": outcome.detail}
    else:
        data |= {"t": "release", "at": outcome.next_attempt_at.isoformat(), "r": outcome.reason}
    return orjson.dumps(data)


def decode_outcome(raw: bytes | str) -> Outcome:
    data: dict[str, Any] = orjson.loads(raw)
    message_id = UUID(hex=data["m"])
    kind = data["t"]
    if kind == "sent":
        return Sent(message_id, data["p"], data["pm"], data.get("d"))
    if kind == "retry":
        at = datetime.fromisoformat(data["at"])
        return Retry(message_id, DeliveryError(*data["e"]), at, data["d"], data.get("p"))
    if kind == "failure":
        return Failure(message_id, DeliveryError(*data["e"]), data["d"])
    if kind == "hold":
        return Hold(message_id, datetime.fromisoformat(data["at"]), data["d"])
    if kind == "release":
        return Release(message_id, datetime.fromisoformat(data["at"]), data["r"])
    raise ValueError(f"unknown outcome kind {kind!r}")


def _error(error: DeliveryError) -> list[Any]:
    return [error.code, error.description, error.permanent, error.recipient_unsubscribed]


class RedisHeldOutcomes:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def keep(self, outcomes: Sequence[Outcome]) -> None:
        if outcomes:
            await self._redis.hset(
                HELD, mapping={o.message_id.hex: encode_outcome(o) for o in outcomes}
            )

    async def held(self, limit: int = 500) -> list[Outcome]:
        found: list[Outcome] = []
        async for _, raw in self._redis.hscan_iter(HELD, count=limit):
            found.append(decode_outcome(raw))
            if len(found) >= limit:
                break
        return found

    async def message_ids(self) -> set[UUID]:
        return {UUID(hex=redis_text(key)) for key in await self._redis.hkeys(HELD)}

    async def forget(self, message_ids: Iterable[UUID]) -> None:
        keys = [m.hex for m in message_ids]
        if keys:
            await self._redis.hdel(HELD, *keys)


class MemoryHeldOutcomes:
    def __init__(self) -> None:
        self._held: dict[UUID, Outcome] = {}

    async def keep(self, outcomes: Sequence[Outcome]) -> None:
        self._held.update((o.message_id, o) for o in outcomes)

    async def held(self, limit: int = 500) -> list[Outcome]:
        return list(self._held.values())[:limit]

    async def message_ids(self) -> set[UUID]:
        return set(self._held)

    async def forget(self, message_ids: Iterable[UUID]) -> None:
        for message_id in message_ids:
            self._held.pop(message_id, None)
