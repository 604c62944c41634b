"""Group-committed delivery: many messages claimed and recorded together, each on its own.

Against real databases (PostgreSQL and SQLite), with providers faked in-process so that the
calls of a batch can be held until all of them are in flight, which is what makes the
claims and the outcomes fall into shared transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import bindparam, select, text, update

from gateway.domain.channels import Channel
from gateway.domain.messages import SendRequest
from gateway.domain.pacing import Queued
from gateway.domain.records import DeliveryError, Message, MessageEvent
from gateway.domain.results import Accepted, Failure, Release, Retry, Sent
from gateway.entry.bootstrap.api import bootstrap_api
from gateway.entry.migrations import upgrade_to_head
from gateway.services.clock import utcnow
from gateway.services.delivery import DeliveryService
from gateway.services.ports import (
    PermanentProviderError,
    ProviderReceipt,
    TransientProviderError,
)
from gateway.services.retry_policy import RetryPolicy
from gateway.settings import Settings
from harness.servers import PostgresServer
from persistence.rows import EVENTS, MESSAGES
from providers.registry import FailoverRegistry
from tests.conftest import GatewayParts, fresh_postgres_url
from tests.unit.test_breaker_and_failover import FakeProvider
from workers.held_outcomes import MemoryHeldOutcomes
from workers.liveness import LocalLiveness
from workers.sweeper import Sweeper

BAD = "+14155550199"


class Collect:
    """A broker that keeps what is enqueued."""

    def __init__(self, queue: list[UUID]) -> None:
        self.queue = queue

    async def enqueue(self, work: Sequence[Queued]) -> None:
        self.queue.extend(w.message_id for w in work)

    async def publish(self, events: Any) -> None:
        pass


@dataclass
class Db:
    container: GatewayParts
    account_id: UUID

    async def queued(self, recipients: list[str]) -> list[UUID]:
        """QUEUED messages, due now; nothing else takes them (no worker is running)."""
        outcomes = await self.container.sending.send(
            self.account_id,
            [SendRequest(Channel.SMS, from_="+14155550100", to=to, body="hi") for to in recipients],
        )
        assert all(isinstance(o, Accepted) for o in outcomes), outcomes
        return [o.message.id for o in outcomes if isinstance(o, Accepted)]

    async def statuses(self, ids: list[UUID]) -> dict[UUID, str]:
        async with self.container.engine.connect() as conn:
            rows = await conn.execute(
                select(MESSAGES.c.id, MESSAGES.c.status).where(MESSAGES.c.id.in_(ids))
            )
        return {r[0]: r[1] for r in rows}

    async def kinds(self, message_id: UUID) -> list[str]:
        async with self.container.engine.connect() as conn:
            rows = await conn.execute(
                select(EVENTS.c.kind).where(EVENTS.c.message_id == message_id).order_by(EVENTS.c.id)
            )
        return [r[0] for r in rows]


@pytest.fixture(params=["postgresql", "sqlite"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    if request.param == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        settings = Settings(database_url=fresh_postgres_url(postgres), data_dir=tmp_path)
    else:
        settings = Settings(data_dir=tmp_path)
    await upgrade_to_head(settings)
    # Built, never started: no embedded worker or sweeper competes for the messages.
    container = GatewayParts(bootstrap_api(settings))
    try:
        account, _ = await container.api_keys.create("batches")
        yield Db(container, account.id)
    finally:
        await container.close()


class HeldProvider:
    """Answers once ``width`` calls are in flight, so that they finish together; refuses
    the BAD recipient permanently."""

    name = "held"

    def __init__(self, width: int) -> None:
        self.width = width
        self.calls: list[UUID] = []
        self._all_in = asyncio.Event()

    async def send(self, message: Message) -> ProviderReceipt:
        self.calls.append(message.id)
        if len(self.calls) >= self.width:
            self._all_in.set()
        await asyncio.wait_for(self._all_in.wait(), 10)
        if message.recipient == BAD:
            raise PermanentProviderError("21211", "invalid 'To' number")
        return ProviderReceipt(self.name, f"SM{message.id.hex}")


def count_batches(db: Db) -> dict[str, list[int]]:
    """Spy on the repository: the size of every claim and record batch."""
    lifecycle = db.container.lifecycle
    sizes: dict[str, list[int]] = {"claim_many": [], "record_outcomes": []}
    for name, calls in sizes.items():
        real = getattr(lifecycle, name)

        async def spy(
            items: Any, now: Any, real: Any = real, calls: list[int] = calls, **kw: Any
        ) -> Any:
            calls.append(len(items))
            return await real(items, now, **kw)

        setattr(lifecycle, name, spy)
    return sizes


async def test_a_message_whose_claim_fails_does_not_fail_the_others(db: Db) -> None:
    """The combined claim fails (one row's attempt counter overflows on PostgreSQL); the
    batch is then claimed message by message, so only that message's delivery fails."""
    if db.container.engine.dialect.name != "postgresql":
        pytest.skip("SQLite integers do not overflow")
    await claim_fails_for_one_of_five(db, {"attempts": 2147483647}, "+1415558")


async def test_a_message_that_cannot_be_read_does_not_fail_the_others(db: Db) -> None:
    """A row this release cannot decode (a channel it does not know) is claimed in the same
    statement as the others; the claim is rolled back, not left SENDING, and the batch is
    claimed again message by message."""
    await claim_fails_for_one_of_five(db, {"channel": "FAX"}, "+1415559")


async def claim_fails_for_one_of_five(db: Db, poison_values: dict[str, Any], area: str) -> None:
    ids = await db.queued([f"{area}{i:04d}" for i in range(5)])
    poison = ids[2]
    async with db.container.engine.begin() as conn:
        await conn.execute(update(MESSAGES).where(MESSAGES.c.id == poison).values(**poison_values))
    provider = HeldProvider(width=len(ids) - 1)
    batches = count_batches(db)
    service = delivery(db, provider, Recorder())
    results = await asyncio.gather(*(service.deliver(i) for i in ids), return_exceptions=True)
    assert isinstance(results[2], Exception)
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 4
    assert poison not in provider.calls
    statuses = await db.statuses(ids)
    assert statuses.pop(poison) == "QUEUED"
    assert set(statuses.values()) == {"SENT"}
    assert max(batches["claim_many"]) > 1, "the claims were batched"


class Recorder:
    def __init__(self) -> None:
        self.published: list[MessageEvent] = []

    async def publish(self, events: Any) -> None:
        self.published.extend(events)


def delivery(
    db: Db, provider: HeldProvider, broker: Recorder, registry: FailoverRegistry | None = None
) -> DeliveryService:
    registry = registry or FailoverRegistry({Channel.SMS: [provider]})
    return DeliveryService(
        db.container.lifecycle,
        registry,
        broker,  # type: ignore[arg-type]
        RetryPolicy(5, 0.01, 0.1),
        MemoryHeldOutcomes(),
        worker="test-worker",
    )


async def test_one_refused_message_in_a_batch_leaves_the_others_sent(db: Db) -> None:
    recipients = [f"+1415555{i:04d}" for i in range(1, 9)] + [BAD]
    ids = await db.queued(recipients)
    bad = ids[-1]
    provider = HeldProvider(width=len(ids))
    broker = Recorder()
    service = delivery(db, provider, broker)
    batches = count_batches(db)
    # A duplicate stream entry for the first message, in the same batch: sent once only.
    await asyncio.gather(*(service.deliver(i) for i in [*ids, ids[0]]))
    assert sorted(provider.calls) == sorted(ids), "each message sent exactly once"
    # Two batches run at a time; whatever arrives meanwhile waits and goes in the next one.
    assert len(batches["claim_many"]) <= 3 and len(batches["record_outcomes"]) <= 3, batches
    statuses = await db.statuses(ids)
    assert statuses.pop(bad) == "FAILED"
    assert set(statuses.values()) == {"SENT"}, statuses
    for message_id in ids[:-1]:
        assert await db.kinds(message_id) == ["accepted", "attempt", "provider_accepted"]
    assert await db.kinds(bad) == ["accepted", "attempt", "dead_lettered"]
    for event in broker.published:
        if event.kind == "provider_accepted":
            assert event.status.value == "SENT"
            assert event.detail == {
                "provider": "held",
                "providerMessageId": f"SM{event.message_id.hex}",
            }
    published = [(e.message_id, e.kind) for e in broker.published]
    assert sorted(published) == sorted(
        [(i, "attempt") for i in ids]
        + [(i, "provider_accepted") for i in ids[:-1]]
        + [(bad, "dead_lettered")]
    )


async def test_outcomes_of_every_kind_recorded_in_one_transaction(db: Db) -> None:
    ids = await db.queued([f"+1415556{i:04d}" for i in range(6)])
    lifecycle = db.container.lifecycle
    now = utcnow()
    claimed = await lifecycle.claim_many(ids, now)
    assert set(claimed) == set(ids)
    assert await lifecycle.claim_many(ids, now) == {}, "a second claim gets nothing"
    sent, overtaken, canceled, retried, failed, released = ids
    # A delivery receipt that overtook the provider's answer, and a cancel meanwhile.
    async with db.container.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES).where(MESSAGES.c.id == overtaken).values(status="DELIVERED")
        )
        await conn.execute(
            update(MESSAGES).where(MESSAGES.c.id == canceled).values(status="CANCELED")
        )
    later = now + timedelta(minutes=5)
    error = DeliveryError("500", "down", permanent=False)
    changes = await lifecycle.record_outcomes(
        [
            Sent(sent, "twilio", "SM1"),
            Sent(overtaken, "twilio", "SM2"),
            Retry(canceled, error, later),
            Retry(retried, error, later, {"provider": "twilio"}),
            Failure(failed, DeliveryError("21211", "invalid", permanent=True)),
            Release(released, later, "every provider's circuit is open"),
        ],
        now,
    )
    assert [c.message.status.value if c else None for c in changes] == [
        "SENT", "DELIVERED", None, "QUEUED", "FAILED", "QUEUED",
    ]  # fmt: skip
    by_id = {c.message.id: c for c in changes if c is not None}
    assert by_id[overtaken].message.provider_message_id == "SM2"
    assert by_id[overtaken].event.kind == "provider_accepted"
    assert by_id[retried].message.next_attempt_at == later
    assert by_id[retried].event.detail == {
        "code": "500", "nextAttemptAt": later.isoformat(), "provider": "twilio",
    }  # fmt: skip
    assert by_id[released].message.attempts == 0, "an untried claim is not counted"
    assert by_id[failed].message.error == DeliveryError("21211", "invalid", permanent=True)
    assert await db.kinds(canceled) == ["accepted", "attempt"], "a canceled message stays so"
    event_ids = [c.event.id for c in changes if c is not None]
    assert event_ids == sorted(event_ids), "events in input order"


