"""Use case: an account's quiet hours, set through the API and read on every send.

Both the accept path and the delivery worker ask for the setting of every message's account,
and it changes rarely, so it is read through a short cache per process (``ttl`` seconds, see
``gateway.services.account_cache``): a change reaches the other processes within that time,
and the process that made it at once. While the database cannot be read, the last known
setting stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from gateway.domain.channels import Channel
from gateway.domain.messages import FieldProblem
from gateway.domain.quiet_hours import QuietDeferral, QuietHours, parse_quiet_hours, quiet_deferral
from gateway.services.account_cache import AccountCache
from gateway.services.clock import utcnow
from gateway.services.ports import QuietHoursStore


class QuietHoursService:
    def __init__(
        self,
        store: QuietHoursStore,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache = AccountCache(
            store.quiet_hours, ttl=ttl, unreadable="quiet_hours_unreadable", clock=clock
        )

    async def of(self, account_id: UUID) -> QuietHours:
        return await self._cache.get(account_id)

    async def set(
        self, account_id: UUID, start: str | None, end: str | None, default_zone: str
    ) -> QuietHours | list[FieldProblem]:
        checked = parse_quiet_hours(start, end, default_zone)
        if isinstance(checked, list):
            return checked
        await self._store.set_quiet_hours(account_id, checked, utcnow())
        self._cache.put(account_id, checked)
        return checked

    async def deferral(
        self, account_id: UUID, channel: Channel, recipient: str, at: datetime
    ) -> QuietDeferral | None:
        """Until when a message due at ``at`` waits for its recipient's quiet hours to end;
        None when it may go at ``at``."""
        return quiet_deferral(await self.of(account_id), channel, recipient, at)
