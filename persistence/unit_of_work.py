"""The database transaction of a unit of work, on PostgreSQL and on the embedded SQLite file.

While a unit is open, the stores called from the task that opened it run on its connection
(``Repository.transaction``) instead of opening transactions of their own, so that the use
case's writes commit or roll back together when the unit ends. The transaction is begun by the
first store call that needs one, not on entry: a unit that writes nothing costs nothing.

On PostgreSQL the hottest writes are single self-contained statements run on the driver's
connection with no BEGIN and COMMIT around them (the one-statement accept, the claim, the
record of sent outcomes): one round trip each. In a unit they keep that speed when they are
the unit's first work: the statement commits as it returns, and that is the unit's commit.
Store work asked of the unit after such a statement is refused (it could not be part of a
transaction that has already committed); work before it makes the store take its general
path inside the unit's transaction instead.

Only the task that opened the unit joins it: a task started inside the unit (which inherits
its context) runs its store calls in transactions of its own, as it would outside.

A store method called inside a unit must take its connection from ``Repository.transaction``:
one that opens a connection of its own (``engine.connect()``) would, on SQLite's pool of one
connection, wait for the connection the unit itself holds until the pool times out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar, Token
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_CURRENT: ContextVar[SqlTransaction | None] = ContextVar("unit_of_work", default=None)


class SqlTransaction:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        #: The task that opened the unit: the only one whose store calls join it.
        self.task: asyncio.Task[object] | None = None
        self._token: Token[SqlTransaction | None] | None = None
        self._stack = AsyncExitStack()
        self._connection: AsyncConnection | None = None
        self._committed_alone = False

    async def __aenter__(self) -> SqlTransaction:
        self.task = asyncio.current_task()
        self._token = _CURRENT.set(self)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
        # engine.begin()'s own exit: COMMIT on a clean exit, ROLLBACK when the body raised.
        await self._stack.__aexit__(*exc_info)

    @property
    def may_commit_alone(self) -> bool:
        """Whether a self-contained statement may now be the unit's whole work."""
        return self._connection is None and not self._committed_alone

    def commit_alone(self) -> None:
        """A self-contained statement is about to run as the unit's whole work."""
        if not self.may_commit_alone:
            raise RuntimeError("this unit of work has begun other work already")
        self._committed_alone = True

    @asynccontextmanager
    async def joined(self) -> AsyncIterator[AsyncConnection]:
        """The unit's connection, in its transaction (begun on first use). Committed or
        rolled back when the unit ends, not here."""
        if self._committed_alone:
            raise RuntimeError(
                "this unit of work committed with its one statement: it takes no more work"
            )
        if self._connection is None:
            self._connection = await self._stack.enter_async_context(self.engine.begin())
        yield self._connection


def current_unit(engine: AsyncEngine) -> SqlTransaction | None:
    """The unit of work the running task opened on ``engine``, if any."""
    unit = _CURRENT.get()
    if unit is None or unit.engine is not engine or unit.task is not asyncio.current_task():
        return None
    return unit