async def test_failovers_and_ambiguous_attempts_are_recorded(db: Db) -> None:
    """A send after a failover lists the vendors that refused it in its event (beside plain
    sends in the same batch); an ambiguous retry keeps the message to its vendor."""
    ids = await db.queued([f"+1415558{i:04d}" for i in range(3)])
    lifecycle = db.container.lifecycle
    now = utcnow()
    assert set(await lifecycle.claim_many(ids, now)) == set(ids)
    moved, plain, unsure = ids
    refused = [{"provider": "twilio", "code": "500", "description": "down"}]
    error = DeliveryError("READTIMEOUT", "no answer", permanent=False)
    later = now + timedelta(minutes=5)
    changes = await lifecycle.record_outcomes(
        [
            Sent(moved, "sandbox", "SMmoved", {"failedOver": refused}),
            Sent(plain, "twilio", "SMplain"),
            Retry(unsure, error, later, {"provider": "twilio", "ambiguous": True}, "twilio"),
        ],
        now,
    )
    by_id = {c.message.id: c for c in changes if c is not None}
    assert by_id[moved].message.status.value == "SENT"
    assert by_id[moved].message.provider == "sandbox"
    assert by_id[moved].event.detail == {
        "provider": "sandbox", "providerMessageId": "SMmoved", "failedOver": refused,
    }  # fmt: skip
    assert by_id[plain].event.detail == {"provider": "twilio", "providerMessageId": "SMplain"}
    assert by_id[unsure].message.status.value == "QUEUED"
    assert by_id[unsure].message.provider == "twilio", "kept to the vendor that may have it"
    assert by_id[unsure].message.provider_message_id is None
    assert by_id[unsure].event.detail is not None
    assert by_id[unsure].event.detail["ambiguous"] is True


