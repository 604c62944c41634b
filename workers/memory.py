"""In-process broker for the embedded mode: an asyncio work queue plus the local event hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from uuid import UUID

from gateway.domain.records import MessageEvent
from gateway.observability.metrics import EVENTS_PUBLISHED
from gateway.services.hub import EventHub


class MemoryBroker:
    def __init__(self) -> None:
        self.hub = EventHub()
        self._queue: asyncio.Queue[UUID] = asyncio.Queue()
        # Ids waiting in the queue: the sweeper may offer the same id again, once is enough.
        self._pending: set[UUID] = set()

    async def enqueue(self, message_ids: Sequence[UUID]) -> None:
        for message_id in message_ids:
            if message_id not in self._pending:
                self._pending.add(message_id)
                self._queue.put_nowait(message_id)

    async def next_message(self) -> UUID:
        message_id = await self._queue.get()
        self._pending.discard(message_id)
        return message_id

    async def publish(self, events: Sequence[MessageEvent]) -> None:
        EVENTS_PUBLISHED.inc(len(events))
        self.hub.dispatch(events)

    def subscribe(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[MessageEvent]]:
        return self.hub.subscribe(account_id)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
