"""``messaging-gateway replay-receipts`` run as a subprocess, on PostgreSQL and SQLite.

The payloads are kept the way the webhook routes keep them (``keep_payload`` with the verified
request, ``apply_received`` for an inbound message nobody owns): a Twilio status callback that
met a database outage, one for a message whose provider id was not recorded yet, and an
inbound SMS to a number nobody owned. The test process writes the messages through the
gateway's own services; the command reads and writes the same database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import pytest
from sqlalchemy import select

from gateway.domain.channels import Channel
from gateway.domain.messages import SendRequest
from gateway.domain.results import Accepted, Sent
from gateway.entry.bootstrap.api import bootstrap_api
from gateway.entry.migrations import upgrade_to_head
from gateway.services.clock import utcnow
from gateway.settings import Settings
from harness.servers import PostgresServer
from persistence.receipts import RECEIPTS
from persistence.rows import EVENTS, MESSAGES
from providers.webhooks import ReceivedWebhook
from providers.webhooks.apply import apply_received, keep_payload
from providers.webhooks.twilio import MESSAGES_ROUTE, STATUS_ROUTE
from tests.conftest import GatewayParts, fresh_postgres_url
from tests.integration.test_cli import cli_env, run_cli

FORM = "application/x-www-form-urlencoded"
OUTAGE = "OperationalError('connection to server at \"127.0.0.1\" failed: Connection refused')"


@dataclass
class World:
    container: GatewayParts
    env: dict[str, str]
    cwd: Path
    account: str
    account_id: UUID

    def replay(self, *args: str) -> tuple[int, list[str]]:
        """The exit code and the report (standard output; log lines go to standard error,
        and so does the message of a refused argument, which is added for those)."""
        proc = run_cli("replay-receipts", *args, env=self.env, cwd=self.cwd)
        lines = proc.stdout.splitlines()
        if proc.returncode == 2:
            lines += proc.stderr.splitlines()
        return proc.returncode, lines


@pytest.fixture(params=["postgresql", "sqlite"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    data = tmp_path / "data"
    data.mkdir()
    url = None
    if request.param == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = fresh_postgres_url(postgres)
    settings = Settings(database_url=url, data_dir=data)
    await upgrade_to_head(settings)
    container = GatewayParts(bootstrap_api(settings))
    name = "replay-" + uuid.uuid4().hex[:8]
    account, _ = await container.api_keys.create(name)
    try:
        yield World(container, cli_env(data, url), tmp_path, name, account.id)
    finally:
        await container.close()


async def accepted_sms(world: World, to: str) -> UUID:
    request = SendRequest(Channel.SMS, "+14155550100", to, body="kept for later")
    [outcome] = await world.container.sending.send(world.account_id, [request])
    assert isinstance(outcome, Accepted), outcome
    return outcome.message.id


async def handed_to_twilio(world: World, message_id: UUID, sid: str) -> None:
    """What a worker records once Twilio took the message."""
    lifecycle = world.container.lifecycle
    assert await lifecycle.claim_many([message_id], utcnow(), worker="test")
    [change] = await lifecycle.record_outcomes([Sent(message_id, "twilio", sid)], utcnow())
    assert change is not None


async def kept_status(world: World, sid: str, query: str) -> int:
    """A delivered callback the route could not apply (the database failed), kept raw."""
    body = urlencode({"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC1"})
    received = ReceivedWebhook(STATUS_ROUTE, FORM, query, body.encode())
    return await keep_payload(
        world.container.webhooks, "twilio", "failed", received.body, FORM, OUTAGE, received
    )


async def kept_inbound(world: World, sender: str, to: str) -> int:
    """An inbound SMS to a number nobody owns: the route's own path keeps it raw."""
    sid = "SM" + uuid.uuid4().hex
    body = urlencode({"MessageSid": sid, "From": sender, "To": to, "Body": "anyone there?"})
    received = ReceivedWebhook(MESSAGES_ROUTE, FORM, "", body.encode())
    adapter = world.container.webhook_adapters[MESSAGES_ROUTE]
    assert await apply_received(world.container.webhooks, adapter, received) == ["inbound_unowned"]
    async with world.container.engine.connect() as conn:
        found = await conn.scalar(
            select(RECEIPTS.c.id)
            .where(RECEIPTS.c.outcome == "unowned")
            .order_by(RECEIPTS.c.id.desc())
        )
    assert isinstance(found, int)
    return found


async def status_of(world: World, message_id: UUID) -> tuple[str, int]:
    """The message's status and how many delivery receipts its audit trail holds."""
    async with world.container.engine.connect() as conn:
        status = await conn.scalar(select(MESSAGES.c.status).where(MESSAGES.c.id == message_id))
        receipts = (
            await conn.execute(
                select(EVENTS.c.id).where(
                    EVENTS.c.message_id == message_id, EVENTS.c.kind == "delivery_receipt"
                )
            )
        ).all()
    return str(status), len(receipts)


async def replayed_at(world: World) -> dict[int, datetime | None]:
    async with world.container.engine.connect() as conn:
        rows = await conn.execute(
            select(RECEIPTS.c.id, RECEIPTS.c.replayed_at).where(RECEIPTS.c.payload.is_not(None))
        )
        return {row.id: row.replayed_at for row in rows}


async def inbound_count(world: World, sender: str) -> int:
    async with world.container.engine.connect() as conn:
        rows = await conn.execute(select(MESSAGES.c.id).where(MESSAGES.c.sender == sender))
        return len(rows.all())


