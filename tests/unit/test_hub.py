"""gateway.services.hub.EventHub: per-account fan-out with bounded, never-blocking mailboxes."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from gateway.domain.records import MessageEvent
from gateway.services.hub import EventHub, SubscriberTooSlow
from tests.events import accepted_event as event
from workers.memory import MemoryBroker


async def take(events: AsyncIterator[MessageEvent], n: int) -> list[MessageEvent]:
    """``n`` events that must already be queued (never waits for a publisher)."""
    taken: list[MessageEvent] = []
    for _ in range(n):
        taken.append(await anext(events))
    return taken


async def read_until_cut_off(events: AsyncIterator[MessageEvent]) -> list[MessageEvent]:
    taken: list[MessageEvent] = []
    with pytest.raises(SubscriberTooSlow):
        for _ in range(10_000):
            taken.append(await anext(events))
    return taken


async def test_events_fan_out_to_every_subscriber_of_their_account_only() -> None:
    hub = EventHub()
    a, b = uuid4(), uuid4()
    async with hub.subscribe(a) as a1, hub.subscribe(a) as a2, hub.subscribe(b) as b1:
        for_a = [event(a), event(a)]
        hub.dispatch(for_a)
        for_b = event(b)
        hub.dispatch([event(uuid4()), for_b])  # an account nobody listens to, then b

        assert await take(a1, 2) == for_a
        assert await take(a2, 2) == for_a
        # b's first event is its own: a's events were never queued for it.
        assert await take(b1, 1) == [for_b]
        # ... and neither were b's events for a: a's next one is a's again.
        marker = event(a)
        hub.dispatch([marker])
        assert await take(a1, 1) == [marker]
        assert await take(a2, 1) == [marker]


async def test_dispatch_keeps_publication_order() -> None:
    hub = EventHub()
    a = uuid4()
    async with hub.subscribe(a) as events:
        batch = [event(a) for _ in range(50)]
        hub.dispatch(batch[:20])
        hub.dispatch(batch[20:])
        assert await take(events, 50) == batch


async def test_a_subscriber_sees_nothing_published_before_it_subscribed() -> None:
    hub = EventHub()
    a = uuid4()
    hub.dispatch([event(a)])
    async with hub.subscribe(a) as events:
        later = event(a)
        hub.dispatch([later])
        assert await take(events, 1) == [later]


async def test_leaving_the_context_unsubscribes_without_leaking_the_account() -> None:
    hub = EventHub()
    a, b = uuid4(), uuid4()
    assert hub.accounts == set()
    async with hub.subscribe(a) as first:
        async with hub.subscribe(a), hub.subscribe(b):
            assert hub.accounts == {a, b}
        assert hub.accounts == {a}  # `first` is still there
        still = event(a)
        hub.dispatch([still])
        assert await take(first, 1) == [still]
    assert hub.accounts == set()
    assert not hub._subscribers, "an empty entry per account that ever subscribed is a leak"
    hub.dispatch([event(a), event(b)])  # nobody left: nothing to do, nothing raised


async def test_leaving_the_context_by_an_exception_unsubscribes_too() -> None:
    hub = EventHub()
    a = uuid4()
    with pytest.raises(RuntimeError, match="client went away"):
        async with hub.subscribe(a):
            raise RuntimeError("client went away")
    assert hub.accounts == set()
    assert not hub._subscribers


async def test_many_subscriptions_come_and_go_without_leaking() -> None:
    hub = EventHub(queue_size=2)
    accounts = [uuid4() for _ in range(20)]
    for _ in range(5):
        for account in accounts:
            async with hub.subscribe(account):
                hub.dispatch([event(account) for _ in range(5)])  # overflowing too
    assert hub.accounts == set()
    assert not hub._subscribers


async def test_a_slow_subscriber_is_cut_off_while_a_fast_one_gets_everything() -> None:
    hub = EventHub(queue_size=3)
    a = uuid4()
    async with hub.subscribe(a) as slow, hub.subscribe(a) as fast:
        for _ in range(10):
            one = event(a)
            hub.dispatch([one])
            assert await take(fast, 1) == [one]

        await read_until_cut_off(slow)
        # Cut off for good: nothing more is queued for it, the fast one goes on.
        hub.dispatch([event(a)])
        with pytest.raises((StopAsyncIteration, SubscriberTooSlow)):
            await anext(slow)
        last = event(a)
        hub.dispatch([last])
        assert (await take(fast, 2))[1] == last
        assert hub.accounts == {a}
    assert hub.accounts == set()


async def test_what_a_cut_off_subscriber_saw_has_no_gap() -> None:
    """It resumes with `after` = the last cursor it saw, so it must have seen all before it."""
    hub = EventHub(queue_size=3)
    a = uuid4()
    async with hub.subscribe(a) as slow:
        published = [event(a) for _ in range(5)]
        hub.dispatch(published)
        seen = await read_until_cut_off(slow)
    seen_ids, published_ids = [e.id for e in seen], [e.id for e in published]
    # Resuming after the last one it saw must not skip one it never saw.
    assert seen_ids == published_ids[: len(seen_ids)], f"saw {seen_ids} of {published_ids}"


async def test_a_cut_off_subscriber_does_not_affect_other_accounts() -> None:
    hub = EventHub(queue_size=1)
    a, b = uuid4(), uuid4()
    async with hub.subscribe(a) as slow, hub.subscribe(b) as other:
        hub.dispatch([event(a), event(a), event(a)])
        await read_until_cut_off(slow)
        mine = event(b)
        hub.dispatch([mine])
        assert await take(other, 1) == [mine]


def test_dispatch_is_synchronous() -> None:
    """A plain function cannot wait for a subscriber: that is how it never blocks."""
    assert not inspect.iscoroutinefunction(EventHub.dispatch)
    assert not inspect.isasyncgenfunction(EventHub.dispatch)


async def test_publishing_never_waits_for_stalled_subscribers() -> None:
    broker = MemoryBroker()
    a = uuid4()
    async with broker.subscribe(a), broker.subscribe(a):
        coroutine = broker.publish([event(a) for _ in range(5_000)])
        # Completes on its first step: it never suspended on a full queue.
        with pytest.raises(StopIteration):
            coroutine.send(None)