async def test_a_crash_between_claim_and_record_is_recovered(db: Db) -> None:
    """Claimed in a batch, then the worker dies before any outcome is recorded: the sweeper
    takes the messages back (marked ambiguous) and they are delivered on the next attempt."""
    ids = await db.queued([f"+1415557{i:04d}" for i in range(4)])
    queue = await claimed_then_taken_back(db, ids)
    service = delivery(db, HeldProvider(width=len(ids)), Recorder())
    await asyncio.gather(*(service.deliver(i) for i in queue))
    assert set((await db.statuses(ids)).values()) == {"SENT"}
    for message_id in ids:
        kinds = await db.kinds(message_id)
        assert kinds == ["accepted", "attempt", "attempt_abandoned", "attempt", "provider_accepted"]


async def claimed_then_taken_back(db: Db, ids: list[UUID]) -> list[UUID]:
    """Claims the messages, then has the sweeper take them back as if their worker died mid
    call; the ids it hands to the broker."""
    lifecycle = db.container.lifecycle
    assert set(await lifecycle.claim_many(ids, utcnow())) == set(ids)
    queue: list[UUID] = []
    sweeper = Sweeper(
        lifecycle,
        Collect(queue),  # type: ignore[arg-type]
        MemoryHeldOutcomes(),
        LocalLiveness("test-worker"),
        grace=0,
        stale_after=0,
        max_attempts=5,
    )
    await asyncio.sleep(0.01)
    assert await sweeper.sweep_once() == len(ids)
    assert sorted(queue) == sorted(ids)
    return queue


