"""The webhook dispatcher on fakes: what each kind of answer records for the delivery and
its endpoint, and that secrets stay out of what may be logged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
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
        self.recorded: list[AttemptRecord] = []

    async def claim(
        self, now: datetime, *, limit: int, per_endpoint: int, lease: timedelta
    ) -> list[DueDelivery]:
        taken, self.due = self.due[:limit], self.due[limit:]
        return taken

    async def record(self, attempt: AttemptRecord, now: datetime) -> None:
        self.recorded.append(attempt)


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


def due(attempts: int = 1, failing_since: datetime | None = None) -> DueDelivery:
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
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        account_id=account,
        url="https://hooks.example/in",
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
        id=7,
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
    return DueDelivery(delivery, endpoint, (SECRET,), NOW + timedelta(minutes=1))


def dispatcher(store: Store, sender: Sender) -> WebhookDispatcher:
    return WebhookDispatcher(
        store,
        sender,
        RetrySchedule(base_seconds=10, max_attempts=3),
        disable_after=timedelta(days=5),
        slots=4,
        per_endpoint=2,
        lease=timedelta(minutes=1),
        poll_interval=1.0,
    )


async def attempt(answer: SentWebhook | Exception, claimed: DueDelivery) -> AttemptRecord:
    store = Store([claimed])
    sender = Sender(answer)
    record = await dispatcher(store, sender).deliver(claimed)
    assert store.recorded == [record]
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


async def test_run_once_claims_only_what_free_slots_allow() -> None:
    store = Store([due() for _ in range(6)])
    sender = Sender(SentWebhook(200, ""))
    running = dispatcher(store, sender)
    assert await running.run_once() == 4
    assert len(store.due) == 2
    # No slot is free until a send ends.
    assert await running.run_once() == 0
    await settle()
    assert [r.state for r in store.recorded] == [DeliveryState.SUCCEEDED] * 4
    assert await running.run_once() == 2
    await settle()
    assert len(store.recorded) == 6


async def settle() -> None:
    """Let the sends started (fakes that never wait) end, and their slots be given back."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_secrets_stay_out_of_reprs() -> None:
    assert SECRET not in repr(due())
