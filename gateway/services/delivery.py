"""Use case: deliver queued messages through their channel's providers.

The claim (QUEUED -> SENDING) is a conditional UPDATE, so of several workers handed the same id
only one calls a provider. The attempt itself (route, circuits, failover to the next vendor,
ambiguous attempts) is ``gateway.services.failover``'s. Failures never sleep here: the next
attempt time is written to the database and the sweeper hands the message back when it is due.

A provider's throughput error (it was sent faster than it takes from this sender) pauses the
sender in the shared limiter, for the provider's Retry-After or ``slowdown`` seconds, and gives
the message back untried: it is retried once the pause is over, and the attempt is not counted
toward dead-lettering, as nothing was wrong with the message. Another vendor of the route is
tried first, at once: the message is given back only when none took it.

Each message goes its own way (a slow provider call holds up nobody else), but the database
work of messages in flight at the same time is group-committed: concurrent claims become one
UPDATE in one unit of work, concurrent outcomes one unit of work, and their events one publish,
handed to the broker after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

import structlog

from gateway.domain.pacing import pacing_key
from gateway.domain.records import DeliveryError, Message
from gateway.domain.results import Change, Hold, Outcome, Release
from gateway.domain.routing import Route
from gateway.domain.statuses import MessageStatus
from gateway.services.clock import utcnow
from gateway.services.coalescer import Coalescer
from gateway.services.failover import Failover
from gateway.services.ports import (
    Broker,
    HeldOutcomes,
    LifecycleStore,
    ProviderRegistry,
    SenderPacer,
    TransientProviderError,
    UnitsOfWork,
)
from gateway.services.quiet_hours import QuietHoursService
from gateway.services.retry_policy import RetryPolicy
from gateway.services.routing import RoutingService
from gateway.services.unit_of_work import Units

log = structlog.get_logger(__name__)


class DeliveryService:
    def __init__(
        self,
        lifecycle: LifecycleStore,
        providers: ProviderRegistry,
        broker: Broker,
        policy: RetryPolicy,
        held: HeldOutcomes,
        *,
        worker: str,
        max_batch: int = 500,
        units: UnitsOfWork | None = None,
        quiet_hours: QuietHoursService | None = None,
        pacer: SenderPacer | None = None,
        slowdown: float = 1.0,
        ambiguous_grace: float = 0.0,
        routes: RoutingService | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._pacer = pacer
        self._slowdown = slowdown
        # Asked again at every claim: a scheduled or retried message, or one that waited in
        # the queue, may come due inside its recipient's quiet hours.
        self._quiet = quiet_hours
        self._held = held
        #: The name this process's claims are recorded under (its heartbeat's name).
        self.worker = worker
        self._failover = Failover(providers, policy, grace=ambiguous_grace, slowed=self._slowed)
        self._routes = routes
        # Claims and outcomes publish their events through these, after their commit.
        self._units = units or Units(broker)
        self._policy = policy
        self._claims: Coalescer[UUID, Change | None] = Coalescer(
            self._claim_batch, max_items=max_batch
        )
        self._outcomes: Coalescer[Outcome, Change | None] = Coalescer(
            self._record_batch, max_items=max_batch
        )

    async def deliver(self, message_id: UUID) -> None:
        """Claim, send and record one message. Returns once its outcome is committed (or it
        was not ours to send); raises when that cannot be known, e.g. the database is down."""
        [claimed] = await self._claims.submit([message_id])
        if claimed is None:
            return  # canceled, not yet due, or another worker has it
        outcome = await self.attempt(claimed.message)
        try:
            await self._outcomes.submit([outcome])
        except Exception:
            # The provider has answered: that answer must not be lost with this write.
            log.warning("outcome_held", message_id=str(message_id), exc_info=True)
            await self._held.keep([outcome])

    async def attempt(self, message: Message) -> Outcome:
        """One provider call for a claimed message, and what it means; nothing is written."""
        held = await self._quiet_hold(message)
        if held is not None:
            return held
        return await self._failover.attempt(message, await self._routes_of(message))

    async def _routes_of(self, message: Message) -> list[Route]:
        if self._routes is None or message.provider is not None:
            return []
        try:
            return await self._routes.of(message.account_id)
        except Exception:
            # Unknown routes: the channel's default order still reaches a vendor that works.
            log.warning("routes_unknown", message_id=str(message.id), exc_info=True)
            return []

    def crashed(self, message: Message, exc: BaseException) -> Outcome:
        """The outcome of an attempt that failed in our own code: retried like a transient
        failure, and marked ambiguous, as nobody can say how far it got."""
        error = DeliveryError("WORKER_ERROR", type(exc).__name__, permanent=False)
        return self._failover.retry_later(message, error, None, {"ambiguous": True})

    async def claim(self, message_ids: Sequence[UUID]) -> dict[UUID, Change]:
        """Claim many messages in one unit of work; those not returned were not ours to send
        (a message whose recipient was suppressed since its accept is canceled by the claim,
        and not returned either). Their events are published after the commit."""
        async with self._units() as work:
            changed = await self._lifecycle.claim_many(message_ids, utcnow(), worker=self.worker)
            work.publish(c.event for c in changed.values())
        return {i: c for i, c in changed.items() if c.message.status == MessageStatus.SENDING}

    async def record(self, outcomes: Sequence[Outcome]) -> list[Change | None]:
        """Record many outcomes in one unit of work, each change in input order (None: the
        message had moved on). Their events are published after the commit."""
        async with self._units() as work:
            changes = await self._lifecycle.record_outcomes(outcomes, utcnow())
            work.publish(c.event for c in changes if c is not None)
        return changes

    async def hold(self, outcomes: Sequence[Outcome]) -> None:
        """Keep outcomes that could not be recorded until the sweeper can record them."""
        await self._held.keep(outcomes)

    async def _claim_batch(self, message_ids: list[UUID]) -> list[Change | None]:
        claimed = await self.claim(message_ids)
        results: list[Change | None] = []
        for message_id in message_ids:
            # The same id twice in one batch (two stream entries): only one may send it.
            results.append(claimed.pop(message_id, None))
        return results

    async def _record_batch(self, outcomes: list[Outcome]) -> list[Change | None]:
        return await self.record(outcomes)

    async def _quiet_hold(self, message: Message) -> Outcome | None:
        """The message's way back to SCHEDULED when it is inside its recipient's quiet hours
        now; None when it may go."""
        if self._quiet is None or message.bypass_quiet_hours:
            return None
        now = utcnow()
        try:
            deferral = await self._quiet.deferral(
                message.account_id, message.channel, message.recipient, now
            )
        except Exception:
            # Unknown whether it may go now: give it back untried rather than risk it.
            log.warning("quiet_hours_unknown", message_id=str(message.id), exc_info=True)
            later = now + timedelta(seconds=self._policy.base_delay)
            return Release(message.id, later, "the account's quiet hours could not be read")
        if deferral is None:
            return None
        return Hold(message.id, deferral.until, deferral.detail())

    async def _slowed(
        self, message: Message, provider: str, exc: TransientProviderError
    ) -> Outcome:
        """The provider takes this sender's messages more slowly than they came: the sender
        pauses for every worker, and the message goes back untried until the pause is over."""
        wait = exc.retry_after if exc.retry_after is not None else self._slowdown
        wait = min(max(wait, 0.0), self._policy.max_delay)
        if self._pacer is not None:
            try:
                await self._pacer.slow_down(pacing_key(message.sender), wait)
            except Exception:
                # The message still waits; only the sender's other messages may not.
                log.warning("sender_slowdown_failed", sender=message.sender, exc_info=True)
        reason = f"{provider} asked to slow down ({exc.code}: {exc.description})"
        return Release(message.id, utcnow() + timedelta(seconds=wait), reason[:500])
