"""The payloads kept in webhook_receipts, for ``replay-receipts``.

The table also holds the dedupe keys of applied reports (no payload): only rows with a payload
and a reason to replay them are read here. A replayed row is marked, never deleted: it stays
the evidence of what arrived and why it was kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Row, Table, select, update

from gateway.domain.reports import KeptPayload
from persistence.base import Repository
from persistence.models import WebhookReceiptRow

RECEIPTS = cast(Table, WebhookReceiptRow.__table__)

#: Why a payload is kept that a replay can apply: we failed to apply it, or it was an inbound
#: message to an address nobody owned then.
REPLAYABLE: Final = ("failed", "unowned")


def _kept(row: Row[Any]) -> KeptPayload:
    r = row._mapping
    return KeptPayload(
        id=r["id"],
        source=r["source"],
        route=r["route"],
        content_type=r["content_type"],
        query=r["query"],
        payload=r["payload"],
        outcome=r["outcome"],
        error=r["error"],
        received_at=r["received_at"],
        replayed_at=r["replayed_at"],
    )


class ReceiptRepository(Repository):
    async def kept(self, *, since: datetime | None, receipt_id: int | None) -> list[KeptPayload]:
        r = RECEIPTS.c
        query = select(RECEIPTS).where(r.payload.is_not(None), r.outcome.in_(REPLAYABLE))
        if receipt_id is not None:
            query = query.where(r.id == receipt_id)
        else:
            query = query.where(r.replayed_at.is_(None))
            if since is not None:
                query = query.where(r.received_at >= since)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(r.id))
            return [_kept(row) for row in rows]

    async def mark_replayed(self, receipt_id: int, now: datetime) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                update(RECEIPTS).where(RECEIPTS.c.id == receipt_id).values(replayed_at=now)
            )
