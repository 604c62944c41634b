"""gateway.services.fanout.SharedFeeds: one broker subscription and one rendering per feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from uuid import UUID, uuid4

import pytest

from gateway.domain.records import MessageEvent
from gateway.services.fanout import LiveItem, Rendered, SharedFeeds, SharedRendering
from gateway.services.hub import EventHub, SubscriberTooSlow
from tests.events import accepted_event
from workers.memory import MemoryBroker

CONVERSATION = uuid4()


def event(account: UUID, *, conversation: UUID = CONVERSATION) -> MessageEvent:
    return accepted_event(account, conversation=conversation)


class Renderer:
    def __init__(self, *, fail_on: set[int] | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on or set()
        self.gate = asyncio.Event()
        self.gate.set()

    async def render(self, e: MessageEvent) -> bytes | None:
        await self.gate.wait()
        self.calls.append(e.id)
        if e.id in self.fail_on:
            return None
        return b'{"data":%d}' % e.id


def everything(_: MessageEvent) -> bool:
    return True


async def take(items: AsyncIterator[LiveItem], n: int) -> list[LiveItem]:
    return [await asyncio.wait_for(anext(items), 5) for _ in range(n)]


def ids(items: list[LiveItem]) -> list[int]:
    return [i.event.id if isinstance(i, Rendered) else i.id for i in items]


class CountingBroker:
    """A MemoryBroker that counts its subscriptions (each is one hub subscriber)."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.memory = MemoryBroker()
        self.memory.hub = EventHub(queue_size=queue_size)
        self.subscriptions = 0

    def subscribe(
        self, account_id: UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[MessageEvent]]:
        self.subscriptions += 1
        return self.memory.subscribe(account_id)

    def publish(self, *events: MessageEvent) -> None:
        self.memory.hub.dispatch(events)


async def test_members_of_a_feed_share_one_rendering_of_each_event() -> None:
    broker, renderer = CountingBroker(), Renderer()
    feeds = SharedFeeds(broker)
    a = uuid4()
    shared = SharedRendering(key="q", render=renderer.render)
    async with (
        feeds.join(a, shared, everything) as first,
        feeds.join(a, shared, everything) as second,
        feeds.join(a, SharedRendering(key="q", render=Renderer().render), everything) as third,
    ):
        assert broker.subscriptions == 1 and len(feeds) == 1 and feeds.members(a) == 3
        published = [event(a), event(a)]
        broker.publish(*published)
        got = [await take(m, 2) for m in (first, second, third)]
    assert renderer.calls == [e.id for e in published], "rendered once per event, in order"
    for items in got:
        assert ids(items) == [e.id for e in published]
        assert all(isinstance(i, Rendered) for i in items)
    assert got[0][0] is got[1][0] is got[2][0], "the very same rendering for every member"
    assert feeds.rendered == 2 and feeds.unrendered == 0


async def test_keys_and_accounts_separate_feeds() -> None:
    broker = CountingBroker()
    feeds = SharedFeeds(broker)
    a, b = uuid4(), uuid4()
    one, two = Renderer(), Renderer()
    async with (
        feeds.join(a, SharedRendering("q1", one.render), everything) as a1,
        feeds.join(a, SharedRendering("q2", two.render), everything) as a2,
        feeds.join(b, SharedRendering("q1", one.render), everything) as b1,
    ):
        assert len(feeds) == 3 and broker.subscriptions == 3
        mine, theirs = event(a), event(b)
        broker.publish(mine, theirs)
        assert ids(await take(a1, 1)) == [mine.id]
        assert ids(await take(a2, 1)) == [mine.id]
        assert ids(await take(b1, 1)) == [theirs.id]
        marker = event(a)
        broker.publish(marker)
        assert ids(await take(a1, 1)) == [marker.id], "b's event never reached a's feed"


async def test_each_member_gets_only_what_it_wants_and_unwanted_events_are_not_rendered() -> None:
    broker, renderer = CountingBroker(), Renderer()
    feeds = SharedFeeds(broker)
    a, elsewhere = uuid4(), uuid4()
    shared = SharedRendering("q", renderer.render)
    async with (
        feeds.join(a, shared, lambda e: e.conversation_id == CONVERSATION) as here,
        feeds.join(a, shared, lambda e: e.conversation_id == elsewhere) as there,
    ):
        nobody = event(a, conversation=uuid4())
        first, second = event(a), event(a, conversation=elsewhere)
        broker.publish(nobody, first, second)
        assert ids(await take(here, 1)) == [first.id]
        assert ids(await take(there, 1)) == [second.id]
    assert renderer.calls == [first.id, second.id]


async def test_an_event_that_fails_to_render_is_handed_over_unrendered() -> None:
    broker = CountingBroker()
    a = uuid4()
    failing = event(a)

    async def render(e: MessageEvent) -> bytes | None:
        if e.id == failing.id:
            raise LookupError("boom")
        return None

    feeds = SharedFeeds(broker)
    async with feeds.join(a, SharedRendering("q", render), everything) as items:
        broker.publish(failing, event(a))
        got = await take(items, 2)
    assert got[0] == failing, "each member renders it on its own"
    assert isinstance(got[1], MessageEvent), "render returned None: unrendered too"
    assert feeds.unrendered == 2


