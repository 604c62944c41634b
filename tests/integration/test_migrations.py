"""Alembic migrations vs. the SQLAlchemy models, on real PostgreSQL and SQLite databases.

The drift test upgrades a fresh database to head and asks Alembic's autogenerate what it
would change to reach ``persistence.models.Base.metadata``: anything at all means models and
migrations have diverged (a model changed without a migration, or the other way round).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Index, Integer, MetaData, String, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.entry.migrations import alembic_config, upgrade_to_head
from gateway.settings import Settings
from harness.servers import PostgresServer
from persistence.db import create_engine
from persistence.models import NAMING, Base
from persistence.search import include_name

MODEL_TABLES = set(Base.metadata.tables)


def _head() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"the migrations must have exactly one head, found {heads}"
    return heads[0]


def _diff(connection: Connection, metadata: MetaData) -> list[Any]:
    """What autogenerate would emit to go from the database to ``metadata``."""
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "render_as_batch": connection.dialect.name == "sqlite",
            "include_name": include_name,
        },
    )
    return list(compare_metadata(context, metadata))


def _state(connection: Connection) -> tuple[str | None, set[str]]:
    """(current alembic revision, tables present)."""
    revision = MigrationContext.configure(connection).get_current_revision()
    tables = inspect(connection).get_table_names()
    return revision, {t for t in tables if include_name(t, "table", {})}


def _migrate(step: Callable[[Any, str], None], revision: str) -> Callable[[Connection], None]:
    """``command.upgrade`` or ``command.downgrade`` to ``revision`` on the connection given."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        step(config, revision)

    return run


def _drifted_copy() -> MetaData:
    """The models plus an extra column, an extra index and a widened column."""
    copy = MetaData(naming_convention=NAMING)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    messages = copy.tables["messages"]
    messages.append_column(Column("priority", Integer, nullable=True))
    Index(None, messages.c.channel, messages.c.direction)
    api_keys = copy.tables["api_keys"]
    api_keys.c.prefix.type = String(32)
    return copy


