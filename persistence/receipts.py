"""The payloads kept in webhook_receipts, for ``replay-receipts``.

The table also holds the dedupe keys of applied reports (no payload): only rows with a payload
and a reason to replay them are read here. A replayed row is marked, never deleted: it stays
the evidence of what arrived and why it was kept.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Final, cast

from sqlalchemy import Table, select, update

from gateway.domain.reports import KeptPayload
from persistence.base import Repository
from persistence.models import WebhookReceiptRow

RECEIPTS = cast(Table, WebhookReceiptRow.__table__)
#: What a kept payload is read from: the column named as each of its fields.
_KEPT_COLUMNS: Final = [RECEIPTS.c[f.name] for f in fields(KeptPayload)]

#: Why a payload is kept that a replay can apply: we failed to apply it, or it was an inbound
#: message to an address nobody owned then.
REPLAYABLE: Final = ("failed", "unowned")


class ReceiptRepository(Repository):
    async def kept(self, *, since: datetime | None, receipt_id: int | None) -> list[KeptPayload]:
        r = RECEIPTS.c
        query = select(*_KEPT_COLUMNS).where(r.payload.is_not(None), r.outcome.in_(REPLAYABLE))
        if receipt_id is not None:
            query = query.where(r.id == receipt_id)
        else:
            query = query.where(r.replayed_at.is_(None))
            if since is not None:
                query = query.where(r.received_at >= since)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(r.id))
            return [KeptPayload(**row._mapping) for row in rows]

    async def mark_replayed(self, receipt_id: int, now: datetime) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                update(RECEIPTS).where(RECEIPTS.c.id == receipt_id).values(replayed_at=now)
            )
