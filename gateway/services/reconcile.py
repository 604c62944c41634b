"""Use case: settle messages whose final status never came back, by asking their provider.

A callback can be lost: refused while the database was down and not retried for long enough
by the provider, or never sent. A message the provider took (SENT, or SENDING with the
provider's id) and that has not changed for ``after`` is looked up at its provider, and what
the provider says is applied as a status report through the callbacks' own path: forward
only, each report at most once, so a callback that still arrives is harmless.

A message still on its way is looked up again later, each time after as long again as it has
been waiting (10 minutes, 20, 40, ...), so a message that never gets a final status (a
carrier without delivery receipts) costs a handful of lookups, not one per interval. One the
provider does not know (Twilio 20404; SendGrid: no activity) keeps its status, is logged and
counted, and is looked up again on the same schedule: the provider took it, so it went out,
and nothing better can be said of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import KW_ONLY, InitVar, dataclass, field
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import structlog

from gateway.domain.reports import KIND_RECONCILED, StatusReport
from gateway.domain.results import Unsettled
from gateway.domain.statuses import TERMINAL
from gateway.observability.metrics import counter
from gateway.services.clock import utcnow
from gateway.services.ports import Provider, ProviderError, ProviderLookup, ReconcileStore
from gateway.services.webhooks import WebhookService

log = structlog.get_logger(__name__)

RECONCILIATIONS: Final = counter(
    "reconciliations",
    "Messages looked up at their provider by reconciliation, by provider and outcome "
    "(settled, pending, unknown, failed).",
    ["provider", "outcome"],
)

#: Lookups in flight at once: a batch is done in a few round trips without a burst of calls.
LOOKUP_CONCURRENCY: Final = 8


@dataclass(frozen=True, slots=True)
class _Looked:
    message: Unsettled
    lookup: ProviderLookup | None  # None: the provider could not answer


@dataclass(eq=False, slots=True)
class Reconciler:
    repo: ReconcileStore
    providers: Mapping[str, Provider] = field(repr=False)
    webhooks: WebhookService
    _: KW_ONLY
    after: InitVar[float]
    batch: int
    _after: timedelta = field(init=False, repr=False)

    def __post_init__(self, after: float) -> None:
        self._after = timedelta(seconds=after)

    async def run_once(self) -> int:
        """Look up one batch of due messages; returns how many were looked up."""
        now = utcnow()
        due = await self.repo.due(now, self._after, self.batch)
        if not due:
            return 0
        slots = asyncio.Semaphore(LOOKUP_CONCURRENCY)

        async def look(message: Unsettled) -> _Looked:
            async with slots:
                return _Looked(message, await self._look(message))

        looked = await asyncio.gather(*(look(message) for message in due))
        settled = await self._apply(looked)
        later = [
            (item.message.id, self._next_lookup(item.message, now))
            for item in looked
            if item.message.id not in settled
        ]
        await self.repo.look_again(later)
        for item in looked:
            RECONCILIATIONS.labels(item.message.provider, _outcome(item, settled)).inc()
        return len(looked)

    async def _look(self, message: Unsettled) -> ProviderLookup | None:
        provider = self.providers.get(message.provider)
        if provider is None:
            log.warning(
                "reconcile_provider_unavailable",
                message_id=str(message.id),
                provider=message.provider,
            )
            return None
        try:
            lookup = await provider.lookup(message.provider_message_id)
        except ProviderError as exc:
            # The adapter logged the failure; the message is looked up again later.
            log.info("reconcile_lookup_failed", message_id=str(message.id), code=exc.code)
            return None
        if not lookup.found:
            log.warning(
                "reconcile_message_unknown",
                message_id=str(message.id),
                provider=message.provider,
                provider_message_id=message.provider_message_id,
            )
        return lookup

    async def _apply(self, looked: list[_Looked]) -> set[UUID]:
        """Apply what the providers said; returns the messages it settled."""
        by_provider: dict[str, list[StatusReport]] = {}
        for item in looked:
            report = _report(item)
            if report is not None:
                by_provider.setdefault(report.provider, []).append(report)
        settled: set[UUID] = set()
        for provider, reports in by_provider.items():
            outcome = await self.webhooks.apply_reports(provider, reports)
            for event in outcome.applied:
                if event.status in TERMINAL:
                    settled.add(event.message_id)
                    log.info(
                        "message_reconciled",
                        message_id=str(event.message_id),
                        provider=provider,
                        status=event.status.value,
                        provider_status=(event.detail or {}).get("providerStatus"),
                    )
        return settled

    def _next_lookup(self, message: Unsettled, now: datetime) -> datetime:
        # As long again as it has been waiting: the lookups of a message that never settles
        # thin out geometrically.
        return now + max(self._after, now - message.updated_at)


def _report(item: _Looked) -> StatusReport | None:
    lookup = item.lookup
    if lookup is None or lookup.status is None or lookup.report_key is None:
        return None
    detail = {
        "provider": lookup.provider,
        "providerMessageId": lookup.provider_message_id,
        "providerStatus": lookup.provider_status,
    }
    if lookup.error is not None:
        detail["errorCode"] = lookup.error.code
    return StatusReport(
        provider=lookup.provider,
        provider_message_id=lookup.provider_message_id,
        message_id=item.message.id,
        status=lookup.status,
        kind=KIND_RECONCILED,
        dedupe_key=lookup.report_key,
        error=lookup.error,
        detail=detail,
    )


def _outcome(item: _Looked, settled: set[UUID]) -> str:
    if item.message.id in settled:
        return "settled"
    if item.lookup is None:
        return "failed"
    return "pending" if item.lookup.found else "unknown"