@pytest.fixture(params=["postgresql", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a brand-new, empty database of each backend."""
    if request.param == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        name = "mig_" + uuid.uuid4().hex[:12]
        postgres.create_database(name)
        return Settings(database_url=postgres.url(name), data_dir=tmp_path)
    return Settings(database_url=None, redis_url=None, data_dir=tmp_path / "data")


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _assert_at_head(engine: AsyncEngine, diverged: str) -> None:
    """The database is at the head revision, with the models' tables and nothing else."""
    async with engine.connect() as connection:
        revision, tables = await connection.run_sync(_state)
        diff = await connection.run_sync(_diff, Base.metadata)
    assert revision == _head()
    assert tables == MODEL_TABLES | {"alembic_version"}
    assert diff == [], f"{diverged}:\n" + "\n".join(map(repr, diff))


async def test_fresh_database_starts_empty(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        revision, tables = await connection.run_sync(_state)
    assert (revision, tables) == (None, set())


async def test_upgrade_to_head_matches_the_models(settings: Settings, engine: AsyncEngine) -> None:
    await upgrade_to_head(settings)
    await _assert_at_head(engine, "models and migrations have diverged")


async def test_upgrade_to_head_is_idempotent(settings: Settings, engine: AsyncEngine) -> None:
    await upgrade_to_head(settings)
    await upgrade_to_head(settings)  # `migrate` twice, or every embedded start-up
    async with engine.connect() as connection:
        revision, _ = await connection.run_sync(_state)
        diff = await connection.run_sync(_diff, Base.metadata)
    assert revision == _head() and diff == []


async def test_downgrade_to_base_and_upgrade_again(settings: Settings, engine: AsyncEngine) -> None:
    await upgrade_to_head(settings)

    async with engine.begin() as connection:
        await connection.run_sync(_migrate(command.downgrade, "base"))
    async with engine.connect() as connection:
        revision, tables = await connection.run_sync(_state)
    assert revision is None
    assert tables <= {"alembic_version"}, f"left behind by the downgrade: {tables}"

    async with engine.begin() as connection:
        await connection.run_sync(_migrate(command.upgrade, "head"))
    await _assert_at_head(engine, "after downgrade + upgrade")


async def test_drift_check_detects_diverging_models(
    settings: Settings, engine: AsyncEngine
) -> None:
    await upgrade_to_head(settings)
    async with engine.connect() as connection:
        diff = await connection.run_sync(_diff, _drifted_copy())
    assert diff, "the drift check did not notice an extra column, index and type change"

    flat = [op for entry in diff for op in (entry if isinstance(entry, list) else [entry])]
    added_columns = [(op[2], op[3].name) for op in flat if op[0] == "add_column"]
    added_indexes = [op[1].name for op in flat if op[0] == "add_index"]
    type_changes = [(op[2], op[3]) for op in flat if op[0] == "modify_type"]
    assert added_columns == [("messages", "priority")], diff
    assert added_indexes == ["ix_messages_channel_direction"], diff
    assert type_changes == [("api_keys", "prefix")], diff
    # The models themselves were not touched by building the copy.
    assert "priority" not in Base.metadata.tables["messages"].c


async def test_drift_check_detects_a_table_missing_from_the_models(
    settings: Settings, engine: AsyncEngine
) -> None:
    await upgrade_to_head(settings)
    fewer = MetaData(naming_convention=NAMING)
    for table in Base.metadata.sorted_tables:
        if table.name != "idempotency_keys":
            table.to_metadata(fewer)
    async with engine.connect() as connection:
        diff = await connection.run_sync(_diff, fewer)
    removed_tables = [e[1].name for e in diff if isinstance(e, tuple) and e[0] == "remove_table"]
    assert removed_tables == ["idempotency_keys"], diff


async def test_search_documents_move_to_their_table_and_back(postgres: PostgresServer) -> None:
    """0017 copies the documents of the stored messages out of ``messages`` (a body without
    words gets none) and drops the column; its downgrade restores the column and its index."""
    name = "mig_" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    engine = create_engine(Settings(database_url=postgres.url(name)))
    account, conversation = uuid.uuid4(), uuid.uuid4()
    bodies = {uuid.uuid4(): body for body in ("your parcel", "no match", "?!", None)}
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate(command.upgrade, "0016b"))
            await conn.execute(
                text("INSERT INTO accounts (id, name, created_at) VALUES (:a, 'a', now())"),
                {"a": account},
            )
            await conn.execute(
                text(
                    "INSERT INTO conversations (id, account_id, participant_a, participant_b,"
                    " created_at, last_message_at) VALUES (:c, :a, 'x', 'y', now(), now())"
                ),
                {"a": account, "c": conversation},
            )
            await conn.execute(
                text(
                    "INSERT INTO messages (id, account_id, conversation_id, channel, direction,"
                    " sender, recipient, body, attachments, status, attempts, created_at,"
                    " updated_at) VALUES (:id, :a, :c, 'SMS', 'OUTBOUND', 'x', 'y', :body, '[]',"
                    " 'QUEUED', 0, now(), now())"
                ),
                [
                    {"id": id_, "a": account, "c": conversation, "body": b}
                    for id_, b in bodies.items()
                ],
            )
            await conn.run_sync(_migrate(command.upgrade, "0017"))
            copied = await conn.execute(
                text(
                    "SELECT message_id, account_id, conversation_id, document::text"
                    " FROM message_search ORDER BY document::text"
                )
            )
            by_body = {b: id_ for id_, b in bodies.items()}
            assert [tuple(r) for r in copied] == [
                (by_body["no match"], account, conversation, "'match':2 'no':1"),
                (by_body["your parcel"], account, conversation, "'parcel':2 'your':1"),
            ]
            assert "search" not in {c["name"] for c in await conn.run_sync(_columns)}

            await conn.run_sync(_migrate(command.downgrade, "0016b"))
            found = await conn.execute(
                text("SELECT id FROM messages WHERE search @@ to_tsquery('simple', 'parcel')")
            )
            assert list(found.scalars()) == [by_body["your parcel"]]
            indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("messages"))
            assert "ix_messages_search" in {i["name"] for i in indexes}
            assert not await conn.run_sync(lambda c: inspect(c).has_table("message_search"))
    finally:
        await engine.dispose()


def _columns(connection: Connection) -> list[Any]:
    return list(inspect(connection).get_columns("messages"))


async def test_events_keep_only_their_message_key_and_their_deliveries(
    settings: Settings, engine: AsyncEngine
) -> None:
    """0018 drops the events' foreign keys to accounts and conversations; on SQLite, which
    rebuilds the table for it, the events, the webhook deliveries of those events (whose
    foreign key cascades when the old table goes), the indexes and the trigger that writes
    deliveries all survive. The downgrade puts the keys back, keeping everything."""
    sqlite = settings.database_url is None or settings.database_url.startswith("sqlite")
    now = datetime.now(UTC)
    ids = {name: uuid.uuid4() for name in ("account", "conversation", "message", "endpoint")}
    key = {name: (value.hex if sqlite else value) for name, value in ids.items()}

    async def event(conn: Any, kind: str) -> None:
        await conn.execute(
            text(
                "INSERT INTO message_events (account_id, message_id, conversation_id, status,"
                " kind, occurred_at) VALUES (:account, :message, :conversation, 'QUEUED',"
                " :kind, :now)"
            ),
            {**key, "kind": kind, "now": now},
        )

    async def counts(conn: Any) -> tuple[int, int]:
        events = (await conn.execute(text("SELECT count(*) FROM message_events"))).scalar()
        sent = (await conn.execute(text("SELECT count(*) FROM webhook_deliveries"))).scalar()
        return events, sent

    def parents(connection: Connection) -> list[str]:
        keys = inspect(connection).get_foreign_keys("message_events")
        return sorted(k["referred_table"] for k in keys)

    async with engine.begin() as conn:
        await conn.run_sync(_migrate(command.upgrade, "0017"))
        await _an_account_with_a_message_and_an_endpoint(conn, key, now)
        await event(conn, "accepted")
        assert await counts(conn) == (1, 1)
        assert await conn.run_sync(parents) == ["accounts", "conversations", "messages"]

        await conn.run_sync(_migrate(command.upgrade, "0018"))
        assert await counts(conn) == (1, 1), "events or their deliveries lost"
        assert await conn.run_sync(parents) == ["messages"]
        await event(conn, "attempt")
        assert await counts(conn) == (2, 2), "the trigger no longer writes deliveries"
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("message_events"))
        assert len(indexes) == 3

        await conn.run_sync(_migrate(command.downgrade, "0017"))
        assert await counts(conn) == (2, 2)
        assert await conn.run_sync(parents) == ["accounts", "conversations", "messages"]
        await conn.execute(text("DELETE FROM messages"))
        assert await counts(conn) == (0, 0), "events no longer go with their message"


