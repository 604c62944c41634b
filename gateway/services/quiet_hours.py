"""Use case: an account's quiet hours, set through the API and read on every send.

Both the accept path and the delivery worker ask for the setting of every message's account,
and it changes rarely, so it is read through a short cache per process (``ttl`` seconds): a
change reaches the other processes within that time, and the process that made it at once.
While the database cannot be read, the last known setting stands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import structlog

from gateway.domain.channels import Channel
from gateway.domain.messages import FieldProblem
from gateway.domain.quiet_hours import QuietDeferral, QuietHours, parse_quiet_hours, quiet_deferral
from gateway.services.clock import utcnow
from gateway.services.ports import QuietHoursStore

log = structlog.get_logger(__name__)

#: Accounts whose setting one process keeps; past it the cache starts afresh.
CACHED_ACCOUNTS_MAX = 10_000


class QuietHoursService:
    def __init__(
        self,
        store: QuietHoursStore,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[UUID, tuple[float, QuietHours]] = {}
        self._loading: dict[UUID, asyncio.Future[QuietHours]] = {}
        self._writes = 0

    async def of(self, account_id: UUID) -> QuietHours:
        cached = self._cache.get(account_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        loading = self._loading.get(account_id)
        if loading is None:
            # One read for every caller that finds the setting missing or expired meanwhile
            # (a worker's deliveries in flight for one account all ask at the same moment).
            loading = asyncio.ensure_future(self._load(account_id))
            self._loading[account_id] = loading
            loading.add_done_callback(lambda done: self._loaded(account_id, done))
        try:
            # Shielded: a caller that gives up does not end the read the others wait for.
            return await asyncio.shield(loading)
        except Exception:
            if cached is None:
                raise
            latest = self._cache.get(account_id, cached)
            if latest[0] <= self._clock():
                # Not asked again before another ttl: a store that is down answers slowly.
                log.warning("quiet_hours_unreadable", account_id=str(account_id), exc_info=True)
                self._keep(account_id, latest[1], self._clock())
            return latest[1]

    async def set(
        self, account_id: UUID, start: str | None, end: str | None, default_zone: str
    ) -> QuietHours | list[FieldProblem]:
        checked = parse_quiet_hours(start, end, default_zone)
        if isinstance(checked, list):
            return checked
        await self._store.set_quiet_hours(account_id, checked, utcnow())
        self._writes += 1
        self._keep(account_id, checked, self._clock())
        return checked

    async def deferral(
        self, account_id: UUID, channel: Channel, recipient: str, at: datetime
    ) -> QuietDeferral | None:
        """Until when a message due at ``at`` waits for its recipient's quiet hours to end;
        None when it may go at ``at``."""
        return quiet_deferral(await self.of(account_id), channel, recipient, at)

    async def _load(self, account_id: UUID) -> QuietHours:
        now, writes = self._clock(), self._writes
        hours = await self._store.quiet_hours(account_id)
        if writes == self._writes:  # else a change made meanwhile is newer than this read
            self._keep(account_id, hours, now)
        return hours

    def _loaded(self, account_id: UUID, done: asyncio.Future[QuietHours]) -> None:
        self._loading.pop(account_id, None)
        if not done.cancelled():
            done.exception()  # retrieved here too, should every caller have given up

    def _keep(self, account_id: UUID, hours: QuietHours, now: float) -> None:
        if len(self._cache) >= CACHED_ACCOUNTS_MAX and account_id not in self._cache:
            self._cache.clear()
        self._cache[account_id] = (now + self._ttl, hours)
