"""The rates senders were given (``sender_rates``); the others get their kind's default."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select

from persistence.base import Repository
from persistence.models import SenderRateRow

SENDER_RATES = cast(Table, SenderRateRow.__table__)


class SenderRateRepository(Repository):
    async def rates(self, senders: Collection[str]) -> dict[str, float]:
        """The rates of those of ``senders`` (pacing keys) that have one of their own."""
        if not senders:
            return {}
        r = SENDER_RATES.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(r.sender, r.segments_per_second).where(r.sender.in_(list(senders)))
            )
        return {row.sender: float(row.segments_per_second) for row in rows}

    async def set_rate(self, sender: str, rate: float | None, now: datetime) -> None:
        """Give ``sender`` (a pacing key) its own rate; None: back to its kind's default."""
        r = SENDER_RATES.c
        async with self.transaction() as conn:
            if rate is None:
                await conn.execute(delete(SENDER_RATES).where(r.sender == sender))
                return
            values = {"segments_per_second": rate, "updated_at": now}
            insert: Any = self.upsert(SENDER_RATES)
            await conn.execute(
                insert.values(sender=sender, **values).on_conflict_do_update(
                    index_elements=[r.sender], set_=values
                )
            )
