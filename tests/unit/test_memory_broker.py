"""The embedded mode's queue: one lane per account and sender, taken in turn, each lane in its
own order, a paced sender passed over (never failed) until its slot comes."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from uuid import UUID, uuid4

import pytest

from gateway.domain.pacing import Queued
from tests.unit.test_breaker_and_failover import Clock
from workers.memory import MemoryBroker
from workers.pacing import MemoryPacer

A, B = uuid4(), uuid4()


def work(account: UUID, sender: str, count: int) -> list[Queued]:
    return [Queued(uuid4(), account, sender) for _ in range(count)]


async def drain(broker: MemoryBroker, count: int) -> list[UUID]:
    return [await asyncio.wait_for(broker.next_message(), 1) for _ in range(count)]


async def test_lanes_are_taken_in_turn_each_in_its_own_order() -> None:
    broker = MemoryBroker()
    backlog = work(A, "+14155550100", 5)
    lone = work(B, "+14155550100", 1)
    other_sender = work(A, "+14155550111", 2)
    await broker.enqueue(backlog)
    await broker.enqueue(lone)
    await broker.enqueue(other_sender)
    got = await drain(broker, 8)
    # B's one message and A's second sender come second and third, not after A's backlog.
    assert got[:3] == [backlog[0].message_id, lone[0].message_id, other_sender[0].message_id]
    by_lane = {
        tuple(w.message_id for w in lane): [m for m in got if m in {w.message_id for w in lane}]
        for lane in (backlog, lone, other_sender)
    }
    assert all(list(ids) == order for ids, order in by_lane.items())


async def test_the_same_message_offered_twice_waits_once() -> None:
    broker = MemoryBroker()
    [one] = work(A, "+14155550100", 1)
    await broker.enqueue([one, one])
    await broker.enqueue([one])
    assert await drain(broker, 1) == [one.message_id]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(broker.next_message(), 0.05)


async def test_a_paced_sender_waits_while_others_go_and_goes_when_its_slot_comes() -> None:
    clock = Clock()
    broker = MemoryBroker(horizon=0.01)

    async def rates(senders: Collection[str]) -> dict[str, float]:
        return {s: (1.0 if s == "+14155550100" else 1000.0) for s in senders}

    broker.pace(MemoryPacer(clock), rates)
    slow = work(A, "+14155550100", 3)
    fast = work(B, "+14155550111", 3)
    await broker.enqueue(slow)
    await broker.enqueue(fast)
    got = await drain(broker, 4)
    # One of the 1/s sender's, then the other sender's three while it waits for its slot.
    assert got == [slow[0].message_id, *(w.message_id for w in fast)]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(broker.next_message(), 0.05)
    clock.now += 1.0
    assert await drain(broker, 1) == [slow[1].message_id]
