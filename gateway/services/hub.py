"""Local fan-out of live events to this process's subscribers.

Each subscriber owns a bounded mailbox. Publishing never waits: a subscriber whose mailbox is
full is cut off (its iterator raises ``SubscriberTooSlow``) instead of stalling everyone else;
when the live source itself lost events (its connection dropped), every subscriber is cut off
with ``LiveEventsInterrupted``. Either way the client can resubscribe with ``after`` set to
the last cursor it saw and lose nothing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar
from uuid import UUID

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


class AccountScoped(Protocol):
    """What a hub fans out: anything of one account (message events, inbox changes)."""

    @property
    def account_id(self) -> UUID: ...


E = TypeVar("E", bound=AccountScoped)


FELL_BEHIND = "subscriber fell behind; resubscribe with `after`"
INTERRUPTED = "live events were interrupted; resubscribe with `after`"


class CutOff(Exception):
    """A live subscriber was given everything up to a point and then cut off: an expected
    end (the client resubscribes from its cursor), not a failure."""

    default_message = FELL_BEHIND

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class SubscriberTooSlow(CutOff):
    """It did not read fast enough and its mailbox (or its shared feed's) filled up."""


class LiveEventsInterrupted(CutOff):
    """The live source lost events, e.g. its pub/sub connection dropped."""

    default_message = INTERRUPTED


class Mailbox(Generic[T]):
    """A bounded FIFO with one reader that never blocks its writers.

    Cheaper than ``asyncio.Queue`` on the fan-out path (one append and at most one wake-up
    per item), which runs once per event per subscriber.
    """

    __slots__ = ("_cause", "_items", "_size", "_waiter", "overflowed")

    def __init__(self, size: int) -> None:
        self._items: deque[T] = deque()
        self._size = size
        self._waiter: asyncio.Future[None] | None = None
        self._cause: type[CutOff] = SubscriberTooSlow
        self.overflowed = False

    def offer(self, item: T) -> None:
        if self.overflowed:
            return
        if len(self._items) >= self._size:
            # Nothing queued is dropped: the reader gets every item up to this point, with no
            # gap, and is then cut off, so resuming from its last cursor loses nothing.
            self.cut_off()
            return
        self._items.append(item)
        self._wake()

    @property
    def idle(self) -> bool:
        """Empty, with its reader waiting for the next item (so it is handling none)."""
        return self._waiter is not None and not self.overflowed

    def cut_off(self, cause: type[CutOff] | None = None) -> None:
        """The reader gets what is queued, then ``cause`` (the first one given) is raised."""
        if cause is not None and not self.overflowed:
            self._cause = cause
        self.overflowed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self.overflowed:
                raise self._cause()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class EventHub(Generic[E]):
    """Live items of each account, fanned out to the local subscribers of that account."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[UUID, set[Mailbox[E]]] = defaultdict(set)

    @property
    def accounts(self) -> set[UUID]:
        return {a for a, subs in self._subscribers.items() if subs}

    def subscribers(self, account_id: UUID) -> int:
        return len(self._subscribers.get(account_id, ()))

    def dispatch(self, events: Sequence[E]) -> None:
        for event in events:
            for subscriber in tuple(self._subscribers.get(event.account_id, ())):
                subscriber.offer(event)

    def interrupt(self) -> None:
        """The live source lost events (its connection dropped): every subscriber gets what
        it has and is then cut off, so that it resumes from its cursor instead of silently
        missing what was published meanwhile."""
        count = 0
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.cut_off(LiveEventsInterrupted)
                count += 1
        if count:
            # One line for the process; each subscription notes its own end at info.
            log.warning("live_subscribers_interrupted", subscribers=count)

    @asynccontextmanager
    async def subscribe(self, account_id: UUID) -> AsyncIterator[AsyncIterator[E]]:
        subscriber: Mailbox[E] = Mailbox(self._queue_size)
        self._subscribers[account_id].add(subscriber)
        try:
            yield subscriber
        finally:
            subs = self._subscribers.get(account_id)
            if subs is not None:
                subs.discard(subscriber)
                if not subs:
                    del self._subscribers[account_id]
