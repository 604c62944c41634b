"""Each account's quiet hours: one row per account that ever set them."""

from __future__ import annotations

from datetime import datetime, time
from typing import cast
from uuid import UUID

from sqlalchemy import Table, select

from gateway.domain.quiet_hours import OFF, QuietHours
from persistence.base import Repository
from persistence.models import QuietHoursRow

QUIET_HOURS = cast(Table, QuietHoursRow.__table__)


class QuietHoursRepository(Repository):
    async def quiet_hours(self, account_id: UUID) -> QuietHours:
        q = QUIET_HOURS.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(QUIET_HOURS).where(q.account_id == account_id))
            ).first()
        if row is None:
            return OFF
        return QuietHours(
            start=_clock(row.start_minute),
            end=_clock(row.end_minute),
            default_zone=row.default_time_zone,
        )

    async def set_quiet_hours(self, account_id: UUID, hours: QuietHours, now: datetime) -> None:
        values = {
            "start_minute": _minutes(hours.start),
            "end_minute": _minutes(hours.end),
            "default_time_zone": hours.default_zone,
            "updated_at": now,
        }
        await self.put_account_row(QUIET_HOURS, account_id, values)


def _minutes(value: time | None) -> int | None:
    return None if value is None else value.hour * 60 + value.minute


def _clock(minutes: int | None) -> time | None:
    return None if minutes is None else time(minutes // 60, minutes % 60)
