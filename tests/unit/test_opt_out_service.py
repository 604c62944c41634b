"""Inbound keywords against in-memory ports: what the service suppresses, lifts and records
for each keyword and scope, and what it leaves alone. The SQL and the auto-reply's way through
the send path are tested against real databases in tests/integration/test_opt_outs.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID, uuid4

from gateway.domain.channels import Channel, Direction
from gateway.domain.opt_outs import DEFAULTS, KeywordKind, OptOutScope, OptOutSettings
from gateway.domain.records import Message, MessageEvent
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import (
    NewSuppression,
    Suppression,
    SuppressionReason,
)
from gateway.services.opt_outs import LIFTED_BY_RECIPIENT, OptOutService
from gateway.services.sending import SendService
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


def service(
    scope: OptOutScope = OptOutScope.SENDER,
) -> tuple[OptOutService, MemoryOptOuts, MemorySuppressions]:
    suppressions = MemorySuppressions()
    store = MemoryOptOuts(suppressions, replace(DEFAULTS, scope=scope))
    # Handling never sends: the answer is a step of its own, after the commit.
    return OptOutService(store, suppressions, cast(SendService, None)), store, suppressions


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
    handled = await opt_outs.handle(stop, NOW)
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
    await opt_outs.handle(inbound(account, "STOP"), NOW)
    assert len(suppressions.entries) == 1 and store.notes[-1][1]["created"] is False  # type: ignore[index]


async def test_with_the_account_scope_stop_covers_every_sender() -> None:
    opt_outs, _, suppressions = service(OptOutScope.ACCOUNT)
    await opt_outs.handle(inbound(uuid4(), "stop"), NOW)
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
    handled = await opt_outs.handle(inbound(account, "Unstop"), NOW)
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
    await opt_outs.handle(inbound(account, "start"), NOW)
    assert suppressions.entries == {}


async def test_help_changes_nothing_and_a_reply_turned_off_is_not_sent() -> None:
    opt_outs, store, suppressions = service()
    store.settings = replace(DEFAULTS, replies={**DEFAULTS.replies, KeywordKind.HELP: None})
    handled = await opt_outs.handle(inbound(uuid4(), "INFO"), NOW)
    assert handled is not None and handled.reply is None
    assert suppressions.entries == {}
    assert store.notes[-1] == ("help_requested", {"scope": "SENDER", "autoReply": False})
    assert await opt_outs.answer(handled) is None


async def test_other_messages_are_left_alone_mostly_without_reading_the_setting() -> None:
    opt_outs, store, suppressions = service()
    account = uuid4()
    assert await opt_outs.handle(inbound(account, "stop it"), NOW) is None
    assert store.reads == 1
    long = "Please stop sending me these reminders every single morning"
    for body in (long, None):
        assert await opt_outs.handle(inbound(account, body), NOW) is None
    email = inbound(account, "STOP", channel=Channel.EMAIL)
    assert await opt_outs.handle(email, NOW) is None
    assert store.reads == 1, "no setting read for what cannot be a keyword"
    assert suppressions.entries == {} and store.notes == []
