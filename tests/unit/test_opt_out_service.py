"""Inbound keywords against in-memory ports: what the service suppresses, lifts and records
for each keyword and scope, the answer it accepts in the same unit of work, and what it leaves
alone. The SQL and the auto-reply's way through the send path (and its failure) are tested
against real databases in tests/integration/test_opt_outs.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from gateway.domain.channels import Channel, Direction
from gateway.domain.messages import SendRequest
from gateway.domain.opt_outs import DEFAULTS, KeywordKind, OptOutScope, OptOutSettings
from gateway.domain.records import Message, MessageEvent
from gateway.domain.results import Accepted
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import (
    NewSuppression,
    Suppression,
    SuppressionReason,
)
from gateway.services.opt_outs import LIFTED_BY_RECIPIENT, OptOutService
from gateway.services.ports import UnitOfWork
from gateway.services.sending import SendOutcome, SendService
from tests.unit.test_services_on_ports import MemorySuppressions, message

OURS, OTHER, THEIRS = "+14155550100", "+14155550102", "+14155550101"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class MemoryOptOuts:
    def __init__(self, suppressions: MemorySuppressions, settings: OptOutSettings) -> None:
        self.suppressions = suppressions
        self.settings = settings
        self.reads = 0
        self.notes: list[tuple[str, dict[str, Any] | None]] = []

    async def opt_out_settings(self, account_id: UUID) -> OptOutSettings:
        self.reads += 1
        return self.settings

    async def set_opt_out_settings(
        self, account_id: UUID, settings: OptOutSettings, now: datetime
    ) -> None:
        self.settings = settings

    async def keyword_suppressions(
        self, account_id: UUID, address: str, sender: str | None
    ) -> list[Suppression]:
        return [
            s
            for s in self.suppressions.entries.values()
            if (s.account_id, s.address, s.reason)
            == (account_id, address, SuppressionReason.STOP_KEYWORD)
            and (sender is None or s.sender in (sender, None))
        ]

    async def note(
        self, inbound: Message, entries: Sequence[tuple[str, dict[str, Any] | None]], now: datetime
    ) -> list[MessageEvent]:
        self.notes.extend(entries)
        return [
            MessageEvent(
                n, inbound.account_id, inbound.id, inbound.conversation_id, inbound.status,
                kind, detail, now,
            )
            for n, (kind, detail) in enumerate(entries)
        ]  # fmt: skip


class Work:
    """A unit of work's outbox: what the service hands over to be published after the commit."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, events: Sequence[MessageEvent]) -> None:
        self.published.extend(event.kind for event in events)


class Answers:
    """The send path's accept inside a unit: records each request, accepts it (as a message
    with the answer's ``accepted`` event in the unit), or raises ``fail`` once."""

    def __init__(self) -> None:
        self.requests: list[SendRequest] = []
        self.fail: Exception | None = None

    async def accept_in(
        self, work: UnitOfWork, account_id: UUID, request: SendRequest
    ) -> SendOutcome:
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        self.requests.append(request)
        cast(Work, work).published.append("accepted")
        return Accepted(message(account_id, MessageStatus.QUEUED), replayed=False)


def service(
    scope: OptOutScope = OptOutScope.SENDER, answers: Answers | None = None
) -> tuple[OptOutService, MemoryOptOuts, MemorySuppressions]:
    suppressions = MemorySuppressions()
    store = MemoryOptOuts(suppressions, replace(DEFAULTS, scope=scope))
    sending = cast(SendService, answers or Answers())
    return OptOutService(store, suppressions, sending), store, suppressions


def unit() -> UnitOfWork:
    return cast(UnitOfWork, Work())


def inbound(
    account_id: UUID, body: str | None, to: str = OURS, channel: Channel = Channel.SMS
) -> Message:
    return replace(
        message(account_id, MessageStatus.RECEIVED),
        channel=channel,
        direction=Direction.INBOUND,
        sender=THEIRS,
        recipient=to,
        body=body,
    )


def keyword_entry(account_id: UUID, sender: str | None) -> NewSuppression:
    return NewSuppression(account_id, THEIRS, None, sender, SuppressionReason.STOP_KEYWORD)


async def test_stop_suppresses_the_sender_for_the_number_written_to_and_records_it() -> None:
    opt_outs, store, suppressions = service()
    account = uuid4()
    stop = inbound(account, " opt   OUT ")
    handled = await opt_outs.handle(stop, NOW, unit())
    assert handled is not None and handled.reply is not None
    [entry] = suppressions.entries.values()
    assert (entry.address, entry.channel, entry.sender, entry.reason) == (
        THEIRS,
        None,
        OURS,
        SuppressionReason.STOP_KEYWORD,
    )
    assert entry.detail == {"keyword": "OPT OUT", "inboundMessageId": "msg_" + stop.id.hex}
    assert [kind for kind, _ in store.notes] == ["keyword_received", "opted_out"]
    assert store.notes[1][1] == {
        "scope": "SENDER",
        "autoReply": True,
        "suppressionId": "sup_" + entry.id.hex,
        "created": True,
    }
    assert [e.kind for e in handled.events] == ["keyword_received", "opted_out"]
    # A second STOP finds it there.
    await opt_outs.handle(inbound(account, "STOP"), NOW, unit())
    assert len(suppressions.entries) == 1 and store.notes[-1][1]["created"] is False  # type: ignore[index]


