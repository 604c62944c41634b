"""Hot lookups touch rows in proportion to their input, not to the table.

Measured with PostgreSQL's own per-transaction counter of tuples fetched, so the check is
exact and independent of machine speed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.channels import Channel, Direction
from gateway.domain.message_filters import MessageFilter, MessageSort, TimeRange
from gateway.domain.records import Message
from gateway.domain.search import parse
from gateway.domain.statuses import MessageStatus
from gateway.services.ports import PageRequest
from gateway.settings import Settings
from harness.servers import PostgresServer
from persistence.conversations import _select
from persistence.lifecycle import LifecycleRepository
from persistence.queries import QueryRepository
from persistence.reconcile import ReconcileRepository
from persistence.sealed import SecretBox
from persistence.webhook_endpoints import WebhookEndpointRepository
from tests.conftest import fresh_postgres_url, migrated_engine
from tests.integration.test_webhook_claims import backlog

SENDER = "+14155550100"
EXISTING = 3000


@pytest.fixture
async def engine(postgres: PostgresServer, tmp_path: object) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(Settings(database_url=fresh_postgres_url(postgres))) as engine:
        yield engine


def _recipient(n: int) -> str:
    return f"+1415{2000000 + n:07d}"


async def _account_with_conversations(
    conn: AsyncConnection, account: uuid.UUID, now: datetime, pairs: list[tuple[str, str]]
) -> list[uuid.UUID]:
    """One account with a conversation between each pair of participants; their ids."""
    ids = [uuid.uuid4() for _ in pairs]
    await conn.execute(
        text("INSERT INTO accounts (id, name, created_at) VALUES (:id, 'a', :now)"),
        {"id": account, "now": now},
    )
    await conn.execute(
        text(
            "INSERT INTO conversations"
            " (id, account_id, participant_a, participant_b, created_at, last_message_at)"
            " VALUES (:id, :account, :a, :b, :now, :now)"
        ),
        [
            {"id": id_, "account": account, "a": a, "b": b, "now": now}
            for id_, (a, b) in zip(ids, pairs, strict=True)
        ],
    )
    return ids


async def test_pair_lookup_fetches_only_the_pairs_asked_for(engine: AsyncEngine) -> None:
    account = uuid.uuid4()
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        # One account, one sender, many recipients: every row shares account and sender.
        pairs = [(_recipient(n), SENDER) for n in range(EXISTING)]
        await _account_with_conversations(conn, account, now, pairs)
    asked = [(account, _recipient(n), SENDER) for n in range(0, EXISTING, 30)]
    missing = [(account, _recipient(EXISTING + n), SENDER) for n in range(10)]
    async with engine.begin() as conn:
        # Without bitmap scans the planner shows what it does with stale statistics: an
        # IN list of pairs became one scan of the prefix the pairs share (account, sender).
        await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        found = await _select(conn, asked + missing)
        fetched = (
            await conn.execute(
                text(
                    "SELECT pg_stat_get_xact_tuples_fetched('conversations'::regclass)"
                    " + sum(pg_stat_get_xact_tuples_fetched(indexrelid))"
                    " FROM pg_index WHERE indrelid = 'conversations'::regclass"
                )
            )
        ).scalar_one()
    assert set(found) == set(asked)
    # Each pair is one index probe: a scan over the account's conversations would fetch
    # thousands.
    assert int(fetched) <= 2 * len(asked + missing), f"{fetched} tuples fetched"


async def _bulk_messages(
    engine: AsyncEngine,
    account: uuid.UUID,
    now: datetime,
    columns: str,
    values: str,
    source: str = "generate_series(1, 20000) g",
    **params: object,
) -> None:
    """One account with one conversation, outbound SMS messages in bulk for them (one a row of
    ``source``, its ``columns`` set to ``values``, which see ``:now`` besides ``params``), and
    fresh statistics."""
    insert = (
        "INSERT INTO messages (id, account_id, conversation_id, channel, direction, sender,"
        f" recipient, attachments, {columns}) SELECT gen_random_uuid(), :account, :conversation,"
        f" 'SMS', 'OUTBOUND', 'a', 'b', '[]', {values} FROM {source}"
    )
    async with engine.begin() as conn:
        [conversation] = await _account_with_conversations(conn, account, now, [("a", "b")])
        bound = {"account": account, "conversation": conversation, "now": now, **params}
        await conn.execute(text(insert), bound)
        await conn.execute(text("ANALYZE messages"))


async def _plans_of(engine: AsyncEngine, run: Callable[[], Awaitable[object]]) -> list[str]:
    """The plans PostgreSQL picks for the statements ``run`` sends, as text."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await run()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    plans = []
    async with engine.connect() as conn:
        for statement, parameters in seen:
            rows = await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            plans.append("\n".join(r[0] for r in rows))
    return plans


