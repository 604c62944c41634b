"""Worker crashes and database outages, with real processes: a dead worker's messages come
back by its heartbeat, a live worker's slow calls never do, a reclaim never jams a worker,
an outcome the database could not take is held and recorded later (never sent twice), and
due retries and scheduled messages do not wait for the re-enqueue grace.

The settings of each test switch off every other way the result could come about (a long
``STALE_SENDING_SECONDS``, ``RECLAIM_IDLE_MS`` or ``SWEEP_GRACE_SECONDS``), so that only the
mechanism under test can make it pass. This module has a PostgreSQL of its own: one test
stops it.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from redis.asyncio import Redis

from gateway.domain.records import MessageEvent
from gateway.domain.results import Change, Sent
from gateway.domain.statuses import MessageStatus
from harness.http import loopback_client
from harness.pipeline import Pipeline
from harness.processes import serving
from harness.servers import PostgresServer, RedisServer, free_port
from tests.conftest import SEND
from tests.integration.bare_worker import bare_worker
from tests.integration.test_cli import MESSAGE, cli_env, dev_key_of, gql, wait_delivered
from tests.integration.test_cli import sms as cli_sms
from tests.integration.traffic import ambiguous_marker, mixed, sms, trail_problems
from workers.held_outcomes import HELD

EVENTS = "query Events($id: ID!) { message(id: $id) { events { kind } } }"
#: Provider calls hang this long, then succeed; the read timeout waits for them.
SLOW_CALL = 4.0
SLOW = {"PROVIDER_READ_TIMEOUT": "15"}


async def prepared(pipeline: Pipeline, own_postgres: PostgresServer, **settings: str) -> Pipeline:
    if not own_postgres.running:
        await asyncio.to_thread(own_postgres.restart)
        await pipeline.engine.dispose()
    await pipeline.ensure(**settings)
    await pipeline.sandbox_reset()
    return pipeline


def consumer_of(pipe: Pipeline, index: int) -> str:
    return f"{socket.gethostname()}-{pipe.workers[index].pid}"


async def claimed_by(pipe: Pipeline, ids: list[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    from sqlalchemy import text

    async with pipe.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, claimed_by FROM messages WHERE id = ANY(:ids) AND status = 'SENDING'"),
            {"ids": ids},
        )
    return {r[0]: r[1] for r in rows}


def kinds(trail: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in trail]


# --- 1. A reclaim takes only what there is room for -------------------------------------------


class HangingDelivery:
    """Claims everything; every provider call hangs until the test ends."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def claim(self, message_ids: list[uuid.UUID]) -> dict[uuid.UUID, Change]:
        now = datetime.now(UTC)
        changes: dict[uuid.UUID, Change] = {}
        for i, message_id in enumerate(message_ids):
            event = MessageEvent(
                id=i + 1,
                account_id=uuid.uuid4(),
                message_id=message_id,
                conversation_id=uuid.uuid4(),
                status=MessageStatus.SENDING,
                kind="attempt",
                detail=None,
                occurred_at=now,
            )
            changes[message_id] = Change(SimpleNamespace(id=message_id), event)  # type: ignore[arg-type]
        return changes

    async def attempt(self, message: Any) -> Sent:
        self.calls += 1
        await self.release.wait()
        return Sent(message.id, "test", "SM1")

    async def record(self, outcomes: list[Any]) -> list[None]:
        return [None for _ in outcomes]


async def test_a_reclaim_takes_no_more_entries_than_the_worker_has_room_for(
    redis_server: RedisServer,
) -> None:
    """A dead consumer left 5 entries pending; a worker with 2 slots reclaims 2 and returns at
    once (the others wait for room), instead of waiting for slots its own reclaim holds."""
    redis = Redis.from_url(redis_server.url)
    stream, group = f"reclaim-{uuid.uuid4().hex}", "delivery"
    delivery = HangingDelivery()
    worker = bare_worker(
        redis, stream=stream, group=group, consumer="alive", delivery=delivery, concurrency=2
    )
    lane = worker.lanes.lane(uuid.uuid4(), "+14155550100")
    try:
        await redis.xgroup_create(lane, group, id="0", mkstream=True)
        await redis.sadd(worker.lanes.registry, lane)
        for _ in range(5):
            await redis.xadd(lane, {"id": uuid.uuid4().hex})
        await redis.xreadgroup(group, "dead", {lane: ">"}, count=5)
        # A generous bound: without room accounting this call never returns.
        await asyncio.wait_for(worker._reclaim(), 30)
        await asyncio.wait_for(worker._reclaim(), 30)  # no room left: takes nothing
        pending = await redis.xpending(lane, group)
        by_consumer = {
            (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): int(c["pending"])
            for c in pending["consumers"]
        }
        assert by_consumer == {"alive": 2, "dead": 3}, by_consumer
        await asyncio.sleep(0)
        assert delivery.calls == 2
    finally:
        delivery.release.set()
        await asyncio.wait_for(worker._drain(within=10), 30)
        await redis.delete(lane, worker.lanes.registry)
        await redis.aclose()


