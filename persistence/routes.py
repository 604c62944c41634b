"""Each account's routes: one row per (channel, country) it set; '' stands for every country."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, delete, select

from gateway.domain.channels import Channel
from gateway.domain.routing import Route
from persistence.base import Repository
from persistence.models import RouteRow

ROUTES = cast(Table, RouteRow.__table__)
EVERYWHERE = ""


class RouteRepository(Repository):
    async def routes(self, account_id: UUID) -> list[Route]:
        r = ROUTES.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ROUTES).where(r.account_id == account_id).order_by(r.channel, r.country)
            )
            return [
                Route(Channel(row.channel), row.country or None, tuple(row.providers))
                for row in rows
            ]

    async def set_route(self, account_id: UUID, route: Route, now: datetime) -> None:
        values = {"providers": list(route.providers), "updated_at": now}
        insert: Any = self.upsert(ROUTES)
        async with self.transaction() as conn:
            await conn.execute(
                insert.values(
                    account_id=account_id,
                    channel=route.channel.value,
                    country=route.country or EVERYWHERE,
                    **values,
                ).on_conflict_do_update(
                    index_elements=[ROUTES.c.account_id, ROUTES.c.channel, ROUTES.c.country],
                    set_=values,
                )
            )

    async def remove_route(self, account_id: UUID, channel: Channel, country: str | None) -> bool:
        r = ROUTES.c
        async with self.transaction() as conn:
            result = await conn.execute(
                delete(ROUTES).where(
                    r.account_id == account_id,
                    r.channel == channel.value,
                    r.country == (country or EVERYWHERE),
                )
            )
        return bool(getattr(result, "rowcount", 0))
