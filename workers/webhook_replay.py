"""Apply the webhook payloads kept in the spool while the database was down.

A worker chore (one worker at a time): once the database answers, the oldest payloads are
parsed by their adapters and applied through ``apply_received``, the routes' own path, and
removed from the spool. Order does not matter and neither do repeats: reports apply at most
once and only forward, inbound messages once per provider id. A payload that still fails while
the database answers (a bug, not an outage) is retried on later runs and, after
``max_attempts``, kept raw in webhook_receipts as any payload we fail to apply, and removed
from the spool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Final

import structlog

from gateway.observability.metrics import counter
from gateway.services.webhooks import WebhookService
from providers.webhooks import PayloadError, ReceivedWebhook, WebhookAdapter
from providers.webhooks.apply import apply_received, keep_payload
from workers.webhook_spool import RedisWebhookSpool

log = structlog.get_logger(__name__)

REPLAYS: Final = counter(
    "webhook_replays",
    "Spooled webhook payloads replayed, by source and outcome (applied, failed, kept_raw).",
    ["source", "outcome"],
)

BATCH: Final = 200
#: A run stops taking new batches after this long, well within its lease.
RUN_SECONDS: Final = 20.0
MAX_ATTEMPTS: Final = 10


@dataclass(eq=False, slots=True)
class WebhookReplay:
    spool: RedisWebhookSpool
    webhooks: WebhookService
    adapters: Mapping[str, WebhookAdapter] = field(repr=False)
    database_reachable: Callable[[], Awaitable[bool]]
    _: KW_ONLY
    batch: int = BATCH
    max_attempts: int = MAX_ATTEMPTS

    async def run_once(self) -> int:
        """Replay batches until the spool is empty, a payload fails, or the run is long
        enough; returns how many payloads were applied."""
        applied = 0
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            entries = await self.spool.oldest(self.batch)
            # Nothing to do, or nothing that could work yet: no attempt is counted while the
            # database is still down.
            if not entries or not await self.database_reachable():
                break
            done, succeeded = await self._replay(entries)
            await self.spool.remove(done)
            applied += succeeded
            if succeeded < len(entries):
                break
        if applied:
            log.info("webhooks_replayed", applied=applied, left=await self.spool.length())
        return applied

    async def _replay(
        self, entries: list[tuple[str, ReceivedWebhook | None]]
    ) -> tuple[list[str], int]:
        """(entries to remove, how many were applied), applying them together: their status
        reports share transactions as the routes' concurrent ones do."""
        results = await asyncio.gather(
            *(self._apply(received) for _, received in entries), return_exceptions=True
        )
        done: list[str] = []
        succeeded = 0
        for (entry_id, received), result in zip(entries, results, strict=True):
            if received is None:
                log.error("webhook_spool_entry_unreadable", entry=entry_id)
                done.append(entry_id)
                continue
            adapter = self.adapters.get(received.route)
            source = adapter.source if adapter is not None else "unknown"
            if not isinstance(result, BaseException):
                REPLAYS.labels(source, "applied").inc()
                done.append(entry_id)
                succeeded += 1
                continue
            REPLAYS.labels(source, "failed").inc()
            log.warning(
                "webhook_replay_failed",
                source=source,
                entry=entry_id,
                error=f"{type(result).__name__}: {result}"[:300],
            )
            if await self.spool.failed(entry_id) >= self.max_attempts:
                await keep_payload(
                    self.webhooks,
                    source,
                    "failed",
                    received.body,
                    received.content_type,
                    repr(result),
                    received,
                )
                REPLAYS.labels(source, "kept_raw").inc()
                done.append(entry_id)
        return done, succeeded

    async def _apply(self, received: ReceivedWebhook | None) -> list[str]:
        if received is None:
            return []
        adapter = self.adapters.get(received.route)
        if adapter is None:
            raise PayloadError(f"no such webhook route: {received.route}")
        return await apply_received(self.webhooks, adapter, received)