async def test_work_and_dead_letter_lookups_use_their_partial_indexes(engine: AsyncEngine) -> None:
    account, now = uuid.uuid4(), datetime.now(UTC)
    # Mostly finished messages, a few of each status the lookups look for.
    await _bulk_messages(
        engine,
        account,
        now,
        "status, attempts, next_attempt_at, created_at, updated_at",
        "CASE WHEN g % 1000 = 0 THEN 'QUEUED' WHEN g % 1000 = 1 THEN 'FAILED'"
        " ELSE 'DELIVERED' END, 1, :now, :now, :now",
    )
    lifecycle, queries = LifecycleRepository(engine), QueryRepository(engine)
    plans = await _plans_of(engine, lambda: lifecycle.due_work(now))
    plans += await _plans_of(engine, lambda: queries.dead_letters_page(account, PageRequest(10)))
    assert len(plans) == 2, plans
    assert "ix_messages_status_next_attempt_at" in plans[0], plans[0]
    assert "ix_messages_account_id_updated_at_id" in plans[1], plans[1]


RECONCILE_INDEX = "ix_messages_reconcile_at_updated_at"


async def test_both_lookups_of_reconciliation_use_its_partial_index(engine: AsyncEngine) -> None:
    account, now = uuid.uuid4(), datetime.now(UTC)
    # Mostly settled messages; a few SENT ones, some never looked up, some looked up.
    await _bulk_messages(
        engine,
        account,
        now,
        "status, provider, provider_message_id, attempts, next_attempt_at, created_at,"
        " updated_at, reconcile_at",
        "CASE WHEN g % 500 = 0 THEN 'SENT' ELSE 'DELIVERED' END, 'twilio', 'SM' || g, 1, o.at,"
        " o.at, o.at - g * interval '1 second', CASE WHEN g % 1000 = 0 THEN o.at END",
        "generate_series(1, 20000) g, (SELECT CAST(:old AS timestamptz) AS at) o",
        old=now - timedelta(hours=1),
    )
    repo = ReconcileRepository(engine)
    found: list[object] = []

    async def look() -> None:
        found.extend(await repo.due(now, timedelta(minutes=10), limit=100))

    plans = await _plans_of(engine, look)
    assert len(found) == 40
    assert len(plans) == 2, plans
    for plan in plans:
        assert RECONCILE_INDEX in plan, plan
        assert "Sort" not in plan, plan


LISTED = 100_000
CONVERSATIONS = 100
# Where most messages match, reading the plain order index and skipping the few that do not
# is the better plan, and the planner rightly takes it: any index that gives the order will do.
ANY_ORDERED_INDEX = "Index Scan"


