"""gateway.services.events.EventStream: replay from storage, then live, no gap, no duplicate.

Storage is a fake QueryRepository (only ``events_after``) whose hook runs inside each replay
query, which is exactly when a concurrently committed event is published: it can be both in
storage and live, or (committed after the page was read) only live. The broker is the real
in-process MemoryBroker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from unittest import mock
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.services import events as events_module
from gateway.services.events import REPLAY_PAGE, EventStream
from gateway.services.ports import ALL_EVENTS, EventScope
from persistence.queries import QueryRepository
from workers.memory import MemoryBroker

ACCOUNT = UUID("00000000-0000-4000-8000-0000000000a1")
OTHER_ACCOUNT = UUID("00000000-0000-4000-8000-0000000000b2")
CONVERSATION = UUID("00000000-0000-4000-8000-00000000c001")
OTHER_CONVERSATION = UUID("00000000-0000-4000-8000-00000000c002")
MESSAGE = UUID("00000000-0000-4000-8000-00000000d001")
OTHER_MESSAGE = UUID("00000000-0000-4000-8000-00000000d002")


def ev(
    event_id: int,
    *,
    account: UUID = ACCOUNT,
    conversation: UUID = CONVERSATION,
    message: UUID = MESSAGE,
) -> MessageEvent:
    return MessageEvent(
        id=event_id,
        account_id=account,
        message_id=message,
        conversation_id=conversation,
        status=MessageStatus.SENDING,
        kind="attempt",
        detail={"n": event_id},
        occurred_at=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
    )


@dataclass
class Call:
    account_id: UUID
    after: int
    scope: EventScope
    limit: int


@dataclass
class FakeQueries:
    """Stored events of all accounts; ``during_replay(n)`` runs inside the n-th query."""

    stored: list[MessageEvent] = field(default_factory=list)
    during_replay: Callable[[int], Awaitable[None]] | None = None
    calls: list[Call] = field(default_factory=list)

    async def events_after(
        self, account_id: UUID, after: int, scope: EventScope = ALL_EVENTS, *, limit: int = 500
    ) -> list[MessageEvent]:
        self.calls.append(Call(account_id, after, scope, limit))
        if self.during_replay is not None:
            await self.during_replay(len(self.calls))
        matching = [
            e
            for e in self.stored
            if e.account_id == account_id and e.id > after and scope.covers(e)
        ]
        return sorted(matching, key=lambda e: e.id)[:limit]


@contextlib.asynccontextmanager
async def opened(
    queries: FakeQueries, broker: MemoryBroker, **options: Any
) -> AsyncIterator[AsyncIterator[MessageEvent]]:
    stream = EventStream(cast(QueryRepository, queries), broker).stream(ACCOUNT, **options)
    try:
        yield stream
    finally:
        await cast(AsyncGenerator[MessageEvent, None], stream).aclose()
    assert broker.hub.accounts == set(), "a closed stream must leave the broker"


async def take(stream: AsyncIterator[MessageEvent], n: int) -> list[int]:
    """Ids of the next ``n`` events (each awaited for a bounded time)."""
    return [(await asyncio.wait_for(anext(stream), 5)).id for _ in range(n)]


async def started(
    stream: AsyncIterator[MessageEvent], broker: MemoryBroker
) -> asyncio.Future[MessageEvent]:
    """Start waiting for the first event; returns once the stream listens to the broker."""
    first = asyncio.ensure_future(anext(stream))
    for _ in range(1000):
        if broker.hub.accounts:
            return first
        await asyncio.sleep(0)
    raise AssertionError("the stream never subscribed to the broker")


async def then_only(broker: MemoryBroker, stream: AsyncIterator[MessageEvent]) -> None:
    """Nothing else is pending: the next event is a fresh live one published now."""
    sentinel = ev(10**9)
    following = await started(stream, broker)
    await broker.publish([sentinel])
    assert (await asyncio.wait_for(following, 5)).id == sentinel.id


# --- replay, then live -----------------------------------------------------------------------


async def test_replay_then_live_without_gap_or_duplicate() -> None:
    broker = MemoryBroker()
    queries = FakeQueries([ev(1), ev(2), ev(3)])

    async def commit_during_replay(call: int) -> None:
        if call == 1:
            committed = ev(4)  # committed before the page was read: stored AND live
            queries.stored.append(committed)
            await broker.publish([committed, ev(5)])  # 5: committed after, live only

    queries.during_replay = commit_during_replay
    async with opened(queries, broker, after=0) as stream:
        assert await take(stream, 5) == [1, 2, 3, 4, 5]
        await broker.publish([ev(6)])
        assert await take(stream, 1) == [6]
        await then_only(broker, stream)
    assert [c.after for c in queries.calls] == [0]


async def test_an_event_committed_out_of_id_order_during_replay_is_not_lost() -> None:
    """Ids are allotted before commit: 3 can become visible after 4 was read and replayed."""
    broker = MemoryBroker()
    queries = FakeQueries([ev(1), ev(2), ev(4)])

    async def commit_during_replay(call: int) -> None:
        if call == 1:
            await broker.publish([ev(4)])

    queries.during_replay = commit_during_replay
    async with opened(queries, broker, after=0) as stream:
        assert await take(stream, 3) == [1, 2, 4]
        await broker.publish([ev(3)])  # its transaction commits only now
        assert await take(stream, 1) == [3]
        await then_only(broker, stream)


@pytest.mark.parametrize("after", [0, 5, 8])
async def test_events_up_to_after_are_never_yielded(after: int) -> None:
    broker = MemoryBroker()
    queries = FakeQueries([ev(i) for i in range(1, 9)])

    async def publish_old_and_new(call: int) -> None:
        if call == 1:
            await broker.publish([ev(3), ev(5), ev(7), ev(after), ev(9)])

    queries.during_replay = publish_old_and_new
    async with opened(queries, broker, after=after) as stream:
        expected = [i for i in range(1, 10) if i > after]
        assert await take(stream, len(expected)) == expected
        # Live too, after the replay: an old event published again is still not yielded.
        await broker.publish([ev(1), ev(after), ev(10)])
        assert await take(stream, 1) == [10]
        await then_only(broker, stream)
    assert queries.calls[0].after == after


async def test_without_after_nothing_is_replayed_and_every_live_event_comes_once() -> None:
    broker = MemoryBroker()
    queries = FakeQueries([ev(1), ev(2)])
    async with opened(queries, broker, after=None) as stream:
        first = await started(stream, broker)
        await broker.publish([ev(2), ev(7), ev(3)])
        assert (await asyncio.wait_for(first, 5)).id == 2
        assert await take(stream, 2) == [7, 3]
        await then_only(broker, stream)
    assert queries.calls == []


async def test_only_the_accounts_live_events_are_yielded() -> None:
    broker = MemoryBroker()
    queries = FakeQueries([ev(1), ev(2, account=OTHER_ACCOUNT)])

    async def publish_both_accounts(call: int) -> None:
        await broker.publish([ev(3, account=OTHER_ACCOUNT), ev(4)])

    queries.during_replay = publish_both_accounts
    async with opened(queries, broker, after=0) as stream:
        assert await take(stream, 2) == [1, 4]
        await then_only(broker, stream)
    assert {c.account_id for c in queries.calls} == {ACCOUNT}


# --- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "wanted"),
    [
        ({"conversation_id": CONVERSATION}, {1, 2, 5, 6}),
        ({"message_id": MESSAGE}, {1, 3, 5, 7}),
        ({"conversation_id": CONVERSATION, "message_id": MESSAGE}, {1, 5}),
        ({}, {1, 2, 3, 4, 5, 6, 7, 8}),
    ],
    ids=["conversation", "message", "both", "none"],
)
@pytest.mark.parametrize("after", [None, 0], ids=["live-only", "replay"])
async def test_filters_apply_to_live_events(
    options: dict[str, UUID], wanted: set[int], after: int | None
) -> None:
    def mixed(base: int) -> list[MessageEvent]:
        """Every combination of matching conversation and message."""
        return [
            ev(base + 1, conversation=CONVERSATION, message=MESSAGE),
            ev(base + 2, conversation=CONVERSATION, message=OTHER_MESSAGE),
            ev(base + 3, conversation=OTHER_CONVERSATION, message=MESSAGE),
            ev(base + 4, conversation=OTHER_CONVERSATION, message=OTHER_MESSAGE),
        ]

    broker = MemoryBroker()
    queries = FakeQueries()  # nothing stored: every event below is live only
    async with opened(queries, broker, after=after, **options) as stream:
        first = await started(stream, broker)
        await broker.publish(mixed(0))
        await broker.publish(mixed(4))
        received = [(await asyncio.wait_for(first, 5)).id, *await take(stream, len(wanted) - 1)]
        assert received == sorted(wanted)
        await then_only(broker, stream)
    for call in queries.calls:
        assert (call.scope.conversation_id, call.scope.message_id) == (
            options.get("conversation_id"),
            options.get("message_id"),
        )


async def test_filters_are_passed_to_the_replay_query() -> None:
    broker = MemoryBroker()
    queries = FakeQueries(
        [ev(1), ev(2, conversation=OTHER_CONVERSATION), ev(3, message=OTHER_MESSAGE), ev(4)]
    )
    async with opened(
        queries, broker, after=0, conversation_id=CONVERSATION, message_id=MESSAGE
    ) as stream:
        assert await take(stream, 2) == [1, 4]
        await then_only(broker, stream)
    assert queries.calls[0] == Call(ACCOUNT, 0, EventScope(CONVERSATION, MESSAGE), REPLAY_PAGE)


# --- paging ----------------------------------------------------------------------------------


async def test_replay_pages_through_more_than_one_page() -> None:
    total = 2 * REPLAY_PAGE + 7
    broker = MemoryBroker()
    ids = [10 + 2 * i for i in range(total)]  # not contiguous: pages continue from ids
    queries = FakeQueries([ev(i) for i in ids])

    async def commit_during_second_page(call: int) -> None:
        if call == 2:
            # Stored in the third page (and live), and one that is live only.
            await broker.publish([ev(ids[-1]), ev(ids[-1] + 1)])

    queries.during_replay = commit_during_second_page
    async with opened(queries, broker, after=5) as stream:
        assert await take(stream, total + 1) == [*ids, ids[-1] + 1]
        await then_only(broker, stream)
    assert [c.after for c in queries.calls] == [5, ids[REPLAY_PAGE - 1], ids[2 * REPLAY_PAGE - 1]]
    assert {c.limit for c in queries.calls} == {REPLAY_PAGE}


async def test_replay_of_exactly_full_pages_ends_and_goes_live() -> None:
    total = 2 * REPLAY_PAGE
    broker = MemoryBroker()
    queries = FakeQueries([ev(i) for i in range(1, total + 1)])
    async with opened(queries, broker, after=0) as stream:
        assert await take(stream, total) == list(range(1, total + 1))
        await broker.publish([ev(total), ev(total + 1)])
        assert await take(stream, 1) == [total + 1]
        await then_only(broker, stream)


# --- property: any interleaving of commits and replay pages ----------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[int], int, list[tuple[int, list[int]]]]:
    """(page size, stored ids, after, [(query number, ids published during it)])."""
    page = draw(st.integers(1, 4))
    stored = sorted(draw(st.sets(st.integers(1, 40), max_size=15)))
    after = draw(st.integers(0, 42))
    not_stored = [i for i in range(1, 45) if i not in stored]
    live_only = draw(st.lists(st.sampled_from(not_stored), unique=True, max_size=6))
    republished = draw(st.lists(st.sampled_from(stored), unique=True)) if stored else []
    published = draw(st.permutations(live_only + republished))
    calls = 1 + len([i for i in stored if i > after]) // page
    publications = [(draw(st.integers(1, calls)), [i]) for i in published]
    return page, stored, after, publications


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_replay_and_live_are_gap_free_and_duplicate_free(
    scenario: tuple[int, list[int], int, list[tuple[int, list[int]]]],
) -> None:
    page, stored, after, publications = scenario
    replayed = [i for i in stored if i > after]
    queries_made = 1 + len(replayed) // page  # the last one returns a short (maybe empty) page
    in_publish_order = [
        i
        for call in range(1, queries_made + 1)
        for at, batch in publications
        if at == call
        for i in batch
    ]
    live = [i for i in in_publish_order if i > after and i not in replayed]

    async def run() -> list[int]:
        broker = MemoryBroker()
        queries = FakeQueries([ev(i) for i in stored])
        published: list[int] = []

        async def publish_during(call: int) -> None:
            for at, batch in publications:
                if at == call:
                    published.extend(batch)
                    await broker.publish([ev(i) for i in batch])

        queries.during_replay = publish_during
        async with opened(queries, broker, after=after) as stream:
            got = await take(stream, len(replayed) + len(live))
            await then_only(broker, stream)
        assert published == in_publish_order
        return got

    with mock.patch.object(events_module, "REPLAY_PAGE", page):
        got = asyncio.run(run())
    assert got == replayed + live
