"""Use cases behind the webhooks: apply provider reports, receive inbound messages.

A report that its provider failed a message unsent because the sender went faster than the
provider's throughput takes the message back to QUEUED (``decide_report``): the sender is
paused in the shared pacer for ``slowdown`` seconds, and the message is enqueued once the
report has committed; the pause holds it until it is over. Without the pacer (it cannot be
reached) the message still goes again, only sooner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import structlog

from gateway.domain.inbox import InboxChange, InboxChangeKind
from gateway.domain.pacing import pacing_key
from gateway.domain.records import MessageEvent
from gateway.domain.reports import InboundMessage, StatusReport
from gateway.domain.results import ReportResult
from gateway.services.clock import utcnow
from gateway.services.coalescer import Coalescer
from gateway.services.opt_outs import OptOutService
from gateway.services.ports import Broker, RawPayload, SenderPacer, UnitsOfWork, WebhookStore
from gateway.services.unit_of_work import Outbox, Units

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    applied: list[MessageEvent]
    duplicates: int
    unmatched: int


class WebhookService:
    def __init__(
        self,
        repo: WebhookStore,
        broker: Broker,
        *,
        default_owner: Callable[[], UUID | None] = lambda: None,
        units: UnitsOfWork | None = None,
        opt_outs: OptOutService | None = None,
        pacer: SenderPacer | None = None,
        slowdown: float = 1.0,
    ) -> None:
        self._repo = repo
        self._pacer = pacer
        self._slowdown = slowdown
        self._broker = broker
        self._units = units or Units(broker)
        # Inbound keywords (STOP, START, HELP) acted on in the unit that stores the message.
        self._opt_outs = opt_outs
        # Embedded mode: every address belongs to the development account.
        self._default_owner = default_owner
        # Group commit: the reports of concurrent webhook requests share one transaction and
        # one publish; each request is still answered only once its own reports committed.
        # One batch in flight: callbacks are answered a few milliseconds later, but batches
        # are larger, and under load a callback costs less CPU (API and PostgreSQL).
        self._batches: Coalescer[tuple[str, StatusReport], ReportResult] = Coalescer(
            self._apply_batch, max_inflight=1
        )

    async def apply_reports(self, source: str, reports: list[StatusReport]) -> ReportOutcome:
        results = await self._batches.submit([(source, report) for report in reports])
        outcome = ReportOutcome(
            applied=[r.event for r in results if r.event is not None],
            duplicates=sum(r.outcome == "duplicate" for r in results),
            unmatched=sum(r.outcome == "unmatched" for r in results),
        )
        if outcome.unmatched:
            log.warning("webhook_reports_unmatched", source=source, count=outcome.unmatched)
        return outcome

    async def _apply_batch(self, items: list[tuple[str, StatusReport]]) -> list[ReportResult]:
        results = await self._repo.apply_reports(items, utcnow())
        outbox = Outbox()
        outbox.events.extend(r.event for r in results if r.event is not None)
        outbox.work.extend(r.requeued for r in results if r.requeued is not None)
        await self._slow_down({pacing_key(work.sender) for work in outbox.work})
        # After the commit: a failed hand-over must not apply the reports again.
        await outbox.hand_over(self._broker)
        return results

    async def _slow_down(self, senders: set[str]) -> None:
        if self._pacer is None:
            return
        for sender in sorted(senders):
            try:
                await self._pacer.slow_down(sender, self._slowdown)
            except Exception:
                # The message still goes again; only the sender's pace may be too fast.
                log.warning("sender_slowdown_failed", sender=sender, exc_info=True)

    async def receive(self, message: InboundMessage) -> str:
        """Store an inbound message; returns "stored", "duplicate" or "unowned"."""
        owner = await self._repo.owner_of(message.recipient) or self._default_owner()
        if owner is None:
            return "unowned"
        now = utcnow()
        async with self._units() as unit:
            change = await self._repo.receive(owner, message, now)
            if change is not None:
                unit.publish([change.event])
                # Inbound messages are unread: inbox watchers (every open tab) hear of it.
                inbound = change.message
                unit.publish_inbox(
                    [
                        InboxChange(
                            owner, inbound.conversation_id, InboxChangeKind.RECEIVED, inbound.id
                        )
                    ]
                )
                if self._opt_outs is not None:
                    # A keyword's change and answer commit with the message (or none of it).
                    await self._opt_outs.handle(change.message, now, unit)
        return "duplicate" if change is None else "stored"

    async def keep_raw(self, raw: RawPayload) -> int:
        return await self._repo.keep_raw(raw, utcnow())
