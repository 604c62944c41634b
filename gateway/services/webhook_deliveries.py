"""Use case: deliver webhook events, at least once, without holding up anything else.

Deliveries are rows written in the same transaction as the audit-trail event they carry (the
database does it as the event is inserted), so an event committed is an event that will be
sent. A worker claims due deliveries with a lease and counts the claim as a try; one that dies
mid-delivery leaves the lease to run out, and the delivery is claimed again.

One worker at a time sends to an endpoint: the one holding leases on its deliveries. It claims
them in batches (up to ``batch`` of an endpoint at once), sends at most ``per_endpoint`` of
them at a time, renews the leases of what it holds while it lives, and records the outcomes of
tries that ended together in one transaction. So a try costs the POST alone, not a claim and a
record of its own, and an endpoint's cap holds across workers without every try waiting on the
database.

Failure behaviour:

- An answer in 2xx delivers; 410 fails the delivery for good and disables the endpoint; any
  other answer, no answer, or a URL that is unsafe at this moment is a failed try, retried on
  ``RetrySchedule`` until its tries run out (then FAILED, redeliverable through the API).
- An endpoint whose deliveries have failed without a single success for ``disable_after`` is
  disabled (``FAILING``); its waiting deliveries stay due for when it is enabled again, and
  those this worker had claimed but not sent are given back.
- Recording outcomes fails (database down): their leases run out and the deliveries are tried
  again; the receiver sees the same ``webhook-id`` and can tell it is a repeat. Renewing fails:
  a delivery whose lease no longer covers a whole try is not sent (another worker may claim
  it once the lease has run out).

Isolation: this dispatcher has slots of its own (``slots``) apart from message delivery, and
no endpoint holds more than ``per_endpoint`` of them, so a slow endpoint slows only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

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

#: How long shutdown waits to record the tries that ended and give back what was not sent.
_SHUTDOWN_SECONDS: Final = 5.0


def webhook_id(event_id: int) -> str:
    """The ``webhook-id`` of an event's deliveries: the same on every try and redelivery."""
    return f"evt_{event_id}"


@dataclass
class _Lane:
    """One endpoint's claimed deliveries in this worker: waiting, and how many are being sent."""

    waiting: deque[DueDelivery] = field(default_factory=deque)
    sending: int = 0
    #: Whether the last claim found any of its deliveries due: more may be due now.
    fed: bool = True

    @property
    def size(self) -> int:
        return len(self.waiting) + self.sending