async def test_a_slow_member_is_cut_off_after_all_it_was_given_and_the_others_go_on() -> None:
    broker = CountingBroker()
    feeds = SharedFeeds(broker, member_queue_size=3)
    a = uuid4()
    shared = SharedRendering("q", Renderer().render)
    async with feeds.join(a, shared, everything) as slow, feeds.join(a, shared, everything) as fast:
        published = []
        for _ in range(6):
            one = event(a)
            published.append(one)
            broker.publish(one)
            assert ids(await take(fast, 1)) == [one.id]
        seen: list[LiveItem] = []
        with pytest.raises(SubscriberTooSlow):
            for _ in range(10):
                seen.append(await asyncio.wait_for(anext(slow), 5))
        assert ids(seen) == [e.id for e in published[:3]], "no gap before the cut"
        last = event(a)
        broker.publish(last)
        assert ids(await take(fast, 1)) == [last.id]


async def test_a_feed_that_falls_behind_cuts_off_every_member_without_a_gap() -> None:
    broker, renderer = CountingBroker(queue_size=2), Renderer()
    feeds = SharedFeeds(broker)
    a = uuid4()
    shared = SharedRendering("q", renderer.render)
    async with feeds.join(a, shared, everything) as one, feeds.join(a, shared, everything) as two:
        renderer.gate.clear()
        published = [event(a) for _ in range(6)]
        broker.publish(published[0])
        await asyncio.sleep(0)  # the feed takes the first and waits in render
        broker.publish(*published[1:])  # two fit in the feed's queue, the rest overflow
        renderer.gate.set()
        for member in (one, two):
            seen: list[LiveItem] = []
            with pytest.raises(SubscriberTooSlow):
                for _ in range(10):
                    seen.append(await asyncio.wait_for(anext(member), 5))
            assert ids(seen) == [e.id for e in published[: len(seen)]]
            assert len(seen) == 3
        assert len(feeds) == 0, "new members get a new feed"
        async with feeds.join(a, shared, everything) as fresh:
            assert len(feeds) == 1
            later = event(a)
            broker.publish(later)
            assert ids(await take(fresh, 1)) == [later.id]
    assert len(feeds) == 0
    assert broker.memory.hub.accounts == set()


async def test_the_last_member_leaving_closes_the_feed_and_its_broker_subscription() -> None:
    broker = CountingBroker()
    feeds = SharedFeeds(broker)
    a = uuid4()
    shared = SharedRendering("q", Renderer().render)
    async with feeds.join(a, shared, everything):
        async with feeds.join(a, shared, everything):
            pass
        assert len(feeds) == 1 and broker.memory.hub.accounts == {a}
    assert len(feeds) == 0 and broker.memory.hub.accounts == set()
    with pytest.raises(RuntimeError, match="went away"):
        async with feeds.join(a, shared, everything):
            raise RuntimeError("client went away")
    assert len(feeds) == 0 and broker.memory.hub.accounts == set()


async def test_concurrent_first_members_open_one_feed() -> None:
    broker = CountingBroker()
    feeds = SharedFeeds(broker)
    a = uuid4()
    shared = SharedRendering("q", Renderer().render)
    joined = asyncio.Event()
    leave = asyncio.Event()

    async def member() -> None:
        async with feeds.join(a, shared, everything):
            if feeds.members(a) == 20:
                joined.set()
            await leave.wait()

    tasks = [asyncio.create_task(member()) for _ in range(20)]
    await asyncio.wait_for(joined.wait(), 5)
    assert broker.subscriptions == 1 and len(feeds) == 1
    leave.set()
    await asyncio.gather(*tasks)
    assert len(feeds) == 0 and broker.memory.hub.accounts == set()


class Transport:
    """A member's synchronous delivery: takes payloads while open, declines when paused."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.paused = False

    def send_now(self, payload: bytes) -> bool:
        if self.paused:
            return False
        self.written.append(payload)
        return True


async def test_idle_members_are_written_to_at_once_and_busy_ones_queue_in_order() -> None:
    broker, renderer = CountingBroker(), Renderer(fail_on=set())
    feeds = SharedFeeds(broker)
    a = uuid4()
    transport = Transport()
    shared = SharedRendering("q", renderer.render, send_now=transport.send_now)
    async with feeds.join(a, shared, everything) as items:
        first = event(a)
        broker.publish(first)
        # Not idle yet (nobody reads the mailbox): queued, not written.
        got = await take(items, 1)
        assert ids(got) == [first.id] and transport.written == []

        waiting = asyncio.ensure_future(anext(items))
        await asyncio.sleep(0)  # now the reader waits on an empty mailbox: idle
        direct = [event(a), event(a)]
        broker.publish(*direct)
        for _ in range(100):
            if len(transport.written) == 2:
                break
            await asyncio.sleep(0)
        assert transport.written == [b'{"data":%d}' % e.id for e in direct]
        assert not waiting.done(), "written directly: the reader was never woken"
        assert feeds.sent_directly >= 2

        transport.paused = True
        declined, after = event(a), event(a)
        broker.publish(declined, after)
        # Declined: queued, and everything behind it queues too (the reader is busy now).
        assert ids([await asyncio.wait_for(waiting, 5)]) == [declined.id]
        transport.paused = False
        assert ids(await take(items, 1)) == [after.id]
        assert len(transport.written) == 2


async def test_unrendered_events_are_never_written_directly() -> None:
    broker = CountingBroker()
    feeds = SharedFeeds(broker)
    a = uuid4()
    transport = Transport()
    failing = event(a)
    shared = SharedRendering(
        "q", Renderer(fail_on={failing.id}).render, send_now=transport.send_now
    )
    async with feeds.join(a, shared, everything) as items:
        waiting = asyncio.ensure_future(anext(items))
        await asyncio.sleep(0)
        broker.publish(failing)
        assert await asyncio.wait_for(waiting, 5) == failing, "the member renders it itself"
    assert transport.written == []