def _listing_cases(
    conversation: uuid.UUID, now: datetime
) -> list[tuple[str, MessageFilter, MessageSort, bool, str | None]]:
    """(what, filter, order, newest first, the index that must give the order, or None
    where a sort of the few matches is fine) of each filter a UI would use, alone and
    together."""
    hour = timedelta(hours=1)
    created = TimeRange(now - 30 * hour, now - 20 * hour)
    one = MessageFilter
    by_created, by_updated = MessageSort.CREATED_AT, MessageSort.UPDATED_AT
    return [
        ("nothing", one(), by_created, True, "ix_messages_account_id_created_at_id"),
        ("oldest first", one(), by_created, False, "ix_messages_account_id_created_at_id"),
        (
            "a common status",
            one(statuses=frozenset({MessageStatus.DELIVERED})),
            by_created,
            True,
            ANY_ORDERED_INDEX,
        ),
        (
            "a rare status",
            one(statuses=frozenset({MessageStatus.UNDELIVERED})),
            by_created,
            True,
            "ix_messages_account_id_status_created_at_id",
        ),
        (
            "several statuses",
            one(statuses=frozenset({MessageStatus.UNDELIVERED, MessageStatus.QUEUED})),
            by_created,
            True,
            None,
        ),
        ("a channel", one(channel=Channel.MMS), by_created, True, None),
        ("a direction", one(direction=Direction.INBOUND), by_created, True, None),
        (
            "a sender",
            one(sender=_recipient(7)),
            by_created,
            True,
            "ix_messages_account_id_sender_created_at_id",
        ),
        (
            "a recipient",
            one(recipient=_recipient(7)),
            by_created,
            True,
            "ix_messages_account_id_recipient_created_at_id",
        ),
        (
            "a vendor",
            one(provider="telnyx"),
            by_created,
            True,
            "ix_messages_account_id_provider_created_at_id",
        ),
        (
            "a conversation",
            one(conversation_id=conversation),
            by_created,
            True,
            "ix_messages_conversation_id_created_at_id",
        ),
        (
            "a created range",
            one(created=created),
            by_created,
            True,
            "ix_messages_account_id_created_at_id",
        ),
        ("an updated range", one(updated=created), by_updated, True, "ix_messages_updated_order"),
        ("the updated order", one(), by_updated, False, "ix_messages_updated_order"),
        (
            "a recipient and a status",
            one(recipient=_recipient(7), statuses=frozenset({MessageStatus.DELIVERED})),
            by_created,
            True,
            None,
        ),
        (
            "a conversation, a direction and a created range",
            one(conversation_id=conversation, direction=Direction.INBOUND, created=created),
            by_created,
            True,
            None,
        ),
        (
            "inbound MMS of a time",
            one(channel=Channel.MMS, direction=Direction.INBOUND, created=created),
            by_created,
            True,
            None,
        ),
    ]


