"""The webhook dispatcher on fakes: what each kind of answer records for the delivery and
its endpoint, and that secrets stay out of what may be logged."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta

from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.domain.webhook_endpoints import (
    DeliveryState,
    DisabledReason,
    EventFilter,
    RetrySchedule,
    UnsafeUrl,
    WebhookDelivery,
    WebhookEndpoint,
)
from gateway.services.ports import AttemptRecord, DueDelivery, SentWebhook
from gateway.services.webhook_deliveries import WebhookDispatcher

NOW = datetime.now(UTC)
SECRET = "whsec_c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhay1hbnl3aGVyZQ=="


class Store:
    def __init__(self, due: list[DueDelivery]) -> None:
        self.due = due
        self.claims: list[int] = []
        #: What each record_all call recorded.
        self.recorded: list[list[AttemptRecord]] = []
        self.released: list[int] = []
        #: What renew extends; None: everything asked.
        self.renewable: set[int] | None = None

    async def claim(
        self, now: datetime, held: Collection[int], *, limit: int, batch: int, lease: timedelta
    ) -> list[DueDelivery]:
        taken, self.due = self.due[:limit], self.due[limit:]
        self.claims.append(len(taken))
        return taken

    async def renew(self, ids: Collection[int], now: datetime, until: datetime) -> set[int]:
        return set(ids) if self.renewable is None else set(ids) & self.renewable

    async def release(self, ids: Collection[int], now: datetime) -> None:
        self.released.extend(ids)

    async def record_all(self, attempts: Sequence[AttemptRecord], now: datetime) -> None:
        self.recorded.append(list(attempts))


class Sender:
    def __init__(self, answer: SentWebhook | Exception) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str, Sequence[str]]] = []

    async def send(
        self, url: str, *, webhook_id: str, secrets: Sequence[str], event: MessageEvent
    ) -> SentWebhook:
        self.sent.append((url, webhook_id, secrets))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def due(
    attempts: int = 1,
    failing_since: datetime | None = None,
    *,
    delivery_id: int = 7,
    endpoint_id: uuid.UUID | None = None,
    leased_until: datetime | None = None,
) -> DueDelivery:
    account = uuid.uuid4()
    event = MessageEvent(
        id=42,
        account_id=account,
        message_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        status=MessageStatus.DELIVERED,
        kind="delivery_receipt",
        detail=None,
        occurred_at=NOW,
    )
    endpoint_id = endpoint_id or uuid.uuid4()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        account_id=account,
        url=f"https://hooks.example/{endpoint_id}",
        description=None,
        filter=EventFilter(),
        enabled=True,
        disabled_reason=None,
        disabled_at=None,
        failing_since=failing_since,
        previous_secret_until=None,
        created_at=NOW,
        updated_at=NOW,
    )
    delivery = WebhookDelivery(
        id=delivery_id,
        endpoint_id=endpoint.id,
        account_id=account,
        event=event,
        state=DeliveryState.PENDING,
        attempts=attempts,
        last_status_code=None,
        last_error=None,
        last_attempt_at=None,
        next_attempt_at=NOW,
        created_at=NOW,
    )
    # Leases run from the moment of the claim, not the module's import: the suite may run
    # this test minutes after collecting it, and an expired lease is never tried.
    if leased_until is None:
        leased_until = datetime.now(UTC) + timedelta(minutes=1)
    return DueDelivery(delivery, endpoint, (SECRET,), leased_until)


def dispatcher(store: Store, sender: Sender, *, slots: int = 4) -> WebhookDispatcher:
    return WebhookDispatcher(
        store,
        sender,
        RetrySchedule(base_seconds=10, max_attempts=3),
        disable_after=timedelta(days=5),
        slots=slots,
        per_endpoint=2,
        batch=4,
        lease=timedelta(minutes=1),
        longest_try=timedelta(seconds=30),
        poll_interval=0.01,
    )


async def attempt(answer: SentWebhook | Exception, claimed: DueDelivery) -> AttemptRecord:
    sender = Sender(answer)
    record = await dispatcher(Store([]), sender).attempt(claimed)
    assert sender.sent == [(claimed.endpoint.url, "evt_42", (SECRET,))]
    return record


async def test_a_2xx_delivers_and_ends_the_failing_streak() -> None:
    record = await attempt(SentWebhook(204, ""), due(failing_since=NOW))
    assert record.state is DeliveryState.SUCCEEDED and record.succeeded
    assert record.next_attempt_at is None and record.error is None and record.disable is None


async def test_a_failure_is_retried_later_until_the_tries_run_out() -> None:
    before = datetime.now(UTC)
    record = await attempt(SentWebhook(500, "boom"), due(attempts=1))
    after = datetime.now(UTC)
    assert record.state is DeliveryState.PENDING and not record.succeeded
    # The first pause: 10 s, less up to a quarter of jitter.
    assert record.next_attempt_at is not None
    assert (
        before + timedelta(seconds=7.5) <= record.next_attempt_at <= after + timedelta(seconds=10)
    )
    assert record.error == "boom" and record.response == "boom" and record.status_code == 500
    last = await attempt(SentWebhook(500, "boom"), due(attempts=3))
    assert last.state is DeliveryState.FAILED and last.next_attempt_at is None
    assert last.disable is None


async def test_410_fails_the_delivery_and_disables_the_endpoint() -> None:
    record = await attempt(SentWebhook(410, "gone"), due())
    assert record.state is DeliveryState.FAILED and record.disable is DisabledReason.GONE


async def test_failing_past_the_allowed_time_disables_the_endpoint() -> None:
    record = await attempt(
        SentWebhook(None, "ConnectError"), due(failing_since=NOW - timedelta(days=6))
    )
    assert record.disable is DisabledReason.FAILING and record.state is DeliveryState.PENDING
    recent = await attempt(SentWebhook(None, "ConnectError"), due(failing_since=NOW))
    assert recent.disable is None


async def test_a_url_unsafe_at_delivery_time_is_a_failed_try_not_a_call() -> None:
    record = await attempt(UnsafeUrl("resolves to a private address (10.0.0.7)"), due())
    assert record.state is DeliveryState.PENDING and record.status_code is None
    assert record.error is not None and "private address" in record.error
    assert record.response is None


class Gated(Sender):
    """Answers 200 once ``opened``, counting the sends in flight per URL at their peak."""

    def __init__(self, answer: SentWebhook) -> None:
        super().__init__(answer)
        self.opened = asyncio.Event()
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    async def send(
        self, url: str, *, webhook_id: str, secrets: Sequence[str], event: MessageEvent
    ) -> SentWebhook:
        self.in_flight[url] += 1
        self.peak[url] = max(self.peak[url], self.in_flight[url])
        try:
            await self.opened.wait()
            return await super().send(url, webhook_id=webhook_id, secrets=secrets, event=event)
        finally:
            self.in_flight[url] -= 1


def backlog(endpoints: int, each: int, **fields: datetime) -> list[DueDelivery]:
    ids = [uuid.uuid4() for _ in range(endpoints)]
    return [
        due(delivery_id=n * endpoints + i, endpoint_id=endpoint, **fields)
        for n in range(each)
        for i, endpoint in enumerate(ids)
    ]


async def run_until(running: WebhookDispatcher, done: Callable[[], bool]) -> None:
    task = asyncio.create_task(running.run_forever())
    try:
        for _ in range(500):
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the dispatcher never got there")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_each_endpoint_gets_its_cap_of_sends_and_outcomes_are_recorded_together() -> None:
    store = Store(backlog(endpoints=3, each=6))
    sender = Gated(SentWebhook(200, ""))
    running = dispatcher(store, sender, slots=5)
    # Claimed a batch of each endpoint (as room allows), sent at most 2 of one at a time.
    assert await running.run_once() == 8
    await settle()
    assert sum(sender.in_flight.values()) == 5
    assert max(sender.in_flight.values()) == 2
    sender.opened.set()

    def recorded() -> list[AttemptRecord]:
        return [r for batch in store.recorded for r in batch]

    await run_until(running, lambda: len(recorded()) == 18)
    assert sorted(r.delivery_id for r in recorded()) == list(range(18))
    assert all(r.state is DeliveryState.SUCCEEDED for r in recorded())
    assert max(sender.peak.values()) == 2
    # Tries that ended together were recorded in one go, not one transaction each.
    assert len(store.recorded) < 18
    assert store.released == []


async def test_an_endpoint_gone_mid_batch_gets_nothing_more_and_its_waiting_ones_go_back() -> None:
    store = Store(backlog(endpoints=1, each=4))
    sender = Sender(SentWebhook(410, "gone"))
    await run_until(dispatcher(store, sender), lambda: bool(store.released))
    # The two sent at once were answered 410; the other two were given back unsent.
    assert len(sender.sent) == 2
    assert sorted(store.released) == [2, 3]
    [first] = store.recorded
    assert {r.disable for r in first} == {DisabledReason.GONE}


async def test_deliveries_whose_lease_was_not_renewed_are_given_back_unsent() -> None:
    """The store renews nothing (the endpoint was disabled): what waits goes back."""
    store = Store(backlog(endpoints=1, each=4))
    store.renewable = set()
    sender = Gated(SentWebhook(200, ""))
    running = dispatcher(store, sender)
    assert await running.run_once() == 4
    await settle()
    running._renewed_at -= timedelta(hours=1)  # a renewal is due
    await running._renew()
    await running._record_ended()
    # The two being sent go on; the two waiting were given back.
    assert sorted(store.released) == [2, 3]
    sender.opened.set()
    await settle()
    assert len(sender.sent) == 2


async def test_a_delivery_whose_lease_cannot_cover_a_try_is_not_sent() -> None:
    store = Store(
        backlog(endpoints=1, each=2, leased_until=datetime.now(UTC) + timedelta(seconds=10))
    )
    sender = Sender(SentWebhook(200, ""))
    running = dispatcher(store, sender)
    assert await running.run_once() == 2
    await settle()
    assert sender.sent == [] and store.recorded == [] and store.released == []


async def settle() -> None:
    """Let the sends started (fakes that never wait) end, and their slots be given back."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_secrets_stay_out_of_reprs() -> None:
    assert SECRET not in repr(due())