# --- 2. A dead worker's messages come back by its heartbeat -----------------------------------


async def test_a_killed_workers_messages_are_taken_back_by_its_heartbeat(
    own_pipeline: Pipeline, own_postgres: PostgresServer
) -> None:
    """Neither the age rule (STALE_SENDING_SECONDS) nor a reclaim (RECLAIM_IDLE_MS) can act
    within this test: only the lapsed heartbeat can bring the victim's messages back. The
    survivor keeps delivering what it holds and what comes after."""
    pipe = await prepared(
        own_pipeline,
        own_postgres,
        **SLOW,
        STALE_SENDING_SECONDS="3600",
        RECLAIM_IDLE_MS="3600000",
        WORKER_DEAD_AFTER_SECONDS="2",
    )
    await pipe.sandbox_configure(rate_timeout=1.0, timeout_seconds=SLOW_CALL)
    account = await pipe.new_account()
    victim = consumer_of(pipe, 0)
    sent = await pipe.send_many(0, account, [sms(i, "heartbeat") for i in range(70)])
    ids = [s.id for s in sent]
    deadline = time.monotonic() + 30
    while not any(w == victim for w in (await claimed_by(pipe, ids)).values()):
        assert time.monotonic() < deadline, f"the victim never held a message{pipe.diagnostics()}"
        await asyncio.sleep(0.05)
    held = [m for m, w in (await claimed_by(pipe, ids)).items() if w == victim]
    await pipe.retire(pipe.workers[0]).kill()
    killed_at = time.monotonic()
    await pipe.sandbox_configure(rate_timeout=0.0)
    later = await pipe.send_many(1, account, [sms(i, "after-kill") for i in range(5)])

    await pipe.wait_delivered(held, within=60)
    print(f"\nheld by the victim: {len(held)}; delivered {time.monotonic() - killed_at:.1f}s")
    await pipe.wait_delivered(ids + [s.id for s in later], within=60)
    trails = await pipe.trails(ids)
    for message_id in held:
        assert "attempt_abandoned" in kinds(trails[message_id]), trails[message_id]
        assert ambiguous_marker(trails[message_id]), trails[message_id]
    for message_id in set(ids) - set(held):
        assert "attempt_abandoned" not in kinds(trails[message_id]), trails[message_id]
        assert trail_problems(trails[message_id]) == [], trails[message_id]


async def test_a_live_workers_slow_calls_are_never_taken_back(
    own_pipeline: Pipeline, own_postgres: PostgresServer
) -> None:
    """Every call takes longer than STALE_SENDING_SECONDS and than a heartbeat's lifetime:
    nothing is taken back, nothing is sent twice."""
    pipe = await prepared(
        own_pipeline,
        own_postgres,
        **SLOW,
        STALE_SENDING_SECONDS="1",
        WORKER_DEAD_AFTER_SECONDS="2",
    )
    await pipe.sandbox_configure(rate_timeout=1.0, timeout_seconds=SLOW_CALL)
    account = await pipe.new_account()
    sent = await pipe.send_many(0, account, [mixed(i, "slow") for i in range(20)])
    ids = [s.id for s in sent]
    await pipe.wait_delivered(ids, within=90)
    trails = await pipe.trails(ids)
    calls = await pipe.accepted_calls(ids)
    assert set(calls.values()) == {1}, calls
    for message_id in ids:
        assert "attempt_abandoned" not in kinds(trails[message_id]), trails[message_id]


# --- 3. Outcomes the database could not take ---------------------------------------------------


