"""Use case: accept messages for delivery (``sendMessage`` / ``sendMessages``).

Validation happens before any I/O; everything accepted is written in ONE unit of work; only
after its commit are the events published and the messages enqueued. If the process dies in
between (or the enqueue fails), the sweeper finds the due QUEUED messages in the database and
enqueues them: nothing accepted is lost, and the conditional claim makes a double enqueue
harmless.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from gateway.domain.messages import (
    FieldProblem,
    Limits,
    NormalizedMessage,
    SendRequest,
    validate_send,
)
from gateway.domain.pacing import Queued
from gateway.domain.quiet_hours import QuietHours, quiet_deferral
from gateway.domain.results import Accepted, AcceptOutcome, AcceptResult, Conflict, Item, Suppressed
from gateway.domain.statuses import MessageStatus
from gateway.observability.metrics import MESSAGES_ACCEPTED
from gateway.services.clock import utcnow
from gateway.services.coalescer import Coalescer
from gateway.services.ports import AcceptStore, Broker, LifecycleStore, UnitOfWork, UnitsOfWork
from gateway.services.quiet_hours import QuietHoursService
from gateway.services.unit_of_work import Units

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Invalid:
    problems: list[FieldProblem]


SendOutcome = Accepted | Conflict | Suppressed | Invalid


class SendService:
    def __init__(
        self,
        accept: AcceptStore,
        lifecycle: LifecycleStore,
        broker: Broker,
        *,
        default_region: str,
        retention: timedelta,
        limits: Limits | None = None,
        owned_addresses: Callable[[UUID], Awaitable[set[str]]] | None = None,
        units: UnitsOfWork | None = None,
        quiet_hours: QuietHoursService | None = None,
    ) -> None:
        # Set when senders must own their `from` address (REQUIRE_SENDER_OWNERSHIP).
        self._owned = owned_addresses
        self._quiet = quiet_hours
        # Concurrent calls share one accept transaction (each call stays atomic).
        self._batches: Coalescer[Item, AcceptOutcome] = Coalescer(self._accept_batch)
        self._accept = accept
        self._lifecycle = lifecycle
        self._units = units or Units(broker)
        self._region = default_region
        self._retention = retention
        self._limits = limits or Limits()

    async def send(self, account_id: UUID, requests: Sequence[SendRequest]) -> list[SendOutcome]:
        outcomes, drafts = await self._drafts(account_id, requests, utcnow(), check_owner=True)
        if drafts:
            stored = iter(await self._batches.submit([(account_id, d) for d in drafts]))
            outcomes = [o if o is not None else next(stored) for o in outcomes]
        return [o for o in outcomes if o is not None]

    async def accept_in(
        self, work: UnitOfWork, account_id: UUID, request: SendRequest
    ) -> SendOutcome:
        """Accept one message inside the caller's unit of work, for a message a use case makes
        of its own (the answer to a recipient's keyword): it is stored in the unit's
        transaction and handed to the broker after its commit (the sweeper enqueues it should
        that fail), or none of it is if the unit rolls back. Not batched with concurrent
        sends, since its transaction is the caller's; its sender is not checked for ownership
        (it is the address the use case found the account by) and the conversation's activity
        is the caller's to record."""
        now = utcnow()
        [outcome], drafts = await self._drafts(account_id, [request], now, check_owner=False)
        if outcome is not None:
            return outcome
        result = await self._accept.accept(
            [(account_id, drafts[0])], now=now, retention=self._retention
        )
        _hand_over(work, result)
        # Counted before the caller's commit: a unit rolled back after this overcounts one.
        _count(result)
        [stored] = result.outcomes
        return stored

    async def _drafts(
        self,
        account_id: UUID,
        requests: Sequence[SendRequest],
        now: datetime,
        *,
        check_owner: bool,
    ) -> tuple[list[SendOutcome | None], list[NormalizedMessage]]:
        """Each request validated (its outcome when refused, None when it goes on to the
        accept) and the drafts to accept, held for quiet hours where they apply."""
        outcomes: list[SendOutcome | None] = []
        drafts = []
        owned = await self._owned(account_id) if check_owner and self._owned is not None else None
        for request in requests:
            checked = validate_send(
                request, now=now, default_region=self._region, limits=self._limits
            )
            if isinstance(checked, list):
                outcomes.append(Invalid(checked))
            elif owned is not None and checked.sender not in owned:
                problem = FieldProblem(
                    "from", f"{checked.sender} is not an address of this account"
                )
                outcomes.append(Invalid([problem]))
            else:
                outcomes.append(None)
                drafts.append(checked)
        if self._quiet is not None and not all(d.bypass_quiet_hours for d in drafts):
            # Once per call, whatever the number of inputs (and cached across calls).
            hours = await self._quiet.of(account_id)
            if hours.enabled:
                drafts = [_held(draft, hours, now) for draft in drafts]
        return outcomes, drafts

    async def _accept_batch(self, items: list[Item]) -> list[AcceptOutcome]:
        now = utcnow()
        async with self._units() as work:
            result = await self._accept.accept(items, now=now, retention=self._retention)
            _hand_over(work, result)
        _count(result)
        if result.existing_conversations:
            # Its own short transaction after the accept's, so that no conversation row is
            # locked for the length of an accept.
            try:
                await self._lifecycle.touch_conversations(
                    dict.fromkeys(result.existing_conversations, now)
                )
            except Exception:
                log.exception("conversation_activity_update_failed")
        return result.outcomes


def _hand_over(work: UnitOfWork, result: AcceptResult) -> None:
    """What an accept gives the broker once ``work`` commits: its events, its due messages."""
    work.publish(result.events)
    work.enqueue(Queued.of(m) for m in result.created if m.status == MessageStatus.QUEUED)


def _count(result: AcceptResult) -> None:
    for channel, count in Counter(m.channel.value for m in result.created).items():
        MESSAGES_ACCEPTED.labels(channel).inc(count)


def _held(draft: NormalizedMessage, hours: QuietHours, now: datetime) -> NormalizedMessage:
    """The draft, held until the end of its recipient's quiet hours if it is due inside them."""
    if draft.bypass_quiet_hours:
        return draft
    deferral = quiet_deferral(hours, draft.channel, draft.recipient, draft.send_at or now)
    return draft if deferral is None else replace(draft, deferral=deferral)
