"""The database side of a unit of work, against PostgreSQL and SQLite: the stores a use case
calls join one transaction, and the one-statement writes of PostgreSQL stay one statement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import event, func, select

from gateway.domain.channels import Channel
from gateway.domain.messages import NormalizedMessage, SendRequest, validate_send
from gateway.domain.results import Accepted, Item, Sent
from gateway.entry.bootstrap.api import bootstrap_api
from gateway.entry.migrations import upgrade_to_head
from gateway.services.clock import utcnow
from persistence.accept import AcceptRepository
from persistence.rows import EVENTS, MESSAGES
from persistence.unit_of_work import SqlTransaction
from tests.conftest import GatewayParts, gateway_settings

RETENTION = timedelta(hours=1)


@dataclass
class Db:
    container: GatewayParts
    account_id: UUID

    @property
    def dialect(self) -> str:
        return self.container.engine.dialect.name

    def items(self, recipients: list[str], *, keyed: bool) -> list[Item]:
        drafts: list[Item] = []
        for to in recipients:
            request = SendRequest(
                Channel.SMS,
                from_="+14155550100",
                to=to,
                body="hi",
                idempotency_key=f"key-{to}" if keyed else None,
            )
            draft = validate_send(request, now=utcnow())
            assert isinstance(draft, NormalizedMessage), draft
            drafts.append((self.account_id, draft))
        return drafts

    async def count(self, ids: list[UUID]) -> tuple[int, int]:
        """(messages, audit-trail events) of these ids in the database."""
        async with self.container.engine.connect() as conn:
            messages = await conn.scalar(
                select(func.count()).select_from(MESSAGES).where(MESSAGES.c.id.in_(ids))
            )
            events = await conn.scalar(
                select(func.count()).select_from(EVENTS).where(EVENTS.c.message_id.in_(ids))
            )
        return int(messages or 0), int(events or 0)


@pytest.fixture(params=["postgresql", "sqlite"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    settings = gateway_settings(request.param, tmp_path, postgres)
    await upgrade_to_head(settings)
    container = GatewayParts(bootstrap_api(settings))  # never started: no worker takes the messages
    try:
        account, _ = await container.api_keys.create("units")
        yield Db(container, account.id)
    finally:
        await container.close()


@contextmanager
def sqlalchemy_activity(db: Db) -> Iterator[list[str]]:
    """What goes through SQLAlchemy's connections meanwhile: 'BEGIN' and statements."""
    seen: list[str] = []

    def on_begin(*_: Any) -> None:
        seen.append("BEGIN")

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = db.container.engine.sync_engine
    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield seen
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_statement)


async def test_the_stores_of_a_unit_commit_together(db: Db) -> None:
    accept = AcceptRepository(db.container.engine)
    now = utcnow()
    with sqlalchemy_activity(db) as seen:
        async with SqlTransaction(db.container.engine):
            result = await accept.accept(
                db.items(["+14155550201", "+14155550202"], keyed=True), now=now, retention=RETENTION
            )
            ids = [m.id for m in result.created]
            claimed = await db.container.lifecycle.claim_many(ids, now, worker="w")
    assert seen.count("BEGIN") == 1, "one transaction for both stores"
    assert sorted(claimed) == sorted(ids)
    assert await db.count(ids) == (2, 4)  # accepted and attempt events of both


async def test_nothing_of_a_unit_that_raises_is_kept(db: Db) -> None:
    accept = AcceptRepository(db.container.engine)
    now = utcnow()
    ids: list[UUID] = []
    with pytest.raises(LookupError):
        async with SqlTransaction(db.container.engine):
            result = await accept.accept(
                db.items(["+14155550301", "+14155550302"], keyed=True), now=now, retention=RETENTION
            )
            ids = [m.id for m in result.created]
            claimed = await db.container.lifecycle.claim_many(ids, now, worker="w")
            assert sorted(claimed) == sorted(ids), "the second store saw the first one's rows"
            raise LookupError("the use case gives up")
    assert len(ids) == 2
    assert await db.count(ids) == (0, 0), "rolled back, the accept included"


async def test_a_send_through_the_container_is_one_statement_on_postgresql(db: Db) -> None:
    """The accept path keeps its speed inside the unit of work: on PostgreSQL no BEGIN, no
    COMMIT, no statement but the one accept (run on the driver, outside SQLAlchemy)."""
    requests = [SendRequest(Channel.SMS, from_="+14155550100", to="+14155550401", body="hi")]
    # The account's quiet hours are read once per QUIET_HOURS_CACHE_SECONDS, not per send.
    await db.container.api.storage.quiet_hours.of(db.account_id)
    with sqlalchemy_activity(db) as seen:
        outcomes = await db.container.sending.send(db.account_id, requests)
    [accepted] = outcomes
    assert isinstance(accepted, Accepted)
    assert await db.count([accepted.message.id]) == (1, 1)
    if db.dialect == "postgresql":
        assert seen == [], seen
    else:
        assert seen.count("BEGIN") == 1, seen


async def test_no_work_is_taken_after_a_units_one_statement(db: Db) -> None:
    if db.dialect != "postgresql":
        pytest.skip("only PostgreSQL runs writes as self-committing statements")
    accept = AcceptRepository(db.container.engine)
    now = utcnow()
    with pytest.raises(RuntimeError, match="one statement"):
        async with SqlTransaction(db.container.engine):
            result = await accept.accept(
                db.items(["+14155550501"], keyed=False), now=now, retention=RETENTION
            )
            await db.container.lifecycle.cancel(db.account_id, result.created[0].id, now)


async def test_a_claim_and_a_sent_record_stay_one_statement_each_on_postgresql(db: Db) -> None:
    """The worker's hot writes keep their speed inside their units of work too."""
    if db.dialect != "postgresql":
        pytest.skip("only PostgreSQL runs writes as self-committing statements")
    requests = [
        SendRequest(Channel.SMS, from_="+14155550100", to=f"+1415555060{i}", body="hi")
        for i in range(3)
    ]
    outcomes = await db.container.sending.send(db.account_id, requests)
    ids = [o.message.id for o in outcomes if isinstance(o, Accepted)]
    assert len(ids) == 3, outcomes
    deliveries = db.container.api.deliveries
    assert deliveries is not None
    with sqlalchemy_activity(db) as seen:
        claimed = await deliveries.delivery.claim(ids)
        changes = await deliveries.delivery.record([Sent(i, "test", f"SM{i.hex}") for i in ids])
    assert seen == [], seen
    assert sorted(claimed) == sorted(ids)
    assert [c.message.status.value if c else None for c in changes] == ["SENT"] * 3
    assert await db.count(ids) == (3, 9)  # accepted, attempt, provider_accepted each
