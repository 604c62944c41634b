"""The PostgreSQL engine's pool, on a real server: below full load a checkout gets the
connection returned last, so the few connections in use stay warm (their server sessions keep
the prepared statements, plans and compiled trigger functions) instead of every connection of
the pool taking its turn."""

from __future__ import annotations

from contextlib import AsyncExitStack

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.settings import Settings
from harness.servers import PostgresServer
from persistence.db import create_engine
from tests.conftest import fresh_postgres_url


async def _backend(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_checkout_below_full_load_gets_the_connection_returned_last(
    postgres: PostgresServer,
) -> None:
    engine = create_engine(Settings(database_url=fresh_postgres_url(postgres), db_pool_size=4))
    try:
        # A burst opens the whole pool; its connections go back in the order they finish.
        async with AsyncExitStack() as burst:
            opened = [
                await _backend(await burst.enter_async_context(engine.connect())) for _ in range(4)
            ]
        assert len(set(opened)) == 4
        # One at a time afterwards: the same connection each time, the one returned last (the
        # stack closed the first-opened one last). In turn, each of the four would serve.
        served = []
        for _ in range(6):
            async with engine.connect() as conn:
                served.append(await _backend(conn))
        assert served == [opened[0]] * 6, (opened, served)
    finally:
        await engine.dispose()
