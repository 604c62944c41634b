"""Claims and retention of webhook deliveries, on PostgreSQL and SQLite, against the repository.

Deliveries are seeded as rows (all carrying one event), so each test states exactly what is
due, leased, settled and how old.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.domain.webhook_endpoints import DeliveryState
from gateway.services.ports import AttemptRecord, DueDelivery
from gateway.services.webhook_deliveries import DeliveryRetention
from persistence.models import AccountRow, ConversationRow, MessageEventRow, MessageRow
from persistence.sealed import SecretBox
from persistence.webhook_endpoints import (
    DELIVERIES,
    ENDPOINTS,
    WebhookEndpointRepository,
    _claimable_bounded,
)
from tests.conftest import backend_settings, migrated_engine

LEASE = timedelta(minutes=1)
CAP = 2


@pytest.fixture(params=["postgresql", "sqlite"])
async def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncEngine]:
    _, settings = backend_settings(request, tmp_path_factory, "claims")
    async with migrated_engine(settings) as engine:
        yield engine


async def account_with_conversation(
    conn: AsyncConnection, now: datetime
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new account with one conversation; their ids."""
    account, conversation = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        insert(AccountRow).values(id=account, name=f"a-{account.hex}", created_at=now)
    )
    await conn.execute(
        insert(ConversationRow).values(
            id=conversation,
            account_id=account,
            participant_a="a",
            participant_b="b",
            created_at=now,
            last_message_at=now,
        )
    )
    return account, conversation