async def test_a_message_taken_back_waits_for_its_first_vendor_instead_of_failing_over(
    db: Db,
) -> None:
    """Its dead worker may have been calling the route's first vendor: the worker that takes
    it over, whose own circuit for that vendor is open, waits rather than send it through the
    second; a message never abandoned fails over as usual. Once the first vendor is back it
    carries the abandoned message."""
    [abandoned] = await db.queued(["+14155570101"])
    queue = await claimed_then_taken_back(db, [abandoned])
    [fresh] = await db.queued(["+14155570102"])
    first = FakeProvider("vendor-a", TransientProviderError("CONNECTERROR", "refused"))
    second = FakeProvider("vendor-b")
    registry = FailoverRegistry({Channel.SMS: [first, second]}, threshold=1, cooldown=0.2)  # type: ignore[list-item]
    service = delivery(db, HeldProvider(width=1), Recorder(), registry)
    await service.deliver(fresh)  # opens vendor-a's circuit, fails over to vendor-b
    assert (first.calls, second.calls) == (1, 1)
    await service.deliver(queue[0])
    assert second.calls == 1, "never through another vendor than its dead worker's"
    assert (await db.statuses([abandoned]))[abandoned] == "QUEUED"
    assert (await db.kinds(abandoned))[-1] == "deferred"

    first.fail = None
    await asyncio.sleep(0.25)  # the circuit's cooldown: a trial call is let through
    async with db.container.engine.begin() as conn:
        await conn.execute(
            update(MESSAGES).where(MESSAGES.c.id == abandoned).values(next_attempt_at=utcnow())
        )
    await service.deliver(abandoned)
    assert (first.calls, second.calls) == (2, 1)
    async with db.container.engine.connect() as conn:
        carrier = await conn.scalar(select(MESSAGES.c.provider).where(MESSAGES.c.id == abandoned))
    assert carrier == "vendor-a"


