"""Quiet hours in the use cases, on in-memory ports: the setting is read once per send call and
cached; the accept path holds drafts due inside the window; the delivery worker gives a claimed
message back to SCHEDULED instead of sending it, unless it bypasses quiet hours."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.domain.channels import Channel
from gateway.domain.messages import SendRequest
from gateway.domain.pacing import Queued
from gateway.domain.quiet_hours import OFF, QuietHours
from gateway.domain.results import AcceptResult, Conflict, Hold, Item, Release, Sent
from gateway.services.delivery import DeliveryService
from gateway.services.quiet_hours import QuietHoursService
from gateway.services.retry_policy import RetryPolicy
from gateway.services.sending import SendService
from providers.registry import FailoverRegistry
from tests.quiet_windows import window_around_now
from tests.unit.test_breaker_and_failover import Clock, FakeProvider, message
from workers.held_outcomes import MemoryHeldOutcomes, decode_outcome, encode_outcome

ACCOUNT = uuid4()


class MemoryQuietHours:
    def __init__(self) -> None:
        self.stored: dict[UUID, QuietHours] = {}
        self.reads = 0
        self.down = False

    async def quiet_hours(self, account_id: UUID) -> QuietHours:
        self.reads += 1
        if self.down:
            raise ConnectionError("database down")
        return self.stored.get(account_id, OFF)

    async def set_quiet_hours(self, account_id: UUID, hours: QuietHours, now: datetime) -> None:
        self.stored[account_id] = hours


def quiet_now(store: MemoryQuietHours, zone: str = "America/Los_Angeles") -> QuietHoursService:
    """A service whose account is inside its quiet hours now, for recipients in ``zone``."""
    start, end = window_around_now(zone)
    store.stored[ACCOUNT] = QuietHours(
        time.fromisoformat(start), time.fromisoformat(end), default_zone=zone
    )
    return QuietHoursService(store, ttl=60)


# ---------------------------------------------------------------------------- the setting


async def test_the_setting_is_cached_for_its_ttl_and_a_change_holds_at_once() -> None:
    store, clock = MemoryQuietHours(), Clock()
    service = QuietHoursService(store, ttl=5, clock=clock)
    assert await service.of(ACCOUNT) == OFF
    assert await service.of(ACCOUNT) == OFF
    assert store.reads == 1
    clock.now += 5
    await service.of(ACCOUNT)
    assert store.reads == 2, "read again once the ttl is over"
    changed = await service.set(ACCOUNT, "21:00", "08:00", "Europe/Amsterdam")
    assert changed == QuietHours(time(21), time(8), "Europe/Amsterdam")
    assert store.stored[ACCOUNT] == changed
    assert await service.of(ACCOUNT) == changed and store.reads == 2


class SlowQuietHours(MemoryQuietHours):
    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def quiet_hours(self, account_id: UUID) -> QuietHours:
        found = await super().quiet_hours(account_id)
        self.asked.set()
        await self.answer.wait()
        return found


async def test_callers_that_miss_together_share_one_read() -> None:
    store = SlowQuietHours()
    service = QuietHoursService(store, ttl=5)
    waiting = [asyncio.ensure_future(service.of(ACCOUNT)) for _ in range(20)]
    await asyncio.sleep(0)
    store.answer.set()
    assert await asyncio.gather(*waiting) == [OFF] * 20
    assert store.reads == 1


async def test_a_read_that_overlaps_a_change_does_not_undo_it() -> None:
    store = SlowQuietHours()
    service = QuietHoursService(store, ttl=5)
    reading = asyncio.ensure_future(service.of(ACCOUNT))
    await store.asked.wait()  # the read is under way
    changed = await service.set(ACCOUNT, "21:00", "08:00", "UTC")
    store.answer.set()
    assert await reading == OFF, "what was stored when it read"
    assert await service.of(ACCOUNT) == changed and store.reads == 1


async def test_a_bad_setting_is_refused_and_nothing_is_stored() -> None:
    store = MemoryQuietHours()
    refused = await QuietHoursService(store, ttl=5).set(ACCOUNT, "21:00", None, "UTC")
    assert isinstance(refused, list) and [p.field for p in refused] == ["end"]
    assert store.stored == {}


async def test_the_last_known_setting_stands_while_the_store_is_down() -> None:
    store, clock = MemoryQuietHours(), Clock()
    service = QuietHoursService(store, ttl=5, clock=clock)
    await service.set(ACCOUNT, "21:00", "08:00", "UTC")
    store.down = True
    clock.now += 10
    assert (await service.of(ACCOUNT)).enabled
    assert (await service.of(ACCOUNT)).enabled
    assert store.reads == 1, "not asked again before another ttl"
    with pytest.raises(ConnectionError):
        await service.of(uuid4())  # never read: nothing to fall back on


# ----------------------------------------------------------------------------- accepting


class RecordingAccept:
    def __init__(self) -> None:
        self.items: list[Item] = []

    async def accept(self, items: list[Item], *, now: datetime, retention: Any) -> AcceptResult:
        self.items += items
        return AcceptResult([Conflict("recorded only", None) for _ in items], [], [], set())


class NoBroker:
    """Nothing is created here, so nothing is handed over."""

    async def enqueue(self, work: Sequence[Queued]) -> None:
        raise AssertionError(work)

    async def publish(self, events: Sequence[Any]) -> None:
        raise AssertionError(events)


def sms(to: str = "+14155550101", **fields: Any) -> SendRequest:
    return SendRequest(Channel.SMS, "+14155550100", to, body="code 1234", **fields)


async def test_a_batch_reads_the_setting_once_and_holds_only_what_does_not_bypass() -> None:
    store = MemoryQuietHours()
    accept = RecordingAccept()
    sending = SendService(
        accept,
        None,  # type: ignore[arg-type]  # no conversation to touch: nothing is stored
        NoBroker(),  # type: ignore[arg-type]
        default_region="US",
        retention=timedelta(hours=1),
        quiet_hours=quiet_now(store),
    )
    later = datetime.now(UTC) + timedelta(hours=3)  # after the window
    requests = [sms(), sms(bypass_quiet_hours=True), sms(send_at=later), sms("+442079460018")]
    await sending.send(ACCOUNT, requests * 25)
    assert store.reads == 1, "one read for a batch of 100"
    held = [draft.deferral for _, draft in accept.items[:4]]
    assert held[0] is not None and held[0].zones == ("America/Los_Angeles",)
    assert held[0].until > datetime.now(UTC)
    assert held[1] is None, "a one-time code bypasses the window"
    assert held[2] is None, "scheduled for after the window"
    assert held[3] is None, "a London number is outside Los Angeles' window"


# ----------------------------------------------------------------------------- delivering


def delivery(quiet: QuietHoursService, provider: FakeProvider) -> DeliveryService:
    return DeliveryService(
        None,  # type: ignore[arg-type]  # attempts write nothing
        FailoverRegistry({Channel.SMS: [provider]}),
        None,  # type: ignore[arg-type]
        RetryPolicy(5, 0.01, 0.1),
        MemoryHeldOutcomes(),
        worker="test-worker",
        quiet_hours=quiet,
    )


async def test_a_claimed_message_inside_the_window_is_held_not_sent() -> None:
    provider = FakeProvider("sandbox")
    worker = delivery(quiet_now(MemoryQuietHours()), provider)
    claimed = replace(message(), account_id=ACCOUNT)
    outcome = await worker.attempt(claimed)
    assert isinstance(outcome, Hold) and provider.calls == 0
    assert outcome.until > datetime.now(UTC)
    assert outcome.detail["reason"] == "quiet_hours"
    assert outcome.detail["timeZones"] == ["America/Los_Angeles"]


async def test_a_claimed_message_that_bypasses_the_window_is_sent() -> None:
    provider = FakeProvider("sandbox")
    worker = delivery(quiet_now(MemoryQuietHours()), provider)
    claimed = replace(message(), account_id=ACCOUNT, bypass_quiet_hours=True)
    assert isinstance(await worker.attempt(claimed), Sent) and provider.calls == 1


async def test_a_claim_whose_quiet_hours_cannot_be_read_is_given_back_untried() -> None:
    store = MemoryQuietHours()
    store.down = True
    provider = FakeProvider("sandbox")
    outcome = await delivery(QuietHoursService(store, ttl=5), provider).attempt(message())
    assert isinstance(outcome, Release) and provider.calls == 0


def test_a_hold_survives_the_held_outcomes_wire_format() -> None:
    hold = Hold(uuid4(), datetime(2026, 1, 16, 8, tzinfo=UTC), {"reason": "quiet_hours"})
    assert decode_outcome(encode_outcome(hold)) == hold
