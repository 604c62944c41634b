"""The delivery lanes on a real Redis: one stream per account and sender, read in turn, paced
per sender while read, acknowledged entries dropped and pending ones kept."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.domain.pacing import Queued
from harness.servers import RedisServer
from tests.integration.bare_worker import bare_worker
from workers.lanes import _WAKE_LANES, Lanes
from workers.pacing import pace_key

GROUP = "delivery"


@pytest.fixture
async def lanes(redis_server: RedisServer) -> AsyncIterator[Lanes]:
    redis = Redis.from_url(redis_server.url)
    made = Lanes(redis, f"test-lanes:{uuid.uuid4().hex[:8]}", GROUP)
    try:
        yield made
    finally:
        found = await redis.keys(made.prefix + ":*")
        if found:
            await redis.delete(*found)
        await redis.aclose()


def sender() -> str:
    return "+1415" + str(uuid.uuid4().int)[:7]


def batch(account: uuid.UUID, who: str, count: int, segments: int = 1) -> list[Queued]:
    return [Queued(uuid.uuid4(), account, who, segments) for _ in range(count)]


async def test_each_account_and_sender_has_a_lane_in_enqueue_order_even_after_a_script_flush(
    lanes: Lanes,
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    one, two = sender(), sender()
    first = batch(a, one, 2) + batch(b, one, 1) + batch(a, two, 1)
    await lanes.enqueue(first)
    # A restarted Redis has no scripts cached: the lanes load theirs again.
    await lanes.redis.script_flush()
    later = batch(a, one, 1)
    await lanes.enqueue(later)
    assert await lanes.members() == sorted(
        [lanes.lane(a, one), lanes.lane(b, one), lanes.lane(a, two)]
    )
    entries = await lanes.redis.xrange(lanes.lane(a, one))
    assert [f[b"id"].decode() for _, f in entries] == [
        q.message_id.hex for q in [*first[:2], *later]
    ]
    assert lanes.sender_of(lanes.lane(a, one)) == one


async def test_a_read_takes_a_few_from_every_lane_not_all_of_the_first(lanes: Lanes) -> None:
    big, small = uuid.uuid4(), uuid.uuid4()
    backlog = batch(big, sender(), 500)
    single = batch(small, sender(), 1)
    await lanes.enqueue(backlog)
    await lanes.enqueue(single)
    order = [lanes.lane(big, backlog[0].sender), lanes.lane(small, single[0].sender)]
    reading = await lanes.take(
        "c1", [(lane, 0.0) for lane in order], budget=8, per_lane=4, horizon=0.1
    )
    taken = [t.message_id for t in reading.taken]
    assert taken == [q.message_id.hex for q in backlog[:4]] + [single[0].message_id.hex]
    assert all(t.delay == 0.0 for t in reading.taken)


async def test_a_paced_sender_is_read_only_as_far_as_its_slots_go(lanes: Lanes) -> None:
    account, paced, free = uuid.uuid4(), sender(), sender()
    await lanes.enqueue(batch(account, paced, 20))
    await lanes.enqueue(batch(account, free, 20))
    order = [(lanes.lane(account, paced), 10.0), (lanes.lane(account, free), 0.0)]
    # 10 segments a second, 250 ms ahead: slots at 0, 100 and 200 ms, then the lane waits.
    reading = await lanes.take("c1", order, budget=30, per_lane=10, horizon=0.25)
    slow = [t for t in reading.taken if t.entry[0] == order[0][0]]
    fast = [t for t in reading.taken if t.entry[0] == order[1][0]]
    assert len(slow) == 3 and len(fast) == 10, reading
    for earlier, later in itertools.pairwise(slow):
        assert later.delay - earlier.delay == pytest.approx(0.1, abs=0.01)
    assert reading.paced.keys() == {order[0][0]}
    assert 0 < reading.paced[order[0][0]] <= 0.1
    # A second worker reading the same lane gets the next slots, in the lane's order.
    again = await lanes.take("c2", order[:1], budget=30, per_lane=10, horizon=0.5)
    assert again.taken and again.taken[0].delay == pytest.approx(0.3, abs=0.02)
    entries = await lanes.redis.xrange(order[0][0])
    ids = [f[b"id"].decode() for _, f in entries]
    assert [t.message_id for t in [*slow, *again.taken]] == ids[: len(slow) + len(again.taken)]
    assert 0 < await lanes.redis.pttl(pace_key(paced)) <= 61_000


async def test_a_message_of_several_segments_moves_its_senders_schedule_by_all_of_them(
    lanes: Lanes,
) -> None:
    account, who = uuid.uuid4(), sender()
    await lanes.enqueue(batch(account, who, 1, segments=3) + batch(account, who, 1))
    lane = lanes.lane(account, who)
    reading = await lanes.take("c1", [(lane, 10.0)], budget=5, per_lane=5, horizon=0.5)
    assert [round(t.delay, 2) for t in reading.taken] == [0.0, 0.3]


async def test_entries_read_past_the_horizon_go_back_to_the_lane_unread_and_in_order(
    lanes: Lanes,
) -> None:
    # 10 segments a second, 250 ms ahead: three entries of one segment would fit, so three are
    # read at once; the first costs three segments, and the two after it have no slot yet.
    account, who = uuid.uuid4(), sender()
    work = batch(account, who, 1, segments=3) + batch(account, who, 3)
    await lanes.enqueue(work)
    lane = lanes.lane(account, who)
    reading = await lanes.take("c1", [(lane, 10.0)], budget=5, per_lane=5, horizon=0.25)
    assert [t.message_id for t in reading.taken] == [work[0].message_id.hex]
    assert reading.paced.keys() == {lane} and 0 < reading.paced[lane] <= 0.05
    assert await lanes.pending() == 1
    # The next read, of another consumer, gets the rest in order, each read once, on the
    # slots after the long message's three.
    again = await lanes.take("c2", [(lane, 10.0)], budget=5, per_lane=5, horizon=1.0)
    assert [t.message_id for t in again.taken] == [q.message_id.hex for q in work[1:]]
    assert [round(t.delay, 1) for t in again.taken] == [0.3, 0.4, 0.5]
    detail = await lanes.redis.xpending_range(lane, GROUP, "-", "+", 10)
    assert [(d["consumer"], d["times_delivered"]) for d in detail] == [(b"c1", 1)] + [
        (b"c2", 1)
    ] * 3


async def test_acknowledged_entries_leave_their_lane_pending_ones_stay_and_an_empty_lane_goes(
    lanes: Lanes,
) -> None:
    account, who = uuid.uuid4(), sender()
    await lanes.enqueue(batch(account, who, 6))
    lane = lanes.lane(account, who)
    reading = await lanes.take("c1", [(lane, 0.0)], budget=6, per_lane=6, horizon=0.1)
    entries = [t.entry for t in reading.taken]
    kept = {entries[1], entries[4]}
    await lanes.acknowledge([e for e in entries if e not in kept])
    assert {(lane, i.decode()) for i, _ in await lanes.redis.xrange(lane)} == kept
    assert await lanes.pending() == 2
    await lanes.acknowledge(sorted(kept))
    assert await lanes.redis.xlen(lane) == 0 and await lanes.pending() == 0
    # The next read that finds it empty drops it from the lane set.
    await lanes.take("c1", [(lane, 0.0)], budget=6, per_lane=6, horizon=0.1)
    assert await lanes.members() == [] and not await lanes.redis.exists(lane)
    # And an enqueue makes it again, with its group.
    await lanes.enqueue(batch(account, who, 1))
    again = await lanes.take("c1", [(lane, 0.0)], budget=6, per_lane=6, horizon=0.1)
    assert len(again.taken) == 1


async def test_a_read_returns_the_lane_set_and_a_wake_position_that_misses_nothing_after_it(
    lanes: Lanes,
) -> None:
    account, one, two = uuid.uuid4(), sender(), sender()
    await lanes.enqueue(batch(account, one, 1))
    first = lanes.lane(account, one)
    reading = await lanes.take("c1", [], budget=4, per_lane=4, horizon=0.1)
    # A read that looked at no lane still tells which there are.
    assert reading.taken == [] and reading.lanes == [first]
    # What was enqueued before the read is not news to a worker that blocks after it ...
    assert await lanes.wait_for_work(reading.wake, within=0.05) == []
    # ... and what is enqueued after it wakes the worker, naming each lane once.
    later = batch(account, two, 2) + batch(account, one, 1)
    await lanes.enqueue(later)
    named = await lanes.wait_for_work(reading.wake, within=30)
    assert named == sorted([lanes.lane(account, two), first])


async def test_a_wake_entry_names_a_bounded_number_of_lanes(lanes: Lanes) -> None:
    account = uuid.uuid4()
    reading = await lanes.take("c1", [], budget=1, per_lane=1, horizon=0.1)
    many = [q for _ in range(_WAKE_LANES + 5) for q in batch(account, sender(), 1)]
    await lanes.enqueue(many)
    named = await lanes.wait_for_work(reading.wake, within=30)
    # The rest are in the lane set that the next read returns.
    assert named == sorted({lanes.lane(account, q.sender) for q in many[:_WAKE_LANES]})
    assert len((await lanes.take("c1", [], budget=1, per_lane=1, horizon=0.1)).lanes) == len(many)


class ClaimRecorder:
    """Claims nothing (so no call starts), and remembers what it was asked to claim."""

    def __init__(self) -> None:
        self.asked: list[uuid.UUID] = []

    async def claim(self, message_ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
        self.asked += message_ids
        return {}


async def test_a_worker_reads_new_lanes_without_listing_them_on_its_own(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No round trip lists the lanes: a worker learns them from its reads and its wake-ups.
    A lane enqueued to while it blocks is read by its next read; a lane that appears in a
    read that could not look at it yet is read at once, without blocking first."""
    delivery = ClaimRecorder()
    worker = bare_worker(
        lanes.redis,
        stream=lanes.prefix,
        group=GROUP,
        consumer="c1",
        delivery=delivery,
        concurrency=4,
        linger=0.0,
    )
    blocks: list[str] = []
    blocking = asyncio.Event()
    real_wait = lanes.wait_for_work

    async def wait_for_work(after: str, within: float) -> list[str]:
        blocks.append(after)
        blocking.set()
        return await real_wait(after, within)

    monkeypatch.setattr(worker.lanes, "wait_for_work", wait_for_work)
    account = uuid.uuid4()
    # Nothing to read: the worker blocks; the lane is made while it does.
    blocked = asyncio.create_task(worker._read_once())
    await asyncio.wait_for(blocking.wait(), 30)
    waiting = batch(account, sender(), 1)
    await lanes.enqueue(waiting)
    await asyncio.wait_for(blocked, 30)
    await worker._read_once()
    assert len(blocks) == 1 and delivery.asked == [waiting[0].message_id]

    unseen = batch(account, sender(), 1)
    await lanes.enqueue(unseen)
    worker._lanes = []  # as if the lane came after the last read listed the lanes
    await worker._read_once()
    assert len(blocks) == 1 and worker._lanes == sorted(
        [lanes.lane(account, waiting[0].sender), lanes.lane(account, unseen[0].sender)]
    )
    await worker._read_once()
    assert delivery.asked == [waiting[0].message_id, unseen[0].message_id]