async def test_every_filter_of_the_message_listing_is_served_by_an_index(
    engine: AsyncEngine,
) -> None:
    account, now = uuid.uuid4(), datetime.now(UTC)
    async with engine.begin() as conn:
        pairs = [(_recipient(n), SENDER) for n in range(CONVERSATIONS)]
        conversations = await _account_with_conversations(conn, account, now, pairs)
        # Spread over 100 conversations and 100 hours; a few percent of them rare statuses,
        # MMS, e-mail, inbound, or carried by the second vendor.
        await conn.execute(
            text(
                "INSERT INTO messages (id, account_id, conversation_id, channel, direction,"
                " sender, recipient, attachments, status, provider, attempts, created_at,"
                " updated_at, body)"
                " SELECT gen_random_uuid(), :account,"
                " (CAST(:conversations AS uuid[]))[g % 100 + 1],"
                " CASE g % 10 WHEN 0 THEN 'MMS' WHEN 1 THEN 'EMAIL' ELSE 'SMS' END,"
                " CASE WHEN g % 5 = 0 THEN 'INBOUND' ELSE 'OUTBOUND' END,"
                " '+1415' || (2000000 + g % 100), '+1415' || (2000000 + (g + 7) % 100), '[]',"
                " CASE WHEN g % 997 = 0 THEN 'UNDELIVERED' WHEN g % 991 = 0 THEN 'QUEUED'"
                " ELSE 'DELIVERED' END,"
                " CASE WHEN g % 50 = 0 THEN 'telnyx' ELSE 'twilio' END, 1,"
                " o.at - g * interval '3.6 seconds', o.at - g * interval '3.6 seconds',"
                " CASE WHEN g % 1000 = 0 THEN 'a rare parcel ' ELSE 'see you at ' END || g"
                " FROM generate_series(1, :rows) g, (SELECT CAST(:now AS timestamptz) AS at) o"
            ),
            {
                "account": account,
                "conversations": conversations,
                "rows": LISTED,
                "now": now,
            },
        )
        await conn.execute(text("ANALYZE messages"))
    queries = QueryRepository(engine)
    for what, where, sort, descending, index in _listing_cases(conversations[0], now):
        for after in (None, (now - timedelta(hours=25), uuid.uuid4())):
            if after is not None and not descending:
                after = (now - timedelta(hours=75), after[1])
            found: list[object] = []

            async def page(
                where: MessageFilter = where,
                sort: MessageSort = sort,
                descending: bool = descending,
                after: tuple[datetime, uuid.UUID] | None = after,
                found: list[object] = found,
            ) -> None:
                result = await queries.filtered_messages_page(
                    account, where, PageRequest(50, after, descending), sort=sort
                )
                found.extend(result.items)

            [plan] = await _plans_of(engine, page)
            assert "Seq Scan on messages" not in plan, f"{what}:\n{plan}"
            if index is not None:
                assert index in plan, f"{what}:\n{plan}"
                assert "Sort" not in plan, f"{what}:\n{plan}"
            assert found, what
    # A search of words in many messages reads them along the order, testing each message's
    # document; one of rare words tests a bounded window so, then reads the full-text index.
    # Newest first: the lower g, the newer.
    for where, reads, bodies in (
        (
            MessageFilter(search=parse("see")),
            ["ix_messages_account_id_created_at_id"],
            [f"see you at {g}" for g in range(1, 51)],
        ),
        (
            MessageFilter(search=parse("see"), direction=Direction.INBOUND),
            ["ix_messages_account_id_created_at_id"],
            [f"see you at {g}" for g in range(5, 251, 5)],
        ),
        (
            MessageFilter(search=parse("parcel")),
            ["ix_messages_account_id_created_at_id", "ix_message_search_document"],
            [f"a rare parcel {g}" for g in range(1000, 50001, 1000)],
        ),
        (
            MessageFilter(search=parse('"rare parcel" 20*'), direction=Direction.INBOUND),
            ["ix_messages_account_id_created_at_id", "ix_message_search_document"],
            ["a rare parcel 2000", "a rare parcel 20000"],
        ),
    ):
        found: list[Message] = []

        async def search(where: MessageFilter = where, found: list[Message] = found) -> None:
            page = await queries.filtered_messages_page(
                account, where, PageRequest(50), sort=MessageSort.CREATED_AT
            )
            found.extend(page.items)

        plans = await _plans_of(engine, search)
        assert len(plans) == len(reads), plans
        for plan, index in zip(plans, reads, strict=True):
            assert index in plan, plan
            assert "Seq Scan on messages" not in plan, plan
        assert [m.body for m in found] == bodies, where
    # Unread counts read only the inbound messages of the conversations asked for.
    [plan] = await _plans_of(engine, lambda: queries.unread_counts(conversations[:3]))
    assert "ix_messages_inbound" in plan, plan
    assert "Seq Scan on messages" not in plan, plan


async def test_the_webhook_claim_reads_each_endpoint_s_index_range_not_the_backlog(
    engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    await backlog(engine, now, endpoints=20, each=1000)
    repo = WebhookEndpointRepository(engine, SecretBox(None))
    claimed: list[object] = []

    async def claim() -> None:
        claimed.extend(await repo.claim(now, [], limit=100, batch=2, lease=timedelta(1)))

    plans = await _plans_of(engine, claim)
    assert len(claimed) == 40
    assert plans, plans
    for plan in plans:
        assert "Seq Scan on webhook_deliveries" not in plan, plan
    # The pick: per endpoint, a bounded read of its due range; no ranking of every due row.
    [pick] = [p for p in plans if "ix_webhook_deliveries_endpoint_id_next_attempt_at_id" in p]
    assert "Limit" in pick, pick
    assert "Sort" not in pick.split("Nested Loop")[-1], pick
