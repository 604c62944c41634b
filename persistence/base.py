"""What every repository shares: the engine, dialect-specific upserts, event inserts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.records import Message, MessageEvent
from gateway.domain.statuses import MessageStatus
from persistence.rows import EVENTS, event_from_mapping
from persistence.unit_of_work import current_unit


class Repository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """The transaction to write in: the running unit of work's, else one of its own."""
        unit = current_unit(self.engine)
        return self.engine.begin() if unit is None else unit.joined()

    @property
    def may_commit_alone(self) -> bool:
        """Whether one self-contained statement may run on :meth:`driver` now: outside a
        unit of work, or as the first and whole work of one."""
        unit = current_unit(self.engine)
        return unit is None or unit.may_commit_alone

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """The pool's asyncpg connection itself, with no transaction open on it: for hot,
        fixed statements, where SQLAlchemy's statement and row machinery cost more than the
        round trip. A statement run on it alone commits by itself; in a unit of work, that
        statement is the unit's whole work (see ``persistence/unit_of_work.py``)."""
        unit = current_unit(self.engine)
        if unit is not None:
            unit.commit_alone()
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                yield driver
            except BaseException:
                # SQLAlchemy's own disconnect handling never sees errors raised here: a
                # connection the server dropped (a restart) would go back to the pool and
                # fail every later checkout. Drop it instead, so the pool opens a new one.
                if driver.is_closed():
                    await conn.invalidate()
                raise

    async def put_account_row(self, table: Table, account_id: UUID, values: dict[str, Any]) -> None:
        """Write an account's one row of ``table`` (keyed by ``account_id``): inserted, or its
        values replaced."""
        insert: Any = self.upsert(table)
        async with self.transaction() as conn:
            await conn.execute(
                insert.values(account_id=account_id, **values).on_conflict_do_update(
                    index_elements=[table.c.account_id], set_=values
                )
            )

    def upsert(self, table: Table) -> Any:
        """An INSERT that understands ON CONFLICT on both supported databases."""
        if self.dialect == "postgresql":
            return pg_insert(table)
        return sqlite_insert(table)


def event_row(
    message: Message, status: MessageStatus, kind: str, detail: dict[str, Any] | None, at: datetime
) -> dict[str, Any]:
    """Column values of one audit-trail entry for ``message``."""
    return {
        "account_id": message.account_id,
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "status": status.value,
        "kind": kind,
        "detail": detail,
        "occurred_at": at,
    }


def stored_event(event_id: int, row: dict[str, Any]) -> MessageEvent:
    """The audit-trail entry ``row`` (see :func:`event_row`) once stored with ``event_id``."""
    return event_from_mapping(event_id, row)


def json_text(value: Any) -> str:
    """JSON for a parameter cast to jsonb in SQL (None is JSON null, as the ORM stores it)."""
    return orjson.dumps(value).decode()


async def insert_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[MessageEvent]:
    """Insert audit-trail entries and return them with their cursor ids, in input order."""
    if not rows:
        return []
    result = await conn.execute(
        EVENTS.insert().returning(EVENTS.c.id, sort_by_parameter_order=True), rows
    )
    ids = [r[0] for r in result]
    return [stored_event(event_id, row) for event_id, row in zip(ids, rows, strict=True)]