async def seed(
    engine: AsyncEngine, now: datetime, endpoints: dict[str, bool]
) -> tuple[dict[str, uuid.UUID], int, uuid.UUID]:
    """One account with one message and one event, and its endpoints by name (enabled or
    not); the endpoints' ids, the event's id and the account's."""
    message = uuid.uuid4()
    ids = {name: uuid.uuid4() for name in endpoints}
    async with engine.begin() as conn:
        account, conversation = await account_with_conversation(conn, now)
        await conn.execute(
            insert(MessageRow).values(
                id=message,
                account_id=account,
                conversation_id=conversation,
                channel="SMS",
                direction="OUTBOUND",
                sender="a",
                recipient="b",
                attachments=[],
                status="QUEUED",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
        # Before the endpoints exist: the trigger writes no delivery for it.
        event = (
            await conn.execute(
                insert(MessageEventRow)
                .values(
                    account_id=account,
                    message_id=message,
                    conversation_id=conversation,
                    status="QUEUED",
                    kind="accepted",
                    occurred_at=now,
                )
                .returning(MessageEventRow.id)
            )
        ).scalar_one()
        await conn.execute(
            insert(ENDPOINTS),
            [
                {
                    "id": ids[name],
                    "account_id": account,
                    "url": f"https://{name}.example/hook",
                    "event_kinds": "",
                    "statuses": "",
                    "enabled": enabled,
                    "secret": SecretBox(None).seal("whsec_" + "A" * 44),
                    "created_at": now,
                    "updated_at": now,
                }
                for name, enabled in endpoints.items()
            ],
        )
    return ids, event, account


async def add_deliveries(
    engine: AsyncEngine,
    endpoint: uuid.UUID,
    account: uuid.UUID,
    event: int,
    times: list[datetime],
    *,
    state: str = "PENDING",
) -> None:
    """One delivery of ``event`` to ``endpoint`` per time: due then, created then."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(DELIVERIES),
            [
                {
                    "endpoint_id": endpoint,
                    "account_id": account,
                    "event_id": event,
                    "state": state,
                    "attempts": 0,
                    "next_attempt_at": at if state == "PENDING" else None,
                    "created_at": at,
                }
                for at in times
            ],
        )


async def backlog(
    engine: AsyncEngine, now: datetime, *, endpoints: int, each: int
) -> dict[str, uuid.UUID]:
    """``endpoints`` enabled endpoints with ``each`` due and ``each`` settled deliveries, the
    tables analyzed; the endpoints' ids."""
    ids, event, account = await seed(engine, now, {f"e{n}": True for n in range(endpoints)})
    due = [now - timedelta(seconds=s) for s in range(1, each + 1)]
    for endpoint in ids.values():
        await add_deliveries(engine, endpoint, account, event, due)
        await add_deliveries(engine, endpoint, account, event, due, state="SUCCEEDED")
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE webhook_deliveries"))
        await conn.execute(text("ANALYZE webhook_endpoints"))
    return ids


def per_endpoint(claimed: list[DueDelivery]) -> Counter[uuid.UUID]:
    return Counter(due.endpoint.id for due in claimed)


async def claim(repo: WebhookEndpointRepository, now: datetime) -> list[DueDelivery]:
    return await repo.claim(now, [], limit=100, batch=CAP, lease=LEASE)


async def test_a_claim_takes_each_endpoint_s_earliest_due_deliveries_up_to_its_cap(
    engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    ids, event, account = await seed(engine, now, {"busy": True, "quiet": True, "off": False})
    past = [now - timedelta(seconds=s) for s in range(1, 11)]
    await add_deliveries(engine, ids["busy"], account, event, past)
    await add_deliveries(engine, ids["quiet"], account, event, past[:1])
    await add_deliveries(engine, ids["off"], account, event, past)
    # Not due yet, and settled: never claimed.
    await add_deliveries(engine, ids["quiet"], account, event, [now + timedelta(hours=1)])
    await add_deliveries(engine, ids["quiet"], account, event, past, state="SUCCEEDED")
    repo = WebhookEndpointRepository(engine, SecretBox(None))

    first = await claim(repo, now)
    assert per_endpoint(first) == {ids["busy"]: CAP, ids["quiet"]: 1}
    # The earliest due first, overall and within the endpoint.
    times = [due.delivery.next_attempt_at for due in first]
    assert times == sorted(times)
    busy = [due.delivery for due in first if due.endpoint.id == ids["busy"]]
    assert [d.next_attempt_at for d in busy] == [past[-1], past[-2]]
    assert all(due.delivery.attempts == 1 for due in first)

    # Another worker, at the same moment: the busy endpoint's slots are all taken.
    assert await claim(repo, now) == []

    # Once the leases have run out (the worker died), the same deliveries come back first.
    later = now + LEASE + timedelta(seconds=1)
    again = await claim(repo, later)
    assert {due.delivery.id for due in again} == {due.delivery.id for due in first}
    assert all(due.delivery.attempts == 2 for due in again)


async def test_one_worker_at_a_time_holds_an_endpoint_and_refills_its_batch(
    engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    ids, event, account = await seed(engine, now, {"a": True, "b": True})
    past = [now - timedelta(seconds=s) for s in range(1, 21)]
    for endpoint in ids.values():
        await add_deliveries(engine, endpoint, account, event, past)
    repos = [WebhookEndpointRepository(engine, SecretBox(None)) for _ in range(4)]

    # Workers claiming at once: each endpoint's batch goes to one of them, whole.
    claims = await asyncio.gather(*(claim(repo, now) for repo in repos))
    counts = per_endpoint([due for claimed in claims for due in claimed])
    assert counts == {ids["a"]: CAP, ids["b"]: CAP}
    holder = {due.endpoint.id: n for n, claimed in enumerate(claims) for due in claimed}
    held = {n: [due.delivery.id for due in claimed] for n, claimed in enumerate(claims)}

    # A try that ends makes room in its holder's batch, and only there.
    a = holder[ids["a"]]
    [done, *_] = [due for due in claims[a] if due.endpoint.id == ids["a"]]
    await repos[a].record_all([succeeded(done)], now)
    still_held = [i for i in held[a] if i != done.delivery.id]
    other = next(n for n in range(4) if n != a)
    # Another worker finds both endpoints held, even with what it holds itself.
    mine = held[other]
    assert await repos[other].claim(now, mine, limit=100, batch=CAP, lease=LEASE) == []
    refill = await repos[a].claim(now, still_held, limit=100, batch=CAP, lease=LEASE)
    assert per_endpoint(refill) == {ids["a"]: 1}

    # The holder renews what it holds; given back untried, a delivery is due again at once,
    # its try uncounted.
    later = now + LEASE / 2
    renewed = await repos[a].renew(still_held, later, later + LEASE)
    assert renewed == set(still_held)
    [back, *_] = refill
    await repos[a].release([back.delivery.id], later)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(DELIVERIES.c.attempts, DELIVERIES.c.leased_until).where(
                    DELIVERIES.c.id == back.delivery.id
                )
            )
        ).one()
    assert row.attempts == 0 and row.leased_until is None
    # An endpoint disabled meanwhile: its deliveries are no longer renewed (the holder gives
    # back those it has not sent).
    async with engine.begin() as conn:
        await conn.execute(
            update(ENDPOINTS).where(ENDPOINTS.c.id == ids["b"]).values(enabled=False)
        )
    b = holder[ids["b"]]
    b_held = [due.delivery.id for due in claims[b] if due.endpoint.id == ids["b"]]
    assert await repos[b].renew(b_held, later, later + LEASE) == set()
    # Past the first lease, only the renewed leases still keep other workers out.
    after_first = now + LEASE + timedelta(seconds=1)
    assert per_endpoint(await claim(repos[other], after_first)).get(ids["a"], 0) == 0


def succeeded(due: DueDelivery) -> AttemptRecord:
    return AttemptRecord(
        delivery_id=due.delivery.id,
        endpoint_id=due.endpoint.id,
        status_code=200,
        error=None,
        response="ok",
        state=DeliveryState.SUCCEEDED,
        next_attempt_at=None,
        succeeded=True,
        disable=None,
    )


async def test_retention_deletes_old_settled_deliveries_in_batches_and_keeps_pending_ones(
    engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    ids, event, account = await seed(engine, now, {"a": True})
    endpoint = ids["a"]
    old = [now - timedelta(days=40, seconds=s) for s in range(5)]
    await add_deliveries(engine, endpoint, account, event, old, state="SUCCEEDED")
    await add_deliveries(engine, endpoint, account, event, old[:2], state="FAILED")
    await add_deliveries(engine, endpoint, account, event, old[:1])  # still being retried
    young = [now - timedelta(days=29)]
    await add_deliveries(engine, endpoint, account, event, young, state="SUCCEEDED")
    await add_deliveries(engine, endpoint, account, event, young, state="FAILED")
    repo = WebhookEndpointRepository(engine, SecretBox(None))
    retention = DeliveryRetention(repo, keep=timedelta(days=30), batch=2, batches=2)

    async def left() -> list[tuple[str, datetime]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(DELIVERIES.c.state, DELIVERIES.c.created_at).order_by(DELIVERIES.c.id)
            )
            return [(r.state, r.created_at) for r in rows]

    # A run deletes at most its batches, oldest first; the next run goes on.
    assert await retention.run_once() == 4
    assert len(await left()) == 10 - 4
    assert await retention.run_once() == 3
    assert await left() == [
        ("PENDING", old[0]),
        ("SUCCEEDED", young[0]),
        ("FAILED", young[0]),
    ]
    assert await retention.run_once() == 0


async def test_the_sqlite_claim_reads_each_endpoint_s_index_range_not_the_backlog(
    engine: AsyncEngine,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's plan is checked in test_query_plans")
    now = datetime.now(UTC)
    ids = await backlog(engine, now, endpoints=5, each=200)
    query = _claimable_bounded(now, CAP, []).limit(100)
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    async with engine.connect() as conn:
        rows = (await conn.execute(text("EXPLAIN QUERY PLAN " + sql))).all()
    steps = {row[0]: (row[1], str(row[3])) for row in rows}
    plan = "\n".join(detail for _, detail in steps.values())
    assert "SCAN webhook_deliveries" not in plan, plan
    # The due deliveries are read per endpoint from its index range, under the subquery's
    # LIMIT: not every due delivery ranked.
    [(parent, _)] = [
        step
        for step in steps.values()
        if "USING INDEX ix_webhook_deliveries_endpoint_id_next_attempt_at_id" in step[1]
    ]
    assert steps[parent][1].startswith("CORRELATED LIST SUBQUERY"), plan
    repo = WebhookEndpointRepository(engine, SecretBox(None))
    assert per_endpoint(await claim(repo, now)) == dict.fromkeys(ids.values(), CAP)