async def held_until(
    redis: Redis, done: Callable[[int], bool], within: float, pipe: Pipeline
) -> None:
    """Until the number of held outcomes is ``done``; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not done(await redis.hlen(HELD)):
        assert time.monotonic() < deadline, (
            f"held outcomes: {await redis.hlen(HELD)}{pipe.diagnostics()}"
        )
        await asyncio.sleep(0.2)


async def test_outcomes_held_through_a_database_outage_are_recorded_and_never_resent(
    own_pipeline: Pipeline, own_postgres: PostgresServer
) -> None:
    """PostgreSQL stops while the provider holds the calls; the provider's answers (with its
    message ids) come back to a worker that cannot write them. They wait in Redis, are
    recorded when PostgreSQL is back, and no message reaches the provider twice."""
    pipe = await prepared(
        own_pipeline, own_postgres, **SLOW, STALE_SENDING_SECONDS="3", WORKER_DEAD_AFTER_SECONDS="2"
    )
    await pipe.sandbox_configure(rate_timeout=1.0, timeout_seconds=SLOW_CALL)
    account = await pipe.new_account()
    sent = await pipe.send_many(0, account, [sms(i, "outage") for i in range(12)])
    ids = [s.id for s in sent]
    await pipe.wait_until(ids, "SENDING".__eq__, within=30, what="SENDING")
    await asyncio.to_thread(own_postgres.stop_process)
    redis = pipe.redis()
    try:
        await held_until(redis, len(ids).__le__, SLOW_CALL + 30, pipe)
        await asyncio.sleep(4)  # longer than STALE_SENDING_SECONDS and a heartbeat's life
        await asyncio.to_thread(own_postgres.restart)
        await pipe.engine.dispose()  # the test's own pooled connections died with it
        await pipe.wait_delivered(ids, within=90)
        # The sandbox's delivery callbacks, kept while PostgreSQL was down, may be applied
        # before the sweeper's next pass records the held outcomes: wait for that pass.
        await held_until(redis, (0).__eq__, 60, pipe)
    finally:
        await redis.aclose()
    calls = await pipe.accepted_calls(ids)
    assert set(calls.values()) == {1}, calls
    trails = await pipe.trails(ids)
    for message_id in ids:
        assert "attempt_abandoned" not in kinds(trails[message_id]), trails[message_id]
        assert "provider_accepted" in kinds(trails[message_id]), trails[message_id]
    # The pooled connections PostgreSQL closed are replaced, not handed out: once it is back,
    # every send is accepted.
    await pipe.sandbox_configure(rate_timeout=0.0)
    after = [await pipe.send_one(i % 2, account, sms(100 + i, "after")) for i in range(12)]
    await pipe.wait_delivered([s.id for s in after], within=60)


# --- 4. Due work does not wait for the grace --------------------------------------------------


async def test_due_retries_and_scheduled_messages_do_not_wait_for_the_grace(
    own_pipeline: Pipeline, own_postgres: PostgresServer
) -> None:
    """With a grace of an hour, a message given back after a 429 and a scheduled message
    still go out once due."""
    pipe = await prepared(own_pipeline, own_postgres, SWEEP_GRACE_SECONDS="3600")
    account = await pipe.new_account()
    await pipe.sandbox_configure(rate_429=1.0, retry_after=1.0)
    throttled = await pipe.send_one(0, account, sms(1, "throttled"))
    deadline = time.monotonic() + 30
    # A throughput error gives the message back untried (``deferred``), due after Retry-After.
    while "deferred" not in kinds((await pipe.trails([throttled.id]))[throttled.id]):
        assert time.monotonic() < deadline, pipe.diagnostics()
        await asyncio.sleep(0.1)
    await pipe.sandbox_configure(rate_429=0.0)
    send_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    scheduled = await pipe.send_one(0, account, {**sms(2, "scheduled"), "sendAt": send_at})
    await pipe.wait_delivered([throttled.id, scheduled.id], within=60)


# --- 5. The worker's health meanwhile -----------------------------------------------------------


async def test_a_survivor_reclaiming_a_dead_workers_entries_stays_healthy(
    own_pipeline: Pipeline, own_postgres: PostgresServer
) -> None:
    """The shape that jammed workers for good: a slow provider, a worker killed with its
    slots full, and its entries reclaimed by a survivor whose slots are full too. The
    survivor's /health stays 200 and everything, also what is sent afterwards, is delivered."""
    pipe = await prepared(
        own_pipeline,
        own_postgres,
        **SLOW,
        WORKER_CONCURRENCY="4",
        RECLAIM_IDLE_MS="1000",
        WORKER_DEAD_AFTER_SECONDS="2",
    )
    # The survivor answers /health; started with the same settings, so ensure() keeps it.
    survivor = pipe.workers[1]
    port = free_port()
    replacement = pipe.start_worker(
        **{k: survivor.env[k] for k in survivor.env if k in {*SLOW, "WORKER_CONCURRENCY"}},
        RECLAIM_IDLE_MS="1000",
        WORKER_DEAD_AFTER_SECONDS="2",
        WORKER_HEALTH_PORT=str(port),
        WORKER_HEALTH_HOST="127.0.0.1",
    )
    await pipe.retire(survivor).stop()
    await pipe.wait_workers_ready([replacement])
    await pipe.sandbox_configure(rate_timeout=1.0, timeout_seconds=SLOW_CALL)
    account = await pipe.new_account()
    sent = await pipe.send_many(0, account, [sms(i, "jam") for i in range(24)])
    ids = [s.id for s in sent]
    victim_name = consumer_of(pipe, 0)
    deadline = time.monotonic() + 30
    while (await pipe.pending_by_consumer()).get(victim_name, 0) < 4:
        assert time.monotonic() < deadline, pipe.diagnostics()
        await asyncio.sleep(0.05)
    await pipe.retire(pipe.workers[0]).kill()
    async with loopback_client(timeout=10) as http:
        later: list[uuid.UUID] = []
        deadline = time.monotonic() + 120
        while True:
            try:
                health = await http.get(f"http://127.0.0.1:{port}/health")
            except httpx.TransportError as exc:
                raise AssertionError(f"{exc!r}: {replacement.tail(40)}") from exc
            assert health.status_code == 200, health.text
            if not later and (await pipe.pending_by_consumer()).get(victim_name, 0) == 0:
                # The victim's entries are reclaimed: what comes now must get through too.
                later = [s.id for s in await pipe.send_many(1, account, [sms(99, "later")])]
            statuses = await pipe.statuses(ids + later)
            if later and set(statuses.values()) == {"DELIVERED"}:
                break
            assert time.monotonic() < deadline, f"{statuses}{pipe.diagnostics()}"
            await asyncio.sleep(0.5)