@dataclass(eq=False)
class WebhookDispatcher:
    store: WebhookDeliveryStore
    sender: WebhookSender
    schedule: RetrySchedule
    _: KW_ONLY
    disable_after: timedelta
    slots: int
    per_endpoint: int
    batch: int
    lease: timedelta
    longest_try: timedelta
    poll_interval: float

    def __post_init__(self) -> None:
        if self.lease <= self.longest_try:
            raise ValueError("the lease must outlast the longest try")
        self.batch = max(self.batch, self.per_endpoint)
        #: As many deliveries as keep every slot busy at each endpoint's cap, a batch each.
        self._most_held = self.batch * max(1, self.slots // self.per_endpoint)
        self._renew_every = (self.lease - self.longest_try) / 3
        self._reset()

    def _reset(self) -> None:
        self._lanes: dict[UUID, _Lane] = {}
        #: Every delivery held (waiting, being sent, or its outcome not yet recorded) and
        #: until when its lease holds.
        self._held: dict[int, datetime] = {}
        self._sending = 0
        self._running: set[asyncio.Task[None]] = set()
        self._ended: list[AttemptRecord] = []
        self._given_back: list[int] = []
        self._to_record = asyncio.Event()
        self._wanted = asyncio.Event()
        self._renewed_at = utcnow()

    async def run_once(self) -> int:
        """Claim what this worker has room for and start sending it; how many were claimed."""
        room = self._most_held - len(self._held)
        if room <= 0:
            return 0
        now = utcnow()
        claimed = await self.store.claim(
            now, list(self._held), limit=room, batch=self.batch, lease=self.lease
        )
        for due in claimed:
            self._held[due.delivery.id] = due.leased_until
            self._lanes.setdefault(due.endpoint.id, _Lane()).waiting.append(due)
        fed = {due.endpoint.id for due in claimed}
        for endpoint, lane in self._lanes.items():
            lane.fed = endpoint in fed
        self._pump()
        return len(claimed)

    def _pump(self) -> None:
        """Start sends while slots are free, each endpoint up to its cap."""
        started = True
        while started and self._sending < self.slots:
            started = False
            for lane in self._lanes.values():
                if self._sending >= self.slots:
                    break
                if lane.waiting and lane.sending < self.per_endpoint:
                    self._start(lane, lane.waiting.popleft())
                    started = True

    def _start(self, lane: _Lane, due: DueDelivery) -> None:
        lane.sending += 1
        self._sending += 1
        task = asyncio.create_task(self._send(lane, due), name="webhook-delivery")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _send(self, lane: _Lane, due: DueDelivery) -> None:
        delivery = due.delivery.id
        try:
            leased_until = self._held.get(delivery)
            if leased_until is None or leased_until - utcnow() < self.longest_try:
                # Its lease may run out mid-try: left to run out, and claimed again.
                self._held.pop(delivery, None)
                return
            record = await self.attempt(due)
            self._ended.append(record)
            self._to_record.set()
            if record.disable is not None:
                self._give_back(lane)
        except Exception:
            # The lease runs out and the delivery is claimed again.
            self._held.pop(delivery, None)
            log.exception("webhook_delivery_failed", delivery=delivery)
        finally:
            lane.sending -= 1
            self._sending -= 1
            if lane.size == 0:
                self._lanes.pop(due.endpoint.id, None)
            if lane.fed and lane.size <= self.batch // 2:
                # Half a batch or less left of an endpoint that had more due at the last
                # claim: claim its next now (one claim at a time), not at the next poll.
                self._wanted.set()
            self._pump()

    def _give_back(self, lane: _Lane) -> None:
        """The endpoint was disabled: what waits for it is given back, not sent."""
        self._given_back.extend(due.delivery.id for due in lane.waiting)
        lane.waiting.clear()
        self._to_record.set()

    async def run_forever(self) -> None:
        """Claim, send and record until cancelled; sends in progress are cancelled with it
        (their leases run out and they are tried again), what ended is recorded and what
        waits is given back, if the database answers in time."""
        recorder = asyncio.create_task(self._record_forever(), name="webhook-recorder")
        try:
            while True:
                self._wanted.clear()
                try:
                    await self._renew()
                    await self.run_once()
                except Exception:
                    # Database trouble: the sends under way go on; held leases that run
                    # out meanwhile are not sent on (see _send).
                    log.exception("webhook_claim_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wanted.wait(), self.poll_interval)
        finally:
            recorder.cancel()
            for task in list(self._running):
                task.cancel()
            await asyncio.wait([recorder, *self._running])
            for lane in self._lanes.values():
                self._given_back.extend(due.delivery.id for due in lane.waiting)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._record_ended(), _SHUTDOWN_SECONDS)
            self._reset()  # a restart starts afresh

    async def _renew(self) -> None:
        """Extend the leases of what this worker holds (of enabled endpoints), a few times a
        lease."""
        now = utcnow()
        if now - self._renewed_at < self._renew_every or not self._held:
            return
        self._renewed_at = now
        until = now + self.lease
        renewed = await self.store.renew(list(self._held), now, until)
        for delivery in renewed:
            if delivery in self._held:
                self._held[delivery] = until
        # Not renewed: the endpoint was disabled (given back), or the lease ran out (nothing
        # to give back; not sent, since its lease no longer covers a try).
        for lane in self._lanes.values():
            kept = [due for due in lane.waiting if due.delivery.id in renewed]
            if len(kept) < len(lane.waiting):
                self._given_back.extend(
                    due.delivery.id for due in lane.waiting if due.delivery.id not in renewed
                )
                lane.waiting = deque(kept)
                self._to_record.set()

    async def _record_forever(self) -> None:
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            try:
                await self._record_ended()
            except Exception:
                # Their leases run out and the deliveries are tried again.
                log.exception("webhook_outcomes_not_recorded")

    async def _record_ended(self) -> None:
        """Record the tries that ended since the last time, in one transaction, and give
        back what was not sent; what was handed in stops being held either way."""
        ended, self._ended = self._ended, []
        given_back, self._given_back = self._given_back, []
        try:
            if ended:
                await self.store.record_all(ended, utcnow())
            if given_back:
                await self.store.release(given_back, utcnow())
        finally:
            for delivery in [*(r.delivery_id for r in ended), *given_back]:
                self._held.pop(delivery, None)
        for record in ended:
            if record.disable is not None:
                log.warning(
                    "webhook_endpoint_disabled",
                    endpoint=str(record.endpoint_id),
                    reason=record.disable.value,
                )

    async def attempt(self, due: DueDelivery) -> AttemptRecord:
        """One try of a claimed delivery, and what it leads to (recorded by the caller)."""
        endpoint = due.endpoint
        try:
            sent = await self.sender.send(
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
            pause = self.schedule.pause(attempts)
            state = DeliveryState.FAILED if pause is None else DeliveryState.PENDING
            next_attempt_at = None if pause is None else now + pause
            failing_since = endpoint.failing_since or now
            if disabled_for_failing(failing_since, now, self.disable_after):
                disable = DisabledReason.FAILING
        return AttemptRecord(
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


@dataclass(eq=False, slots=True)
class DeliveryRetention:
    """Deletes settled deliveries older than ``keep``: at most ``batches`` batches of
    ``batch`` a run, each its own short transaction, so neither the trigger's inserts nor the
    chore loop wait long on it; a backlog is worked off over several runs. A chore, run by one
    worker at a time. Pending deliveries are never deleted. A run that fails (database down)
    loses nothing: the next one deletes what it left."""

    store: SettledDeliveryStore
    _: KW_ONLY
    keep: timedelta
    batch: int
    batches: int

    async def run_once(self) -> int:
        """How many deliveries were deleted."""
        before = utcnow() - self.keep
        deleted = 0
        for _ in range(self.batches):
            gone = await self.store.delete_settled(before, limit=self.batch)
            deleted += gone
            if gone < self.batch:
                break
        return deleted
