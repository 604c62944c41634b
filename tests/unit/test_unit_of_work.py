"""The unit of work hands its events and enqueues over only after its commit, and never fails
the use case once the commit is done."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from uuid import uuid4

import pytest
import structlog

from gateway.domain.inbox import InboxChange, InboxChangeKind
from gateway.domain.pacing import Queued
from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.services.unit_of_work import Units


def event(n: int) -> MessageEvent:
    return MessageEvent(
        n, uuid4(), uuid4(), uuid4(), MessageStatus.QUEUED, "accepted", None, datetime.now(UTC)
    )


class Journal:
    """What happened, in order, across the fake transaction and the fake broker."""

    def __init__(self) -> None:
        self.entries: list[str] = []


@asynccontextmanager
async def fake_transaction(journal: Journal, *, commit_fails: bool = False) -> AsyncIterator[None]:
    journal.entries.append("begin")
    try:
        yield
    except BaseException:
        journal.entries.append("rollback")
        raise
    if commit_fails:
        journal.entries.append("commit failed")
        raise ConnectionError("the server went away during COMMIT")
    journal.entries.append("commit")


class FakeBroker:
    def __init__(
        self, journal: Journal, *, publish_fails: bool = False, enqueue_fails: bool = False
    ) -> None:
        self.journal = journal
        self.publish_fails = publish_fails
        self.enqueue_fails = enqueue_fails
        self.published: list[MessageEvent] = []
        self.inbox: list[InboxChange] = []
        self.enqueued: list[Queued] = []

    async def publish(self, events: Sequence[MessageEvent]) -> None:
        self.journal.entries.append(f"publish {len(events)}")
        if self.publish_fails:
            raise ConnectionError("redis is down")
        self.published.extend(events)

    async def publish_inbox(self, changes: Sequence[InboxChange]) -> None:
        self.journal.entries.append(f"inbox {len(changes)}")
        if self.publish_fails:
            raise ConnectionError("redis is down")
        self.inbox.extend(changes)

    async def enqueue(self, work: Sequence[Queued]) -> None:
        self.journal.entries.append(f"enqueue {len(work)}")
        if self.enqueue_fails:
            raise ConnectionError("redis is down")
        self.enqueued.extend(work)


def queued() -> Queued:
    return Queued(uuid4(), uuid4(), "+14155550100")


def units(journal: Journal, **broker_faults: bool) -> tuple[Units, FakeBroker]:
    broker = FakeBroker(journal, **broker_faults)
    return Units(broker, partial(fake_transaction, journal)), broker  # type: ignore[arg-type]


async def test_events_and_enqueues_are_handed_over_after_the_commit_in_order() -> None:
    journal = Journal()
    make, broker = units(journal)
    events = [event(n) for n in range(1, 5)]
    ids = [queued() for _ in range(3)]
    change = InboxChange(uuid4(), uuid4(), InboxChangeKind.RECEIVED, uuid4())
    async with make() as work:
        work.publish(events[:2])
        work.enqueue(ids[:1])
        work.publish_inbox([change])
        work.publish(iter(events[2:]))
        work.enqueue(ids[1:])
        assert journal.entries == ["begin"], "nothing leaves the unit before its commit"
    assert journal.entries == ["begin", "commit", "publish 4", "inbox 1", "enqueue 3"]
    assert broker.published == events
    assert broker.inbox == [change]
    assert broker.enqueued == ids


async def test_nothing_is_handed_over_when_the_body_raises() -> None:
    journal = Journal()
    make, broker = units(journal)
    with pytest.raises(ValueError, match="refused"):
        async with make() as work:
            work.publish([event(1)])
            work.publish_inbox([InboxChange(uuid4(), uuid4(), InboxChangeKind.READ, uuid4())])
            work.enqueue([queued()])
            raise ValueError("refused")
    assert journal.entries == ["begin", "rollback"]
    assert broker.published == [] and broker.inbox == [] and broker.enqueued == []


async def test_nothing_is_handed_over_when_the_commit_fails() -> None:
    journal = Journal()
    broker = FakeBroker(journal)
    make = Units(broker, partial(fake_transaction, journal, commit_fails=True))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError, match="COMMIT"):
        async with make() as work:
            work.publish([event(1)])
            work.enqueue([queued()])
    assert journal.entries == ["begin", "commit failed"]
    assert broker.published == [] and broker.enqueued == []


async def test_a_failed_publish_is_logged_swallowed_and_the_enqueue_still_tried() -> None:
    journal = Journal()
    make, broker = units(journal, publish_fails=True)
    message_id = queued()
    with structlog.testing.capture_logs() as logs:
        async with make() as work:
            work.publish([event(1), event(2)])
            work.enqueue([message_id])
    assert journal.entries == ["begin", "commit", "publish 2", "enqueue 1"]
    assert broker.enqueued == [message_id]
    failed = [e for e in logs if e["event"] == "publish_after_commit_failed"]
    assert len(failed) == 1 and failed[0]["events"] == 2, logs


async def test_a_failed_enqueue_is_logged_and_swallowed_and_nothing_runs_again() -> None:
    journal = Journal()
    make, broker = units(journal, enqueue_fails=True)
    with structlog.testing.capture_logs() as logs:
        async with make() as work:
            work.publish([event(1)])
            work.enqueue([queued(), queued()])
    # One commit, one attempt each: the hand-over never raises into a caller that retries.
    assert journal.entries == ["begin", "commit", "publish 1", "enqueue 2"]
    assert len(broker.published) == 1
    failed = [e for e in logs if e["event"] == "enqueue_after_commit_failed"]
    assert len(failed) == 1 and failed[0]["messages"] == 2, logs


async def test_an_empty_unit_bothers_no_broker() -> None:
    journal = Journal()
    make, _ = units(journal)
    async with make():
        pass
    assert journal.entries == ["begin", "commit"]


async def test_each_unit_collects_its_own_work() -> None:
    journal = Journal()
    make, broker = units(journal)
    first, second = event(1), event(2)
    async with make() as work:
        work.publish([first])
    async with make() as work:
        work.publish([second])
    assert broker.published == [first, second]
    assert journal.entries.count("publish 1") == 2
