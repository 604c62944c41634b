"""Local fan-out of live events to this process's subscribers.

Each subscriber owns a bounded queue. Publishing never waits: a subscriber whose queue is full
is cut off (its iterator raises ``SubscriberTooSlow``) instead of stalling everyone else; the
client can resubscribe with ``after`` set to the last cursor it saw and lose nothing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from uuid import UUID

from gateway.domain.records import MessageEvent


class SubscriberTooSlow(Exception):
    pass


class _Subscriber:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, event: MessageEvent) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Nothing queued is dropped: the reader gets every event up to this point, with
            # no gap, and is then cut off, so resuming from its last cursor loses nothing.
            self.overflowed = True

    async def events(self) -> AsyncIterator[MessageEvent]:
        while True:
            if self.overflowed and self.queue.empty():
                raise SubscriberTooSlow("subscriber fell behind; resubscribe with `after`")
            item = await self.queue.get()
            assert isinstance(item, MessageEvent)
            yield item


class EventHub:
    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[UUID, set[_Subscriber]] = defaultdict(set)

    @property
    def accounts(self) -> set[UUID]:
        return {a for a, subs in self._subscribers.items() if subs}

    def dispatch(self, events: Sequence[MessageEvent]) -> None:
        for event in events:
            for subscriber in tuple(self._subscribers.get(event.account_id, ())):
                subscriber.offer(event)

    @asynccontextmanager
    async def subscribe(self, account_id: UUID) -> AsyncIterator[AsyncIterator[MessageEvent]]:
        subscriber = _Subscriber(self._queue_size)
        self._subscribers[account_id].add(subscriber)
        try:
            yield subscriber.events()
        finally:
            subs = self._subscribers.get(account_id)
            if subs is not None:
                subs.discard(subscriber)
                if not subs:
                    del self._subscribers[account_id]