async def _an_account_with_a_message_and_an_endpoint(
    conn: Any, key: dict[str, Any], now: datetime
) -> None:
    """``key``: the ids of the rows (the account's also names it: names are unique)."""
    params = {**key, "name": str(key["account"]), "yes": True, "now": now}
    for statement in _AN_ACCOUNT_WITH_A_MESSAGE_AND_AN_ENDPOINT:
        await conn.execute(text(statement), params)


_AN_ACCOUNT_WITH_A_MESSAGE_AND_AN_ENDPOINT = (
    "INSERT INTO accounts (id, name, created_at) VALUES (:account, :name, :now)",
    "INSERT INTO conversations (id, account_id, participant_a, participant_b, created_at,"
    " last_message_at) VALUES (:conversation, :account, 'x', 'y', :now, :now)",
    "INSERT INTO messages (id, account_id, conversation_id, channel, direction, sender,"
    " recipient, body, attachments, status, attempts, created_at, updated_at) VALUES"
    " (:message, :account, :conversation, 'SMS', 'OUTBOUND', 'x', 'y', 'hi', '[]', 'QUEUED',"
    " 0, :now, :now)",
    "INSERT INTO webhook_endpoints (id, account_id, url, event_kinds, statuses, enabled, secret,"
    " created_at, updated_at) VALUES (:endpoint, :account, 'https://example.com/hook', '', '',"
    " :yes, 'whsec_x', :now, :now)",
)


async def test_search_documents_leave_with_their_messages_without_a_key(
    postgres: PostgresServer,
) -> None:
    """0019 drops the documents' foreign key: they still go when their message is deleted,
    directly or through its account, and when the messages are truncated. The downgrade puts
    the key back."""
    name = "mig_" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    engine = create_engine(Settings(database_url=postgres.url(name)))
    now = datetime.now(UTC)

    async def documents(conn: Any) -> int:
        return int((await conn.execute(text("SELECT count(*) FROM message_search"))).scalar())

    async def a_message(conn: Any) -> dict[str, uuid.UUID]:
        key = {n: uuid.uuid4() for n in ("account", "conversation", "message", "endpoint")}
        await _an_account_with_a_message_and_an_endpoint(conn, key, now)
        return key

    def keys(connection: Connection) -> list[str]:
        return [k["referred_table"] for k in inspect(connection).get_foreign_keys("message_search")]

    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate(command.upgrade, "0019"))
            assert await conn.run_sync(keys) == []
            first, second, _ = [await a_message(conn) for _ in range(3)]
            assert await documents(conn) == 3

            await conn.execute(text("DELETE FROM messages WHERE id = :m"), {"m": first["message"]})
            assert await documents(conn) == 2, "a deleted message kept its document"
            await conn.execute(text("DELETE FROM accounts WHERE id = :a"), {"a": second["account"]})
            assert await documents(conn) == 1, "a deleted account's message kept its document"
            await conn.execute(text("TRUNCATE messages CASCADE"))
            assert await documents(conn) == 0, "truncated messages kept their documents"

            await a_message(conn)
            await conn.run_sync(_migrate(command.downgrade, "0018"))
            assert await conn.run_sync(keys) == ["messages"]
            assert await documents(conn) == 1
    finally:
        await engine.dispose()
