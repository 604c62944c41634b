"""Engine and session factory for PostgreSQL (asyncpg) and the embedded SQLite file."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from gateway.settings import Settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _drop_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server has closed (a restart, an idle timeout) is known to
    be closed without a round trip: raising here makes the pool replace it at checkout
    instead of handing it to a statement that would fail."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite has a single writer anyway, and funnelling every unit of work
        # through one connection removes "database is locked" failures under concurrency.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No overflow: connections that come and go with bursts cost a connect each (with an SSL
    # negotiation attempt); a fixed pool applies back-pressure instead. No pre-ping either: it
    # costs a round trip per checkout. Connections the server closed are dropped at checkout
    # for free (_drop_if_closed); one that dies under a statement fails its transaction, which
    # the callers handle (clients retry, the sweeper re-enqueues), and is then replaced.
    # Last in, first out: below full load the same few connections serve every checkout, and
    # they stay warm. A server session keeps its prepared statements, their plans and the
    # compiled trigger functions for itself, so a checkout that went round the whole pool
    # (first in, first out) would meet a statement's first, slowest runs once per connection.
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=30,
        pool_recycle=1800,
        pool_use_lifo=True,
    )
    event.listen(engine.sync_engine, "checkout", _drop_if_closed)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