# --- 6. The embedded mode: the previous run's messages ----------------------------------------


def test_embedded_takes_back_what_its_previous_run_held_at_once(tmp_path: Path) -> None:
    """The embedded worker is the only one: messages its killed predecessor held SENDING are
    taken back as soon as it starts (not after STALE_SENDING_SECONDS), marked ambiguous."""
    data = tmp_path / "data"
    slow = cli_env(
        data,
        SANDBOX_RATE_TIMEOUT="1",
        SANDBOX_TIMEOUT_SECONDS="600",
        PROVIDER_READ_TIMEOUT="900",
        STALE_SENDING_SECONDS="3600",
    )
    ids: list[str] = []
    with httpx.Client(timeout=30, trust_env=False) as http:
        with serving(slow, tmp_path, "first") as first:
            key = dev_key_of(first)
            for i in range(3):
                sent = gql(http, first.url, key, SEND, {"input": cli_sms(f"+1415555{i:04d}")})
                ids.append(sent["sendMessage"]["message"]["id"])
            deadline = time.monotonic() + 30
            while {status(http, first.url, key, m) for m in ids} != {"SENDING"}:
                assert time.monotonic() < deadline, first.process.output()
                time.sleep(0.05)
            first.process.kill_blocking()
        fast = slow | {"SANDBOX_RATE_TIMEOUT": "0"}
        with serving(fast, tmp_path, "second") as second:
            for message_id in ids:
                assert wait_delivered(http, second.url, key, message_id) == "DELIVERED"
            events = gql(http, second.url, key, EVENTS, {"id": ids[0]})["message"]["events"]
            assert "attempt_abandoned" in [e["kind"] for e in events], events


def status(http: httpx.Client, base_url: str, key: str, message_id: str) -> str:
    found = gql(http, base_url, key, MESSAGE, {"id": message_id})["message"]
    return str(found["status"])