async def test_with_the_account_scope_stop_covers_every_sender() -> None:
    opt_outs, _, suppressions = service(OptOutScope.ACCOUNT)
    await opt_outs.handle(inbound(uuid4(), "stop"), NOW, unit())
    [entry] = suppressions.entries.values()
    assert entry.sender is None


async def test_start_lifts_only_the_recipients_own_opt_outs_covering_the_number() -> None:
    opt_outs, store, suppressions = service()
    account = uuid4()
    own, _ = await suppressions.add(keyword_entry(account, OURS), NOW)
    everywhere, _ = await suppressions.add(keyword_entry(account, None), NOW)
    other_number, _ = await suppressions.add(keyword_entry(account, OTHER), NOW)
    by_account, _ = await suppressions.add(
        replace(keyword_entry(account, OURS), channel=Channel.SMS, reason=SuppressionReason.API),
        NOW,
    )
    handled = await opt_outs.handle(inbound(account, "Unstop"), NOW, unit())
    assert handled is not None
    assert set(suppressions.entries) == {other_number.id, by_account.id}
    reason = LIFTED_BY_RECIPIENT.format(keyword="UNSTOP")
    assert suppressions.removals == [(own.id, reason), (everywhere.id, reason)]
    assert store.notes[-1] == (
        "opted_in",
        {
            "scope": "SENDER",
            "autoReply": True,
            "lifted": ["sup_" + own.id.hex, "sup_" + everywhere.id.hex],
        },
    )


async def test_with_the_account_scope_start_lifts_every_opt_out_of_the_recipient() -> None:
    opt_outs, _, suppressions = service(OptOutScope.ACCOUNT)
    account = uuid4()
    for sender in (OURS, OTHER, None):
        await suppressions.add(keyword_entry(account, sender), NOW)
    await opt_outs.handle(inbound(account, "start"), NOW, unit())
    assert suppressions.entries == {}


async def test_the_answer_is_accepted_in_the_unit_after_the_keywords_entries() -> None:
    answers = Answers()
    opt_outs, _, _ = service(answers=answers)
    stop = inbound(uuid4(), "STOP")
    work = Work()
    handled = await opt_outs.handle(stop, NOW, cast(UnitOfWork, work))
    assert handled is not None and handled.reply is not None
    # Published after the commit in this order: the keyword, its change, then the answer.
    assert work.published == ["keyword_received", "opted_out", "accepted"]
    [request] = answers.requests
    assert (request.channel, request.from_, request.to) == (Channel.SMS, OURS, THEIRS)
    assert request.body == DEFAULTS.replies[KeywordKind.STOP]
    # One answer per inbound message, exempt from the opt-out it confirms and from quiet hours.
    assert request.idempotency_key == f"auto-reply:{stop.id.hex}"
    assert request.auto_reply is not None and request.auto_reply.in_reply_to == stop.id
    assert request.bypass_quiet_hours is True


async def test_a_failed_accept_of_the_answer_fails_the_whole_unit() -> None:
    """Nothing swallows it: the unit rolls back the keyword's change with it, so the webhook's
    next attempt does everything again, the answer included."""
    answers = Answers()
    answers.fail = ConnectionError("database gone")
    opt_outs, _, _ = service(answers=answers)
    with pytest.raises(ConnectionError):
        await opt_outs.handle(inbound(uuid4(), "STOP"), NOW, unit())
    assert answers.requests == []


async def test_help_changes_nothing_and_a_reply_turned_off_is_not_sent() -> None:
    answers = Answers()
    opt_outs, store, suppressions = service(answers=answers)
    store.settings = replace(DEFAULTS, replies={**DEFAULTS.replies, KeywordKind.HELP: None})
    handled = await opt_outs.handle(inbound(uuid4(), "INFO"), NOW, unit())
    assert handled is not None and handled.reply is None
    assert answers.requests == []
    assert suppressions.entries == {}
    assert store.notes[-1] == ("help_requested", {"scope": "SENDER", "autoReply": False})


async def test_other_messages_are_left_alone_mostly_without_reading_the_setting() -> None:
    opt_outs, store, suppressions = service()
    account = uuid4()
    assert await opt_outs.handle(inbound(account, "stop it"), NOW, unit()) is None
    assert store.reads == 1
    long = "Please stop sending me these reminders every single morning"
    for body in (long, None):
        assert await opt_outs.handle(inbound(account, body), NOW, unit()) is None
    email = inbound(account, "STOP", channel=Channel.EMAIL)
    assert await opt_outs.handle(email, NOW, unit()) is None
    assert store.reads == 1, "no setting read for what cannot be a keyword"
    assert suppressions.entries == {} and store.notes == []
