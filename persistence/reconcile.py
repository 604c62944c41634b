"""Which messages reconciliation looks up at their provider, and when it looks again.

A message is unsettled while the provider has it (SENT, or SENDING with the provider's id
recorded) and no final status came back. Both lookups below read the partial index
``ix_messages_reconcile_at_updated_at``, which holds unsettled messages only, with the
statuses written as literals so that the planner can prove the index's predicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import ColumnElement, and_, bindparam, literal_column, select, update

from gateway.domain.results import Unsettled
from gateway.domain.statuses import MessageStatus
from persistence.base import Repository
from persistence.rows import MESSAGES

_M = MESSAGES.c


def _unsettled() -> ColumnElement[bool]:
    # The index's own predicate, word for word.
    statuses: list[ColumnElement[str]] = [
        literal_column(f"'{s.value}'") for s in (MessageStatus.SENT, MessageStatus.SENDING)
    ]
    return and_(_M.status.in_(statuses), _M.provider_message_id.is_not(None))


class ReconcileRepository(Repository):
    async def due(self, now: datetime, after: timedelta, limit: int) -> list[Unsettled]:
        """Up to ``limit`` messages to look up now: first those never looked up whose last
        change is older than ``after`` (oldest first), then those due to be looked up
        again."""
        columns = (_M.id, _M.provider, _M.provider_message_id, _M.updated_at)
        first = (
            select(*columns)
            .where(_unsettled(), _M.reconcile_at.is_(None), _M.updated_at < now - after)
            # By the index's own order: the planner does not take "IS NULL" for an equality
            # and would sort every match to order by updated_at alone.
            .order_by(_M.reconcile_at, _M.updated_at)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(first))
            if len(rows) < limit:
                again = (
                    select(*columns)
                    .where(_unsettled(), _M.reconcile_at <= now)
                    .order_by(_M.reconcile_at)
                    .limit(limit - len(rows))
                )
                rows += list(await conn.execute(again))
        # A message with no provider cannot be looked up; the index only holds ones with an id.
        return [Unsettled(*row) for row in rows if row[1] is not None]

    async def look_again(self, when: Sequence[tuple[UUID, datetime]]) -> None:
        """Set when each message is looked up next. Messages settled meanwhile are left
        alone: their row need not change for nothing."""
        if not when:
            return
        statement = (
            update(MESSAGES)
            .where(_M.id == bindparam("b_id"), _unsettled())
            .values(reconcile_at=bindparam("b_at"))
        )
        async with self.engine.begin() as conn:
            # In id order, as every batch writer locks its rows, so that none can deadlock.
            await conn.execute(statement, [{"b_id": i, "b_at": at} for i, at in sorted(when)])
