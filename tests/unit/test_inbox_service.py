"""gateway.services.inbox: read marks told to every watcher of the account after their commit,
each change delivered with its conversation's state read after it.

Storage is a fake of the three queries the service uses (the rules of the read cursor are
checked on both databases in tests/integration/test_inbox.py); the broker is the real
in-process MemoryBroker, whose dispatch is synchronous: a watcher's task runs only when the
test yields, which lets a test change the state between a publish and its delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from gateway.domain.inbox import InboxChange, InboxChangeKind, InboxState
from gateway.domain.records import Conversation
from gateway.services.inbox import InboxService
from gateway.services.unit_of_work import Units
from workers.memory import MemoryBroker

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
READ, RECEIVED = InboxChangeKind.READ, InboxChangeKind.RECEIVED


class FakeQueries:
    """Conversations with their inbound message ids (ascending) and a forward-only cursor."""

    def __init__(self) -> None:
        self.rows: dict[UUID, Conversation] = {}
        self.inbound: dict[UUID, list[UUID]] = {}

    def conversation(self, account_id: UUID, arrived: int = 0) -> Conversation:
        found = Conversation(uuid4(), account_id, ("+14155550001", "+14155550002"), NOW, NOW)
        self.rows[found.id] = found
        self.inbound[found.id] = []
        for _ in range(arrived):
            self.arrive(found.id)
        return found

    def arrive(self, conversation_id: UUID) -> UUID:
        messages = self.inbound[conversation_id]
        message_id = UUID(int=(messages[-1].int + 1) if messages else 1)
        messages.append(message_id)
        return message_id

    async def mark_read(
        self, account_id: UUID, conversation_id: UUID, up_to: UUID | None
    ) -> Conversation | None:
        found = self.rows.get(conversation_id)
        messages = self.inbound.get(conversation_id, [])
        target = up_to if up_to is not None else (messages[-1] if messages else None)
        if found is None or found.account_id != account_id or target not in messages:
            return None
        if found.read_up_to is None or found.read_up_to < target:
            found = self.rows[conversation_id] = replace(found, read_up_to=target)
        return found

    async def conversations(
        self, account_id: UUID, ids: Sequence[UUID]
    ) -> dict[UUID, Conversation]:
        return {i: c for i in ids if (c := self.rows.get(i)) and c.account_id == account_id}

    async def unread_counts(self, conversation_ids: Sequence[UUID]) -> dict[UUID, int]:
        counts = {}
        for i in conversation_ids:
            cursor = self.rows[i].read_up_to
            counts[i] = sum(cursor is None or m > cursor for m in self.inbound[i])
        return counts


class Failing(Exception):
    pass


@contextlib.asynccontextmanager
async def commit_fails() -> AsyncIterator[None]:
    yield
    raise Failing("the server went away during COMMIT")


def service() -> tuple[InboxService, FakeQueries, MemoryBroker]:
    queries, broker = FakeQueries(), MemoryBroker()
    return InboxService(queries, broker, Units(broker)), queries, broker  # type: ignore[arg-type]


class Watcher:
    """One ``changes`` stream read by a task of its own into a queue."""

    def __init__(self, stream: AsyncIterator[InboxState]) -> None:
        self.received: asyncio.Queue[InboxState] = asyncio.Queue()
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: AsyncIterator[InboxState]) -> None:
        async for state in stream:
            await self.received.put(state)

    async def next(self) -> InboxState:
        return await asyncio.wait_for(self.received.get(), 5)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def watch(
    inbox: InboxService, broker: MemoryBroker, account: UUID, conversation: UUID | None = None
) -> Watcher:
    before = broker.inbox_hub.subscribers(account)
    watcher = Watcher(inbox.changes(account, conversation_id=conversation))
    for _ in range(100):
        if broker.inbox_hub.subscribers(account) > before:
            return watcher
        await asyncio.sleep(0)
    raise AssertionError("the watcher never subscribed")


async def test_a_read_mark_reaches_every_tab_of_the_account_and_no_other() -> None:
    inbox, queries, broker = service()
    account, stranger = uuid4(), uuid4()
    talk, other_talk = queries.conversation(account, 3), queries.conversation(account, 1)
    foreign = queries.conversation(stranger, 1)
    tabs = [await watch(inbox, broker, account) for _ in range(2)]
    elsewhere = await watch(inbox, broker, account, other_talk.id)
    theirs = await watch(inbox, broker, stranger)

    second = queries.inbound[talk.id][1]
    read = await inbox.mark_read(account, talk.id, second)
    assert read is not None and read.read_up_to == second
    told = InboxState(InboxChange(account, talk.id, READ, second), 1, second)
    for tab in tabs:
        assert await tab.next() == told

    # The filtered tab and the other account's: their own change is the first they get, so
    # nothing of the mark above came before it.
    await inbox.mark_read(account, other_talk.id, None)
    assert (await elsewhere.next()).change.conversation_id == other_talk.id
    await inbox.mark_read(stranger, foreign.id, None)
    assert (await theirs.next()).change.account_id == stranger
    for watcher in [*tabs, elsewhere, theirs]:
        await watcher.close()


async def test_the_state_is_read_when_the_change_is_delivered() -> None:
    inbox, queries, broker = service()
    account = uuid4()
    talk = queries.conversation(account)
    tab = await watch(inbox, broker, account)
    first = queries.arrive(talk.id)
    await broker.publish_inbox([InboxChange(account, talk.id, RECEIVED, first)])
    # A second arrival commits before the tab got to the first change: the tab is shown the
    # count as it is, never the older one.
    second = queries.arrive(talk.id)
    assert (await tab.next()).unread_count == 2
    await broker.publish_inbox([InboxChange(account, talk.id, RECEIVED, second)])
    assert await tab.next() == InboxState(InboxChange(account, talk.id, RECEIVED, second), 2, None)
    await tab.close()


async def test_a_change_of_a_conversation_gone_since_is_skipped() -> None:
    inbox, queries, broker = service()
    account = uuid4()
    gone, kept = queries.conversation(account, 1), queries.conversation(account, 1)
    tab = await watch(inbox, broker, account)
    del queries.rows[gone.id]
    await broker.publish_inbox(
        [
            InboxChange(account, gone.id, RECEIVED, queries.inbound[gone.id][0]),
            InboxChange(account, kept.id, RECEIVED, queries.inbound[kept.id][0]),
        ]
    )
    assert (await tab.next()).change.conversation_id == kept.id
    await tab.close()


async def test_nothing_is_told_of_a_mark_that_failed_or_did_not_commit() -> None:
    queries, broker = FakeQueries(), MemoryBroker()
    account = uuid4()
    talk = queries.conversation(account, 1)
    failing = InboxService(queries, broker, Units(broker, commit_fails))  # type: ignore[arg-type]
    inbox = InboxService(queries, broker, Units(broker))  # type: ignore[arg-type]
    tab = await watch(inbox, broker, account)
    with pytest.raises(Failing):
        await failing.mark_read(account, talk.id, None)
    assert await inbox.mark_read(uuid4(), talk.id, None) is None, "another account's"

    marked = queries.arrive(talk.id)
    await inbox.mark_read(account, talk.id, None)
    # The first change the tab gets is the committed mark's.
    assert (await tab.next()).change == InboxChange(account, talk.id, READ, marked)
    await tab.close()
