"""Use case: an account's routes, set through the API and read for every delivery.

A route orders the vendors of one channel for the account, for every destination or for the
numbers of one country (``gateway.domain.routing``). Routes are checked against the vendors
configured for each channel (``carriers``: the ``*_PROVIDERS`` settings) when they are set;
a vendor dropped from the settings later is skipped when a route is followed. The worker reads
them through a short cache per process (``gateway.services.account_cache``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from uuid import UUID

from gateway.domain.channels import Channel
from gateway.domain.routing import Route, RouteError, check_route
from gateway.services.account_cache import AccountCache
from gateway.services.clock import utcnow
from gateway.services.ports import RouteStore


class RoutingService:
    def __init__(
        self,
        store: RouteStore,
        carriers: Mapping[str, frozenset[Channel]],
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._carriers = dict(carriers)
        self._cache = AccountCache(
            store.routes, ttl=ttl, unreadable="routes_unreadable", clock=clock
        )

    async def of(self, account_id: UUID) -> list[Route]:
        """The account's routes (cached for the ttl)."""
        return await self._cache.get(account_id)

    async def set(
        self,
        account_id: UUID,
        channel: Channel,
        country: str | None,
        providers: Sequence[str],
    ) -> Route | RouteError:
        """Store the route (replacing the one for the same channel and country), or say why
        it cannot be stored."""
        country = (country or "").strip().upper() or None
        names = tuple(p.strip() for p in providers)
        try:
            route = check_route(Route(channel, country, names), self._carriers)
        except RouteError as refused:
            return refused
        await self._store.set_route(account_id, route, utcnow())
        await self._reload(account_id)
        return route

    async def remove(self, account_id: UUID, channel: Channel, country: str | None) -> bool:
        """Drop the route; False when there was none."""
        country = (country or "").strip().upper() or None
        removed = await self._store.remove_route(account_id, channel, country)
        await self._reload(account_id)
        return removed

    async def _reload(self, account_id: UUID) -> None:
        # The change holds in this process at once (in the embedded mode: its worker too).
        self._cache.put(account_id, await self._store.routes(account_id))
