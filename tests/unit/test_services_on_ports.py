"""Use cases against in-memory ports: what a service decides, without a database.

The stores here keep messages in a dict and apply the status rules of the domain; the SQL that
does the same is tested against real databases in tests/integration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from gateway.domain.channels import Channel
from gateway.domain.inbox import InboxChange, InboxChangeKind
from gateway.domain.pacing import Queued
from gateway.domain.records import Message, MessageEvent, Page
from gateway.domain.reports import KIND_DELIVERY_RECEIPT, InboundMessage, StatusReport
from gateway.domain.results import Change, ReportResult
from gateway.domain.statuses import MessageStatus, can_cancel, can_retry
from gateway.domain.suppressions import NewSuppression, Suppression, SuppressionReason
from gateway.services import suppressions
from gateway.services.operator import Changed, OperatorService, Refused, Unknown
from gateway.services.ports import PageRequest
from gateway.services.suppressions import SuppressionService
from gateway.services.unit_of_work import Units
from gateway.services.webhooks import WebhookService
from tests.unit.messages import outbound_message

S = MessageStatus


def message(account_id: UUID, status: MessageStatus) -> Message:
    return outbound_message(account_id=account_id, status=status)


def event_of(message: Message, kind: str) -> MessageEvent:
    return MessageEvent(
        1, message.account_id, message.id, message.conversation_id, message.status, kind, None,
        datetime.now(UTC),
    )  # fmt: skip


class MemoryBroker:
    def __init__(self) -> None:
        self.enqueued: list[UUID] = []
        self.published: list[MessageEvent] = []
        self.inbox: list[InboxChange] = []

    async def enqueue(self, work: Sequence[Queued]) -> None:
        self.enqueued.extend(w.message_id for w in work)

    async def publish(self, events: Sequence[MessageEvent]) -> None:
        self.published.extend(events)

    async def publish_inbox(self, changes: Sequence[InboxChange]) -> None:
        self.inbox.extend(changes)


class MemoryLifecycle:
    """Cancel and retry as the operator uses them: by account, following the domain rules."""

    def __init__(self, *messages: Message) -> None:
        self.messages = {m.id: m for m in messages}

    async def cancel(
        self, account_id: UUID, message_id: UUID, now: datetime
    ) -> tuple[Change | None, Message | None]:
        return self._move(account_id, message_id, S.CANCELED, can_cancel(self._status(message_id)))

    async def retry(
        self, account_id: UUID, message_id: UUID, now: datetime
    ) -> tuple[Change | None, Message | None]:
        return self._move(account_id, message_id, S.QUEUED, can_retry(self._status(message_id)))

    def _status(self, message_id: UUID) -> MessageStatus:
        found = self.messages.get(message_id)
        return found.status if found is not None else S.QUEUED

    def _move(
        self, account_id: UUID, message_id: UUID, status: MessageStatus, allowed: bool
    ) -> tuple[Change | None, Message | None]:
        current = self.messages.get(message_id)
        if current is None or current.account_id != account_id:
            return None, None
        if not allowed:
            return None, current
        moved = self.messages[message_id] = replace(current, status=status)
        return Change(moved, event_of(moved, status.value.lower())), moved


class MemoryWebhookStore:
    def __init__(self, owners: dict[str, UUID] | None = None) -> None:
        self.owners = owners or {}
        self.inbound: dict[str, tuple[UUID, InboundMessage]] = {}
        self.reports: list[tuple[str, StatusReport]] = []

    async def owner_of(self, address: str) -> UUID | None:
        return self.owners.get(address)

    async def apply_reports(
        self, reports: Sequence[tuple[str, StatusReport]], now: datetime
    ) -> list[ReportResult]:
        results = []
        for source, report in reports:
            if any(r.dedupe_key == report.dedupe_key for _, r in self.reports):
                results.append(ReportResult("duplicate"))
                continue
            self.reports.append((source, report))
            if report.message_id is None:
                results.append(ReportResult("unmatched"))
                continue
            account = uuid4()
            delivered = replace(message(account, S.DELIVERED), id=report.message_id)
            results.append(ReportResult("applied", event_of(delivered, report.kind)))
        return results

    async def receive(
        self, account_id: UUID, inbound: InboundMessage, now: datetime
    ) -> Change | None:
        if inbound.dedupe_key in self.inbound:
            return None
        self.inbound[inbound.dedupe_key] = (account_id, inbound)
        stored = message(account_id, S.RECEIVED)
        return Change(stored, event_of(stored, "received"))


def inbound(recipient: str = "+14155550199") -> InboundMessage:
    return InboundMessage(
        channel=Channel.SMS, sender="+14155550100", recipient=recipient, body="hi",
        attachments=(), provider="twilio", provider_message_id="SM1", sent_at=None,
    )  # fmt: skip


def report(message_id: UUID | None, key: str) -> StatusReport:
    return StatusReport(
        provider="twilio", provider_message_id="SM1", message_id=message_id,
        status=S.DELIVERED, kind=KIND_DELIVERY_RECEIPT, dedupe_key=key, error=None, detail={},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("action", "before", "after", "enqueues"),
    [
        # A retried message is work again: it goes to the workers.
        ("retry", S.FAILED, S.QUEUED, True),
        # A canceled one only tells the subscribers.
        ("cancel", S.QUEUED, S.CANCELED, False),
    ],
)
async def test_a_change_is_published_and_enqueued_only_when_it_is_work(
    action: str, before: S, after: S, enqueues: bool
) -> None:
    account = uuid4()
    changing = message(account, before)
    broker = MemoryBroker()
    operator = OperatorService(MemoryLifecycle(changing), broker)
    outcome = await getattr(operator, action)(account, changing.id)
    assert isinstance(outcome, Changed) and outcome.message.status == after
    assert broker.enqueued == ([changing.id] if enqueues else [])
    assert [e.message_id for e in broker.published] == [changing.id]


async def test_cancel_changes_nothing_it_may_not_and_enqueues_nothing() -> None:
    account = uuid4()
    delivered = message(account, S.DELIVERED)
    broker = MemoryBroker()
    operator = OperatorService(MemoryLifecycle(delivered), broker)
    assert await operator.cancel(account, delivered.id) == Refused(delivered)
    assert await operator.cancel(uuid4(), delivered.id) == Unknown(), "another account's"
    assert broker.enqueued == [] and broker.published == []


async def test_inbound_goes_to_the_address_owner_else_the_default_else_nowhere() -> None:
    owner, fallback = uuid4(), uuid4()
    store, broker = MemoryWebhookStore({"+14155550199": owner}), MemoryBroker()
    assert await WebhookService(store, broker).receive(inbound()) == "stored"
    assert await WebhookService(store, broker).receive(inbound("+14155550198")) == "unowned"
    embedded = WebhookService(store, broker, default_owner=lambda: fallback)
    assert await embedded.receive(inbound("+14155550198")) == "stored"
    assert {account for account, _ in store.inbound.values()} == {owner, fallback}
    assert len(broker.published) == 2
    # Each is unread: the inbox watchers of its account hear of it.
    assert [(c.account_id, c.kind, c.message_id) for c in broker.inbox] == [
        (owner, InboxChangeKind.RECEIVED, broker.published[0].message_id),
        (fallback, InboxChangeKind.RECEIVED, broker.published[1].message_id),
    ]
    assert [c.conversation_id for c in broker.inbox] == [
        e.conversation_id for e in broker.published
    ]


async def test_the_same_inbound_message_is_stored_once_per_recipient() -> None:
    store, broker = MemoryWebhookStore(), MemoryBroker()
    service = WebhookService(store, broker, default_owner=uuid4)
    assert await service.receive(inbound()) == "stored"
    assert await service.receive(inbound()) == "duplicate"
    assert await service.receive(inbound("+14155550198")) == "stored"
    assert sorted(store.inbound) == [
        "twilio:inbound:+14155550198:SM1",
        "twilio:inbound:+14155550199:SM1",
    ]
    assert len(broker.published) == 2
    assert len(broker.inbox) == 2, "a duplicate is no new unread message"


async def test_reports_are_counted_and_only_applied_ones_published() -> None:
    store, broker = MemoryWebhookStore(), MemoryBroker()
    service = WebhookService(store, broker)
    known = uuid4()
    outcome = await service.apply_reports(
        "twilio", [report(known, "a"), report(None, "b"), report(known, "a")]
    )
    assert (len(outcome.applied), outcome.unmatched, outcome.duplicates) == (1, 1, 1)
    assert [e.message_id for e in broker.published] == [known]
    assert [source for source, _ in store.reports] == ["twilio", "twilio"]


class DownQueue(MemoryBroker):
    async def enqueue(self, work: Sequence[Queued]) -> None:
        raise ConnectionError("redis is down")


async def test_a_retry_whose_enqueue_fails_is_still_done_and_published() -> None:
    """The retry committed: the sweeper enqueues it later, so the caller is told it happened."""
    account = uuid4()
    failed = message(account, S.FAILED)
    broker = DownQueue()
    outcome = await OperatorService(MemoryLifecycle(failed), broker).retry(account, failed.id)
    assert isinstance(outcome, Changed) and outcome.message.status == S.QUEUED
    assert [e.message_id for e in broker.published] == [failed.id]


class MemorySuppressions:
    def __init__(self) -> None:
        self.entries: dict[UUID, Suppression] = {}
        self.removals: list[tuple[UUID, str | None]] = []

    async def add(self, new: NewSuppression, now: datetime) -> tuple[Suppression, bool]:
        for entry in self.entries.values():
            same = (entry.account_id, entry.address, entry.channel, entry.sender)
            if same == (new.account_id, new.address, new.channel, new.sender):
                return entry, False
        entry = Suppression(
            uuid4(), new.account_id, new.address, new.channel, new.sender, new.reason,
            new.detail, now,
        )  # fmt: skip
        self.entries[entry.id] = entry
        return entry, True

    async def get(self, account_id: UUID, suppression_id: UUID) -> Suppression | None:
        found = self.entries.get(suppression_id)
        return found if found is not None and found.account_id == account_id else None

    async def remove(
        self, suppression: Suppression, removal_reason: str | None, now: datetime
    ) -> bool:
        if self.entries.pop(suppression.id, None) is None:
            return False
        self.removals.append((suppression.id, removal_reason))
        return True

    async def page(
        self, account_id: UUID, request: PageRequest, *, address: str | None
    ) -> Page[Suppression]:
        found = [e for e in self.entries.values() if address in (None, e.address)]
        return Page(found[: request.first], len(found) > request.first, request.after is not None)


def suppression_service() -> tuple[SuppressionService, MemorySuppressions]:
    store = MemorySuppressions()
    return SuppressionService(store, Units(MemoryBroker()), region="US"), store


async def test_an_added_suppression_is_normalized_and_kept_once_per_scope() -> None:
    service, _ = suppression_service()
    account = uuid4()
    first = await service.add(account, "(415) 555-0101", channel=None, sender=None, note="n")
    assert isinstance(first, suppressions.Added) and first.created
    assert first.suppression.address == "+14155550101"
    assert first.suppression.reason is SuppressionReason.API
    assert first.suppression.detail == {"note": "n"}
    again = await service.add(account, "+1 415 555 0101", channel=None, sender=None, note=None)
    assert again == suppressions.Added(first.suppression, created=False)
    refused = await service.add(account, "x", channel=Channel.EMAIL, sender="y", note=None)
    assert isinstance(refused, suppressions.Refused)
    assert [p.field for p in refused.problems] == ["address", "from"]
    for note in ("a\x00b", "\ud800", "n" * 1001):
        unstorable = await service.add(
            account, "+14155550102", channel=None, sender=None, note=note
        )
        assert isinstance(unstorable, suppressions.Refused), note
        assert [p.field for p in unstorable.problems] == ["note"]
    assert await service.page(account, PageRequest(10), address="not one") is None
    page = await service.page(account, PageRequest(10), address="415-555-0101")
    assert page is not None and page.items == [first.suppression]


async def test_a_recipients_own_stop_is_removed_only_with_a_reason() -> None:
    service, store = suppression_service()
    account = uuid4()
    stop, _ = await store.add(
        NewSuppression(account, "+14155550101", None, None, SuppressionReason.STOP_KEYWORD),
        datetime.now(UTC),
    )
    assert await service.remove(account, stop.id, "  ") == suppressions.ReasonRequired(stop)
    unstorable = await service.remove(account, stop.id, "why\x00")
    assert isinstance(unstorable, suppressions.Refused)
    assert [p.field for p in unstorable.problems] == ["reason"]
    assert await service.remove(uuid4(), stop.id, "why") == suppressions.Unknown()
    assert await service.remove(account, stop.id, " asked us ") == suppressions.Removed(stop)
    assert store.removals == [(stop.id, "asked us")]
    assert await service.remove(account, stop.id, "again") == suppressions.Unknown()

    mine, _ = await store.add(
        NewSuppression(account, "a@example.com", None, None, SuppressionReason.API),
        datetime.now(UTC),
    )
    assert await service.remove(account, mine.id, None) == suppressions.Removed(mine)
    assert store.removals[-1] == (mine.id, None)
