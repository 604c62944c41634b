"""Reconciliation finds its messages through its partial index, however many are settled."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.migrations import upgrade_to_head
from gateway.settings import Settings
from persistence.db import create_engine
from persistence.reconcile import ReconcileRepository
from tests.conftest import fresh_postgres_url
from tests.integration.test_query_plans import _plans_of
from tests.servers import PostgresServer

INDEX = "ix_messages_reconcile_at_updated_at"


@pytest.fixture
async def engine(postgres: PostgresServer) -> AsyncIterator[AsyncEngine]:
    settings = Settings(database_url=fresh_postgres_url(postgres))
    await upgrade_to_head(settings)
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_both_lookups_of_reconciliation_use_its_partial_index(engine: AsyncEngine) -> None:
    account, conversation = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO accounts (id, name, created_at) VALUES (:id, 'a', :now)"),
            {"id": account, "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO conversations"
                " (id, account_id, participant_a, participant_b, created_at, last_message_at)"
                " VALUES (:id, :account, 'a', 'b', :now, :now)"
            ),
            {"id": conversation, "account": account, "now": now},
        )
        # Mostly settled messages; a few SENT ones, some never looked up, some looked up.
        await conn.execute(
            text(
                "INSERT INTO messages (id, account_id, conversation_id, channel, direction,"
                " sender, recipient, attachments, status, provider, provider_message_id,"
                " attempts, next_attempt_at, created_at, updated_at, reconcile_at)"
                " SELECT gen_random_uuid(), :account, :conversation, 'SMS', 'OUTBOUND', 'a', 'b',"
                " '[]', CASE WHEN g % 500 = 0 THEN 'SENT' ELSE 'DELIVERED' END, 'twilio',"
                " 'SM' || g, 1, o.at, o.at, o.at - g * interval '1 second',"
                " CASE WHEN g % 1000 = 0 THEN o.at END"
                " FROM generate_series(1, 20000) g, (SELECT CAST(:old AS timestamptz) AS at) o"
            ),
            {"account": account, "conversation": conversation, "old": now - timedelta(hours=1)},
        )
        await conn.execute(text("ANALYZE messages"))
    repo = ReconcileRepository(engine)
    found: list[object] = []

    async def look() -> None:
        found.extend(await repo.due(now, timedelta(minutes=10), limit=100))

    plans = await _plans_of(engine, look)
    assert len(found) == 40
    assert len(plans) == 2, plans
    for plan in plans:
        assert INDEX in plan, plan
        assert "Sort" not in plan, plan
