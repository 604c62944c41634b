"""In-process broker for the embedded mode: fair, paced work queues plus the local event hub.

Work waits in one lane per (account, sender), in the order it was enqueued. The consumers take
from the lanes in turn (round robin), one message at a time, so that one account's large
batch never stands in front of another account's message, nor one sender's backlog in front
of another sender of the same account. A lane whose sender is paced (``MemoryPacer``, at the
rate ``rates`` gives) is passed over until its next slot comes within ``horizon``; a consumer
then waits for that slot, at most ``horizon``, before it hands the message over. Messages of
one sender therefore leave in their lane's order, at the sender's rate.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final
from uuid import UUID

from gateway.domain.inbox import InboxChange
from gateway.domain.pacing import Queued, pacing_key
from gateway.domain.records import MessageEvent
from gateway.observability.metrics import EVENTS_PUBLISHED
from gateway.services.hub import EventHub
from workers.pacing import MemoryPacer

#: Longest a consumer waits for a slot it has taken: short, as it holds its consumer meanwhile.
HORIZON: Final = 0.1
#: Longest an idle consumer sleeps before it looks at the lanes again.
IDLE_WAIT: Final = 1.0

Lane = tuple[UUID, str]
Rates = Callable[[Collection[str]], Awaitable[dict[str, float]]]


class MemoryBroker:
    def __init__(self, *, horizon: float = HORIZON) -> None:
        self.hub = EventHub[MessageEvent]()
        self.inbox_hub = EventHub[InboxChange]()
        self._horizon = horizon
        self._lanes: dict[Lane, deque[Queued]] = {}
        # Lanes with work, in the order they are offered: the first is taken from next.
        self._turns: deque[Lane] = deque()
        # Ids waiting in a lane: the sweeper may offer the same id again, once is enough.
        self._pending: set[UUID] = set()
        self._arrived = asyncio.Event()
        self._pacer: MemoryPacer | None = None
        self._rates: Rates | None = None

    def pace(self, pacer: MemoryPacer, rates: Rates) -> None:
        """Pace every sender at the rate ``rates`` gives (by pacing key)."""
        self._pacer = pacer
        self._rates = rates

    async def enqueue(self, work: Sequence[Queued]) -> None:
        for item in work:
            if item.message_id in self._pending:
                continue
            self._pending.add(item.message_id)
            lane = (item.account_id, item.sender)
            queue = self._lanes.get(lane)
            if queue is None:
                queue = self._lanes[lane] = deque()
                self._turns.append(lane)
            queue.append(item)
        if work:
            self._arrived.set()

    async def next_message(self) -> UUID:
        """The next message to deliver: from the next lane in turn whose sender may send."""
        while True:
            rates = await self._rates_now()
            taken, wait = self._take(rates)
            if taken is not None:
                item, delay = taken
                if delay > 0:
                    await asyncio.sleep(delay)
                return item.message_id
            self._arrived.clear()
            try:
                async with asyncio.timeout(min(wait, IDLE_WAIT)):
                    await self._arrived.wait()
            except TimeoutError:
                pass

    async def _rates_now(self) -> dict[str, float]:
        if self._rates is None or not self._turns:
            return {}
        return await self._rates({sender for _, sender in self._turns})

    def _take(self, rates: dict[str, float]) -> tuple[tuple[Queued, float] | None, float]:
        """(the message and how long until its slot, or None; how long until a paced lane
        may go again). Never suspends: lanes and slots change only here and in ``enqueue``."""
        wait = IDLE_WAIT
        for _ in range(len(self._turns)):
            lane = self._turns[0]
            self._turns.rotate(-1)
            queue = self._lanes[lane]
            item = queue[0]
            delay = 0.0
            rate = rates.get(pacing_key(item.sender))
            if self._pacer is not None and rate is not None:
                key = pacing_key(item.sender)
                slot = self._pacer.take(key, rate, item.segments, within=self._horizon)
                if slot is None:
                    wait = min(wait, max(self._pacer.ready_in(key) - self._horizon, 0.001))
                    continue
                delay = slot
            queue.popleft()
            self._pending.discard(item.message_id)
            if not queue:
                del self._lanes[lane]
                self._turns.remove(lane)
            return (item, delay), 0.0
        return None, wait

    async def publish(self, events: Sequence[MessageEvent]) -> None:
        EVENTS_PUBLISHED.inc(len(events))
        self.hub.dispatch(events)

    def subscribe(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[MessageEvent]]:
        return self.hub.subscribe(account_id)

    async def publish_inbox(self, changes: Sequence[InboxChange]) -> None:
        self.inbox_hub.dispatch(changes)

    def subscribe_inbox(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[InboxChange]]:
        return self.inbox_hub.subscribe(account_id)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
