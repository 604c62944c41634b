"""A per-process cache of one setting per account, read through a short time-to-live.

Settings an account changes rarely but every send reads (its quiet hours, its routes) are
read once per ``ttl`` seconds per process: a change reaches the other processes within that
time, and the process that made it at once (:meth:`AccountCache.put`). Callers that find the
setting missing or expired at the same moment share one read. While the store cannot be read,
the last known setting stands (logged as ``unreadable``, once per ``ttl``); with none known,
the read's error is raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Generic, TypeVar
from uuid import UUID

import structlog

log = structlog.get_logger(__name__)

#: Accounts whose setting one process keeps; past it the cache starts afresh.
CACHED_ACCOUNTS_MAX = 10_000


T = TypeVar("T")


@dataclass(eq=False, slots=True)
class AccountCache(Generic[T]):
    load: Callable[[UUID], Awaitable[T]]
    _: KW_ONLY
    ttl: float
    unreadable: str
    clock: Callable[[], float] = time.monotonic
    _cache: dict[UUID, tuple[float, T]] = field(default_factory=dict, init=False, repr=False)
    _loading: dict[UUID, asyncio.Future[T]] = field(default_factory=dict, init=False, repr=False)
    _writes: int = field(default=0, init=False)

    async def get(self, account_id: UUID) -> T:
        cached = self._cache.get(account_id)
        if cached is not None and cached[0] > self.clock():
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
            if latest[0] <= self.clock():
                # Not asked again before another ttl: a store that is down answers slowly.
                log.warning(self.unreadable, account_id=str(account_id), exc_info=True)
                self._keep(account_id, latest[1], self.clock())
            return latest[1]

    def put(self, account_id: UUID, value: T) -> None:
        """The setting this process has just written: it holds here at once."""
        self._writes += 1
        self._keep(account_id, value, self.clock())

    async def _load(self, account_id: UUID) -> T:
        now, writes = self.clock(), self._writes
        value = await self.load(account_id)
        if writes == self._writes:  # else a change made meanwhile is newer than this read
            self._keep(account_id, value, now)
        return value

    def _loaded(self, account_id: UUID, done: asyncio.Future[T]) -> None:
        self._loading.pop(account_id, None)
        if not done.cancelled():
            done.exception()  # retrieved here too, should every caller have given up

    def _keep(self, account_id: UUID, value: T, now: float) -> None:
        if len(self._cache) >= CACHED_ACCOUNTS_MAX and account_id not in self._cache:
            self._cache.clear()
        self._cache[account_id] = (now + self.ttl, value)
