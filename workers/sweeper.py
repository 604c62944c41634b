"""Hands due work to the broker and takes back what dead workers held.

Each sweep, in this order:
1. records the outcomes workers hold but could not write (the database was down), so that
   no message whose provider id is known looks abandoned;
2. promotes scheduled messages whose time came;
3. takes back the SENDING messages of workers that are dead (no heartbeat), or, for messages
   with no recorded worker, that have been SENDING for ``stale_after``;
4. enqueues what is due: what became due since the last sweep (retries, deferrals, scheduled
   times, take-backs: nobody else enqueues them) at once, and any accepted message still
   QUEUED ``grace`` after it was due (the process that accepted it died before enqueueing).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta

import structlog

from gateway.domain.pacing import Queued
from gateway.domain.records import DeliveryError
from gateway.domain.results import Change, Outcome
from gateway.domain.statuses import MessageStatus
from gateway.outages import describe, is_unavailable
from gateway.services.clock import utcnow
from gateway.services.ports import Broker, HeldOutcomes, WorkerLiveness
from persistence.lifecycle import LifecycleRepository

log = structlog.get_logger(__name__)


@dataclass(eq=False, slots=True)
class Sweeper:
    lifecycle: LifecycleRepository
    broker: Broker
    held: HeldOutcomes
    liveness: WorkerLiveness
    _: KW_ONLY
    # Accepted messages younger than this (seconds) are still on their normal way to the broker.
    grace: float
    # SENDING for longer than this (seconds), with no worker recorded, means its worker is gone.
    stale_after: float
    max_attempts: int
    # The end of the last sweep's window of newly due work.
    _since: datetime | None = field(default=None, init=False)

    async def sweep_once(self) -> int:
        try:
            await self.settle_held()
        except Exception as exc:
            # Nothing is taken back while outcomes are held (see ``keep`` below): the rest of
            # the sweep is safe, and fails anyway if the database is what is down.
            log.warning("held_outcomes_not_recorded", error=describe(exc))
        now = utcnow()
        grace = timedelta(seconds=self.grace)
        promoted = await self.lifecycle.promote_scheduled(now)
        abandoned = await self.lifecycle.requeue_abandoned(
            now,
            stale_before=now - timedelta(seconds=self.stale_after),
            live_workers=await self.liveness.live(),
            keep=await self.held.message_ids(),
            max_attempts=self.max_attempts,
        )
        if promoted or abandoned:
            await self.broker.publish([c.event for c in [*promoted, *abandoned]])
        if abandoned:
            log.warning("attempts_abandoned", messages=len(abandoned))
        since, self._since = self._since or now - grace, now
        due = await self.lifecycle.due_work(now, since=since, grace_before=now - grace)
        ready = {
            c.message.id: Queued.of(c.message)
            for c in [*promoted, *abandoned]
            if c.message.status is MessageStatus.QUEUED
        }
        for work in due:
            ready.setdefault(work.message_id, work)
        if ready:
            await self.broker.enqueue(list(ready.values()))
        return len(ready)

    async def settle_held(self) -> int:
        """Record the outcomes that workers hold; raises while the database is down."""
        outcomes = await self.held.held()
        if not outcomes:
            return 0
        try:
            changes = await self.lifecycle.record_outcomes(outcomes, utcnow())
        except Exception as exc:
            if is_unavailable(exc):
                raise
            changes = await self._one_by_one(outcomes)
        await self.held.forget(o.message_id for o in outcomes)
        log.info("held_outcomes_recorded", outcomes=len(outcomes))
        events = [c.event for c in changes if c is not None]
        if events:
            try:
                await self.broker.publish(events)
            except Exception:
                log.warning("publish_failed", events=len(events), exc_info=True)
        return len(outcomes)

    async def _one_by_one(self, outcomes: list[Outcome]) -> list[Change | None]:
        """With the database up, an outcome that still cannot be written never will be (its
        data is at fault): its message is dead-lettered with what the outcome said, so that
        it neither stays SENDING for good nor holds up the others or later sweeps."""
        changes: list[Change | None] = []
        for outcome in outcomes:
            try:
                changes += await self.lifecycle.record_outcomes([outcome], utcnow())
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                log.exception("held_outcome_unrecordable", outcome=repr(outcome))
                error = DeliveryError("OUTCOME_UNRECORDABLE", repr(outcome)[:500], permanent=True)
                try:
                    changes.append(
                        await self.lifecycle.record_failure(outcome.message_id, error, utcnow())
                    )
                except Exception:
                    log.exception("held_outcome_dead_letter_failed", outcome=repr(outcome))
        return changes
