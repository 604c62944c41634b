"""Suppressions: the entries, their listing, and the lookups the accept and the claim make.

The accept and the claim never ask one message at a time: the accept's statement (or its
transaction) looks up every recipient of the batch at once, and the claim's statement leaves
suppressed recipients out and cancels them in the same statement (persistence/delivery_sql.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import ColumnElement, Row, Table, delete, exists, insert, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.ids import new_id
from gateway.domain.records import Page
from gateway.domain.results import Item, Suppressed
from gateway.domain.suppressions import (
    EVERY,
    NewSuppression,
    Suppression,
    SuppressionReason,
    scope_of,
    stored_scope,
)
from gateway.services.ports import PageRequest
from persistence.base import Repository
from persistence.models import SuppressionRemovalRow, SuppressionRow
from persistence.queries import keyset_page

SUPPRESSIONS = cast(Table, SuppressionRow.__table__)
REMOVALS = cast(Table, SuppressionRemovalRow.__table__)


def suppression_from_row(row: Row[Any]) -> Suppression:
    s = row._mapping
    channel, sender = scope_of(s["channel"], s["sender"])
    return Suppression(
        id=s["id"],
        account_id=s["account_id"],
        address=s["address"],
        channel=channel,
        sender=sender,
        reason=SuppressionReason(s["reason"]),
        detail=s["detail"],
        created_at=s["created_at"],
    )


def covering(
    account_id: ColumnElement[Any],
    recipient: ColumnElement[Any],
    channel: ColumnElement[Any],
    sender: ColumnElement[Any],
) -> ColumnElement[bool]:
    """The suppressions (of the table) that cover a message with these columns."""
    s = SUPPRESSIONS.c
    return (
        (s.account_id == account_id)
        & (s.address == recipient)
        & or_(s.channel == channel, s.channel == EVERY)
        & or_(s.sender == sender, s.sender == EVERY)
    )


def suppressed(
    account_id: ColumnElement[Any],
    recipient: ColumnElement[Any],
    channel: ColumnElement[Any],
    sender: ColumnElement[Any],
) -> ColumnElement[bool]:
    """Whether some suppression covers a message with these columns (correlated EXISTS)."""
    return exists().where(covering(account_id, recipient, channel, sender))


def holds_back(messages: Any) -> ColumnElement[bool]:
    """Whether a suppression keeps a message (``messages``: the columns of its table) from
    being sent: one covers it, and it is not an auto-reply (which is exempt, see
    ``gateway/domain/opt_outs.py``)."""
    m = messages
    exempt: ColumnElement[bool] = m.suppression_exempt.is_(True)
    return suppressed(m.account_id, m.recipient, m.channel, m.sender) & ~exempt


def first_reason(
    account_id: ColumnElement[Any],
    recipient: ColumnElement[Any],
    channel: ColumnElement[Any],
    sender: ColumnElement[Any],
) -> Any:
    """The reason of the oldest suppression covering such a message (a scalar subquery)."""
    s = SUPPRESSIONS.c
    return (
        select(s.reason)
        .where(covering(account_id, recipient, channel, sender))
        .order_by(s.created_at)
        .limit(1)
        .scalar_subquery()
    )


async def suppressed_items(conn: AsyncConnection, items: Sequence[Item]) -> dict[int, Suppressed]:
    """The items (by index) whose recipient is suppressed, with the oldest suppression's reason
    and time: one query for the whole batch. An auto-reply is exempt (it may confirm the
    very opt-out that suppressed its recipient)."""
    pairs = sorted(
        {(a, d.recipient) for a, d in items if not d.suppression_exempt},
        key=lambda p: (p[0].bytes, p[1]),
    )
    if not pairs:
        return {}
    s = SUPPRESSIONS.c
    rows = await conn.execute(
        select(s.account_id, s.address, s.channel, s.sender, s.reason, s.created_at)
        .where(tuple_(s.account_id, s.address).in_(pairs))
        .order_by(s.created_at)
    )
    found = rows.all()
    if not found:
        return {}
    refused: dict[int, Suppressed] = {}
    for index, (account_id, draft) in enumerate(items):
        if draft.suppression_exempt:
            continue
        for row in found:
            if (
                row.account_id == account_id
                and row.address == draft.recipient
                and row.channel in (draft.channel.value, EVERY)
                and row.sender in (draft.sender, EVERY)
            ):
                refused[index] = Suppressed(SuppressionReason(row.reason), row.created_at)
                break
    return refused


def suppression_row(new: NewSuppression, now: datetime) -> dict[str, Any]:
    """The row that records ``new``."""
    channel, sender = stored_scope(new.channel, new.sender)
    return {
        "id": new_id(),
        "account_id": new.account_id,
        "address": new.address,
        "channel": channel,
        "sender": sender,
        "reason": new.reason.value,
        "detail": new.detail,
        "created_at": now,
    }


def adding(upsert: Any) -> Any:
    """``upsert`` (the dialect's INSERT into SUPPRESSIONS) made to leave an entry of the same
    scope as it is: a suppression is recorded once, by the first reason that came."""
    s = SUPPRESSIONS.c
    return upsert.on_conflict_do_nothing(
        index_elements=[s.account_id, s.address, s.channel, s.sender]
    )


async def insert_new(
    conn: AsyncConnection, upsert: Any, news: Sequence[NewSuppression], now: datetime
) -> None:
    """Record ``news`` in the transaction of ``conn`` (``upsert``: as for :func:`adding`)."""
    if news:
        await conn.execute(adding(upsert), [suppression_row(new, now) for new in news])


class SuppressionRepository(Repository):
    async def add(self, new: NewSuppression, now: datetime) -> tuple[Suppression, bool]:
        """Record ``new``; (the entry, True), or (the entry already there, False): an existing
        entry of the same scope keeps its reason and time."""
        row = suppression_row(new, now)
        channel, sender = row["channel"], row["sender"]
        s = SUPPRESSIONS.c
        statement = adding(self.upsert(SUPPRESSIONS)).values(row).returning(SUPPRESSIONS)
        async with self.transaction() as conn:
            created = (await conn.execute(statement)).first()
            if created is not None:
                return suppression_from_row(created), True
            existing = (
                await conn.execute(
                    select(SUPPRESSIONS).where(
                        s.account_id == new.account_id,
                        s.address == new.address,
                        s.channel == channel,
                        s.sender == sender,
                    )
                )
            ).one()
        return suppression_from_row(existing), False

    async def get(self, account_id: UUID, suppression_id: UUID) -> Suppression | None:
        s = SUPPRESSIONS.c
        async with self.transaction() as conn:
            row = (
                await conn.execute(
                    select(SUPPRESSIONS).where(s.account_id == account_id, s.id == suppression_id)
                )
            ).first()
        return suppression_from_row(row) if row else None

    async def remove(
        self, suppression: Suppression, removal_reason: str | None, now: datetime
    ) -> bool:
        """Delete the entry and record its removal in the same transaction; False when it was
        already gone."""
        s = SUPPRESSIONS.c
        async with self.transaction() as conn:
            deleted = await conn.execute(
                delete(SUPPRESSIONS)
                .where(s.account_id == suppression.account_id, s.id == suppression.id)
                .returning(s.channel, s.sender)
            )
            scope = deleted.first()
            if scope is None:
                return False
            await conn.execute(
                insert(REMOVALS).values(
                    account_id=suppression.account_id,
                    suppression_id=suppression.id,
                    address=suppression.address,
                    channel=scope.channel,
                    sender=scope.sender,
                    reason=suppression.reason.value,
                    suppressed_at=suppression.created_at,
                    removal_reason=removal_reason,
                    removed_at=now,
                )
            )
        return True

    async def page(
        self, account_id: UUID, request: PageRequest, *, address: str | None
    ) -> Page[Suppression]:
        s = SUPPRESSIONS.c
        query = select(SUPPRESSIONS).where(s.account_id == account_id)
        if address is not None:
            query = query.where(s.address == address)
        key = (s.created_at, s.id)
        return await keyset_page(self.engine, query, key, suppression_from_row, request)
