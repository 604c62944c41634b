"""Unit of work: one use case is one transaction, and what it tells others waits for the commit.

A use case opens a unit, calls its stores (which join the unit's transaction), and names the
events to publish and the messages to enqueue as it goes. Nothing named leaves the unit before
the transaction has committed:

- The body raises: the transaction is rolled back and nothing is handed over; the exception
  goes on to the caller.
- The commit fails: nothing is handed over; the commit's exception goes on to the caller.
- The commit succeeds: the events are published, then the inbox changes, then the messages
  enqueued, each in the order they were named. A failure of any is logged and swallowed,
  never raised: the database work is done and must not be run again (a caller that retries
  on an exception, such as the group-commit coalescer, would otherwise repeat it). What a
  failure costs is covered elsewhere: a message not enqueued stays QUEUED in the database,
  where the sweeper finds it; a live event not published is in the audit trail, from which
  subscribers resume by cursor; an inbox change not published is only late, shown by the
  state the next change of its conversation reads (or a reload). A failed hand-over does not
  keep the next one from being tried.

The transaction is a port (``Transaction``): the database decides what committing means. On
PostgreSQL, a unit whose only work is one self-contained statement runs it without BEGIN and
COMMIT; the statement committing is the unit's commit (``persistence/unit_of_work.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from types import TracebackType
from typing import Self

import structlog

from gateway.domain.inbox import InboxChange
from gateway.domain.pacing import Queued
from gateway.domain.records import MessageEvent
from gateway.services.ports import Broker, Transaction, UnitOfWork

log = structlog.get_logger(__name__)


class Outbox:
    """What a use case hands to the broker after its commit, in the order it was named."""

    def __init__(self) -> None:
        self.events: list[MessageEvent] = []
        self.inbox: list[InboxChange] = []
        self.work: list[Queued] = []

    async def hand_over(self, broker: Broker) -> None:
        """Publish, then enqueue; never raises (see the module docstring)."""
        if self.events:
            try:
                await broker.publish(self.events)
            except Exception:
                log.warning("publish_after_commit_failed", events=len(self.events), exc_info=True)
        if self.inbox:
            try:
                await broker.publish_inbox(self.inbox)
            except Exception:
                log.warning("inbox_publish_failed", changes=len(self.inbox), exc_info=True)
        if self.work:
            try:
                await broker.enqueue(self.work)
            except Exception:
                log.exception("enqueue_after_commit_failed", messages=len(self.work))


class Unit:
    """One unit of work: a transaction and an outbox, handed over only after the commit."""

    def __init__(self, transaction: Transaction, broker: Broker) -> None:
        self._transaction = transaction
        self._broker = broker
        self._outbox = Outbox()

    def publish(self, events: Iterable[MessageEvent]) -> None:
        self._outbox.events.extend(events)

    def publish_inbox(self, changes: Iterable[InboxChange]) -> None:
        self._outbox.inbox.extend(changes)

    def enqueue(self, work: Iterable[Queued]) -> None:
        self._outbox.work.extend(work)

    async def __aenter__(self) -> Self:
        await self._transaction.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Commits or rolls back; a failed commit raises from here, before any hand-over.
        await self._transaction.__aexit__(exc_type, exc, tb)
        if exc_type is None:
            await self._outbox.hand_over(self._broker)


class Units:
    """Makes the units of work of a process: ``transactions`` gives each its transaction.

    Without it a unit has no transaction of its own and each store call commits by itself:
    enough for a use case of one store call, and for stores that are not a database.
    """

    def __init__(
        self, broker: Broker, transactions: Callable[[], Transaction] = nullcontext
    ) -> None:
        self._broker = broker
        self._transactions = transactions

    def __call__(self) -> UnitOfWork:
        return Unit(self._transactions(), self._broker)