def line_of(lines: list[str], receipt: int) -> str:
    [line] = [line for line in lines if line.startswith(f"receipt {receipt} ")]
    return line


def assert_report(lines: list[str], outcomes: dict[int, str], summary: str) -> None:
    """The replay's output: each receipt's line ends with its outcome, the last line sums up."""
    for receipt, outcome in outcomes.items():
        assert line_of(lines, receipt).endswith(f": {outcome}")
    assert lines[-1] == summary


async def test_kept_payloads_are_replayed_once_each_and_marked(world: World) -> None:
    # A callback that met the outage, for a message the provider took.
    delivered = await accepted_sms(world, "+14155550301")
    await handed_to_twilio(world, delivered, "SM" + "a" * 32)
    outage = await kept_status(world, "SM" + "a" * 32, f"mid={delivered.hex}")
    # A callback for a message whose provider id is not recorded yet.
    waiting = await accepted_sms(world, "+14155550302")
    early = await kept_status(world, "SM" + "b" * 32, "")
    # An inbound message to a number nobody owns yet.
    sender, ours = "+14155550303", "+14155550304"
    unowned = await kept_inbound(world, sender, ours)

    code, lines = world.replay("--dry-run")
    assert code == 0, lines
    assert_report(
        lines,
        {
            outage: "would replay (1 status report)",
            early: "would replay (1 status report)",
            unowned: "would replay (an inbound message)",
        },
        "dry run, nothing written: would replay 3, still failing 0",
    )
    assert await status_of(world, delivered) == ("SENT", 0)
    assert set((await replayed_at(world)).values()) == {None}

    code, lines = world.replay()
    assert code == 1, lines
    assert_report(
        lines,
        {outage: "applied", early: "unmatched", unowned: "unmatched"},
        "3 replayed: applied 1, duplicate 0, unmatched 2, still failing 0",
    )
    assert await status_of(world, delivered) == ("DELIVERED", 1)
    marks = await replayed_at(world)
    assert marks[outage] is not None and marks[early] is None and marks[unowned] is None
    # Replaying an unowned message that is still unowned keeps no second copy of it.
    assert set(marks) == {outage, early, unowned}

    # The message and the number exist now.
    await handed_to_twilio(world, waiting, "SM" + "b" * 32)
    added = run_cli("add-address", "--account", world.account, ours, env=world.env, cwd=world.cwd)
    assert added.returncode == 0, added.stderr

    code, lines = world.replay()
    assert code == 0, lines
    assert [line.rsplit(": ", 1)[1] for line in lines[:-1]] == ["applied", "applied"]
    assert lines[-1] == "2 replayed: applied 2, duplicate 0, unmatched 0, still failing 0"
    assert await status_of(world, waiting) == ("DELIVERED", 1)
    assert await inbound_count(world, sender) == 1
    assert None not in (await replayed_at(world)).values()

    # A second replay changes nothing, and says so.
    code, lines = world.replay()
    assert (code, lines) == (
        0,
        ["nothing to replay: no kept webhook payload is waiting for a replay"],
    )
    # One payload asked for by id is applied again, harmlessly.
    code, lines = world.replay("--id", str(outage))
    assert code == 0, lines
    assert line_of(lines, outage).endswith(": duplicate")
    assert await status_of(world, delivered) == ("DELIVERED", 1)
    code, lines = world.replay("--id", str(unowned))
    assert code == 0 and line_of(lines, unowned).endswith(": duplicate"), lines
    assert await inbound_count(world, sender) == 1


async def test_since_and_id_pick_payloads_and_bad_arguments_say_why(world: World) -> None:
    message = await accepted_sms(world, "+14155550311")
    await handed_to_twilio(world, message, "SM" + "c" * 32)
    kept = await kept_status(world, "SM" + "c" * 32, "")

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    code, lines = world.replay("--since", later)
    assert (code, lines) == (
        0,
        ["nothing to replay: no kept webhook payload is waiting for a replay"],
    )
    assert await status_of(world, message) == ("SENT", 0)

    for args, words in [
        (("--since", "yesterday"), "not an ISO 8601 time"),
        (("--id", "seven"), "not a receipt id"),
        (("--id", str(kept + 1000)), f"no kept webhook payload with id {kept + 1000}"),
    ]:
        code, lines = world.replay(*args)
        assert code == 2, lines
        assert any(words in line for line in lines), lines

    earlier = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    code, lines = world.replay("--since", earlier)
    assert code == 0 and line_of(lines, kept).endswith(": applied"), lines


async def test_payloads_that_cannot_be_replayed_still_fail_and_stay_unmarked(
    world: World,
) -> None:
    webhooks: Any = world.container.webhooks
    # Kept before its signature was checked: never applied without one.
    unverified = await keep_payload(
        webhooks, "twilio", "failed", b"MessageSid=SM1&MessageStatus=delivered", FORM, "x"
    )
    garbled = ReceivedWebhook(STATUS_ROUTE, FORM, "", b"MessageStatus=delivered")
    unparseable = await keep_payload(
        webhooks, "twilio", "failed", garbled.body, FORM, OUTAGE, garbled
    )
    code, lines = world.replay()
    assert code == 1, lines
    assert "still failing (kept without its endpoint" in line_of(lines, unverified)
    assert "still failing (unparseable: MessageSid is required)" in line_of(lines, unparseable)
    assert lines[-1] == "2 replayed: applied 0, duplicate 0, unmatched 0, still failing 2"
    assert set((await replayed_at(world)).values()) == {None}
