"""Use case: deliver webhook events, at least once, without holding up anything else.

Deliveries are rows written in the same transaction as the audit-trail event they carry (the
database does it as the event is inserted), so an event committed is an event that will be
sent. A worker claims due deliveries with a lease and counts the claim as a try; one that dies
mid-delivery leaves the lease to run out, and the delivery is claimed again.

Failure behaviour:

- An answer in 2xx delivers; 410 fails the delivery for good and disables the endpoint; any
  other answer, no answer, or a URL that is unsafe at this moment is a failed try, retried on
  ``RetrySchedule`` until its tries run out (then FAILED, redeliverable through the API).
- An endpoint whose deliveries have failed without a single success for ``disable_after`` is
  disabled (``FAILING``); its waiting deliveries stay due for when it is enabled again.
- Recording an outcome fails (database down): the lease runs out and the delivery is tried
  again; the receiver sees the same ``webhook-id`` and can tell it is a repeat.

Isolation: this dispatcher has slots of its own (``slots``) apart from message delivery, and
no endpoint holds more than ``per_endpoint`` of them, so a slow endpoint slows only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from gateway.domain.webhook_endpoints import (
    DeliveryState,
    DisabledReason,
    RetrySchedule,
    UnsafeUrl,
    Verdict,
    disabled_for_failing,
    verdict,
)
from gateway.services.clock import utcnow
from gateway.services.ports import (
    AttemptRecord,
    DueDelivery,
    SentWebhook,
    SettledDeliveryStore,
    WebhookDeliveryStore,
    WebhookSender,
)

log = structlog.get_logger(__name__)


def webhook_id(event_id: int) -> str:
    """The ``webhook-id`` of an event's deliveries: the same on every try and redelivery."""
    return f"evt_{event_id}"


class WebhookDispatcher:
    def __init__(
        self,
        store: WebhookDeliveryStore,
        sender: WebhookSender,
        schedule: RetrySchedule,
        *,
        disable_after: timedelta,
        slots: int,
        per_endpoint: int,
        lease: timedelta,
        poll_interval: float,
    ) -> None:
        self._store = store
        self._sender = sender
        self._schedule = schedule
        self._disable_after = disable_after
        self._slots = slots
        self._per_endpoint = per_endpoint
        self._lease = lease
        self._poll_interval = poll_interval
        self._running: set[asyncio.Task[None]] = set()
        self._finished = asyncio.Event()

    async def run_once(self) -> int:
        """Claim what free slots allow and start sending it; how many were claimed."""
        free = self._slots - len(self._running)
        if free <= 0:
            return 0
        claimed = await self._store.claim(
            utcnow(), limit=free, per_endpoint=self._per_endpoint, lease=self._lease
        )
        for due in claimed:
            task = asyncio.create_task(self._deliver(due), name="webhook-delivery")
            self._running.add(task)
            task.add_done_callback(self._done)
        return len(claimed)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._finished.set()

    async def run_forever(self) -> None:
        """Claim and send until cancelled; sends in progress are cancelled with it (their
        leases run out and they are tried again)."""
        try:
            while True:
                self._finished.clear()
                claimed = await self.run_once()
                if claimed and len(self._running) < self._slots:
                    continue  # more may be due right now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished.wait(), self._poll_interval)
        finally:
            for task in list(self._running):
                task.cancel()
            if self._running:
                await asyncio.wait(list(self._running))

    async def _deliver(self, due: DueDelivery) -> None:
        try:
            await self.deliver(due)
        except Exception:
            # The lease runs out and the delivery is claimed again.
            log.exception("webhook_delivery_failed", delivery=due.delivery.id)

    async def deliver(self, due: DueDelivery) -> AttemptRecord:
        """One try of a claimed delivery, recorded."""
        endpoint = due.endpoint
        try:
            sent = await self._sender.send(
                endpoint.url,
                webhook_id=webhook_id(due.delivery.event.id),
                secrets=due.secrets,
                event=due.delivery.event,
            )
        except UnsafeUrl as exc:
            sent = SentWebhook(None, f"unsafe URL: {exc}")
        now = utcnow()
        outcome = verdict(sent.status_code)
        attempts = due.delivery.attempts
        disable: DisabledReason | None = None
        next_attempt_at = None
        if outcome is Verdict.DELIVERED:
            state = DeliveryState.SUCCEEDED
        elif outcome is Verdict.GONE:
            state, disable = DeliveryState.FAILED, DisabledReason.GONE
        else:
            pause = self._schedule.pause(attempts)
            state = DeliveryState.FAILED if pause is None else DeliveryState.PENDING
            next_attempt_at = None if pause is None else now + pause
            failing_since = endpoint.failing_since or now
            if disabled_for_failing(failing_since, now, self._disable_after):
                disable = DisabledReason.FAILING
        record = AttemptRecord(
            delivery_id=due.delivery.id,
            endpoint_id=endpoint.id,
            status_code=sent.status_code,
            error=None if outcome is Verdict.DELIVERED else sent.text,
            response=sent.text if sent.status_code is not None else None,
            state=state,
            next_attempt_at=next_attempt_at,
            succeeded=outcome is Verdict.DELIVERED,
            disable=disable,
        )
        await self._store.record(record, now)
        if disable is not None:
            log.warning(
                "webhook_endpoint_disabled",
                endpoint=str(endpoint.id),
                account=str(endpoint.account_id),
                reason=disable.value,
            )
        return record


class DeliveryRetention:
    """Deletes settled deliveries older than ``keep``: at most ``batches`` batches of
    ``batch`` a run, each its own short transaction, so neither the trigger's inserts nor the
    chore loop wait long on it; a backlog is worked off over several runs. A chore, run by one
    worker at a time. Pending deliveries are never deleted. A run that fails (database down)
    loses nothing: the next one deletes what it left."""

    def __init__(
        self, store: SettledDeliveryStore, *, keep: timedelta, batch: int, batches: int
    ) -> None:
        self._store = store
        self._keep = keep
        self._batch = batch
        self._batches = batches

    async def run_once(self) -> int:
        """How many deliveries were deleted."""
        before = utcnow() - self._keep
        deleted = 0
        for _ in range(self._batches):
            gone = await self._store.delete_settled(before, limit=self._batch)
            deleted += gone
            if gone < self._batch:
                break
        return deleted