async def test_a_sent_batch_locks_its_rows_in_id_order(db: Db) -> None:
    """Status-callback batches lock their rows in id order; a batch of sends given in another
    order must lock them in id order too, or the two can deadlock (and each such deadlock
    costs PostgreSQL's deadlock_timeout before one of them is failed). Here another
    transaction holds the lower row: the batch waits for it before touching the higher one,
    so that transaction can still lock the higher row."""
    if db.container.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no row locks")
    low, high = sorted(await db.queued(["+14155580001", "+14155580002"]))
    lifecycle = db.container.lifecycle
    assert set(await lifecycle.claim_many([low, high], utcnow())) == {low, high}
    async with db.container.engine.begin() as conn:
        # A new version of the lower row, stored after the higher one: a plan that follows
        # the table's physical order would now meet the higher row first.
        await conn.execute(update(MESSAGES).where(MESSAGES.c.id == low).values(segments=1))
    locking = (
        select(MESSAGES.c.id)
        .where(MESSAGES.c.id == bindparam("mid"))
        .with_for_update(key_share=True)
    )
    async with db.container.engine.connect() as other:
        await other.begin()
        await other.execute(text("SET LOCAL lock_timeout = '3s'"))
        await other.execute(locking, {"mid": low})
        record = asyncio.create_task(
            lifecycle.record_outcomes(
                [Sent(high, "twilio", "SM2"), Sent(low, "twilio", "SM1")], utcnow()
            )
        )
        await asyncio.sleep(0.5)  # the batch is now waiting for the lower row
        assert not record.done()
        await other.execute(locking, {"mid": high})  # free: the batch has not taken it
        await other.commit()
    changes = await asyncio.wait_for(record, 10)
    assert sorted(c.message.id for c in changes if c is not None) == [low, high]


async def test_held_outcomes_are_recorded_by_the_sweeper_and_a_bad_one_holds_up_nothing(
    db: Db,
) -> None:
    """Outcomes a worker could not write are recorded by the next sweep, before anything is
    taken back; one that can never be written (here a provider id longer than its column,
    on PostgreSQL) dead-letters its message alone, and the sweep carries on with the rest."""
    good, bad, due = await db.queued(["+14155590001", "+14155590002", "+14155590003"])
    lifecycle = db.container.lifecycle
    assert set(await lifecycle.claim_many([good, bad], utcnow(), worker="gone")) == {good, bad}
    held = MemoryHeldOutcomes()
    too_long = "SM" + "x" * 400 if db.container.engine.dialect.name == "postgresql" else "SMok"
    await held.keep([Sent(good, "twilio", "SMgood"), Sent(bad, "twilio", too_long)])
    queue: list[UUID] = []
    sweeper = Sweeper(
        lifecycle,
        Collect(queue),  # type: ignore[arg-type]
        held,
        LocalLiveness("alive"),  # "gone" is dead: only held outcomes keep its messages
        grace=0,
        stale_after=3600,
        max_attempts=5,
    )
    await sweeper.sweep_once()
    statuses = await db.statuses([good, bad, due])
    assert statuses[good] == "SENT"
    if db.container.engine.dialect.name == "postgresql":
        # Dead-lettered with what the provider said, not left SENDING for good.
        assert statuses[bad] == "FAILED"
        assert "dead_lettered" in await db.kinds(bad)
    assert await held.message_ids() == set()
    assert "attempt_abandoned" not in await db.kinds(good)
    assert due in queue, "the sweep went on past the outcome it could not record"
