"""Use case: accept messages for delivery (``sendMessage`` / ``sendMessages``).

Validation happens before any I/O; everything accepted is written in ONE transaction; only after
commit are the messages enqueued and their events published. If the process dies in between,
the sweeper finds the due QUEUED messages in the database and enqueues them: nothing accepted
is lost, and the conditional claim makes a double enqueue harmless.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from gateway.domain.messages import FieldProblem, Limits, SendRequest, validate_send
from gateway.domain.records import Message, MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.observability.metrics import MESSAGES_ACCEPTED
from gateway.services.clock import utcnow
from gateway.services.ports import Broker
from persistence.accept import Accepted, AcceptRepository, Conflict
from persistence.lifecycle import LifecycleRepository

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Invalid:
    problems: list[FieldProblem]


SendOutcome = Accepted | Conflict | Invalid


class SendService:
    def __init__(
        self,
        accept: AcceptRepository,
        lifecycle: LifecycleRepository,
        broker: Broker,
        *,
        default_region: str,
        retention: timedelta,
        limits: Limits | None = None,
        owned_addresses: Callable[[UUID], Awaitable[set[str]]] | None = None,
    ) -> None:
        # Set when senders must own their `from` address (REQUIRE_SENDER_OWNERSHIP).
        self._owned = owned_addresses
        self._accept = accept
        self._lifecycle = lifecycle
        self._broker = broker
        self._region = default_region
        self._retention = retention
        self._limits = limits or Limits()

    async def send(self, account_id: UUID, requests: Sequence[SendRequest]) -> list[SendOutcome]:
        now = utcnow()
        outcomes: list[SendOutcome | None] = []
        drafts = []
        owned = await self._owned(account_id) if self._owned is not None else None
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
        if drafts:
            result = await self._accept.accept(
                account_id, drafts, now=now, retention=self._retention
            )
            stored = iter(result.outcomes)
            outcomes = [o if o is not None else next(stored) for o in outcomes]
            await self._after_commit(result.created, result.events, now)
        return [o for o in outcomes if o is not None]

    async def _after_commit(
        self, created: list[Message], events: list[MessageEvent], now: datetime
    ) -> None:
        if not created:
            return
        for channel, count in Counter(m.channel.value for m in created).items():
            MESSAGES_ACCEPTED.labels(channel).inc(count)
        try:
            await self._broker.publish(events)
            await self._broker.enqueue([m.id for m in created if m.status == MessageStatus.QUEUED])
        except Exception:
            # Accepted is accepted: the sweeper enqueues what the broker did not take.
            log.exception("enqueue_after_commit_failed", messages=len(created))
        try:
            await self._lifecycle.touch_conversations({m.conversation_id: now for m in created})
        except Exception:
            log.exception("conversation_activity_update_failed")
