"""What the use cases hand to their ports and get back: pure records, no I/O.

Outcomes of a delivery attempt, committed status changes, the results of accepting messages
and of applying provider reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.domain.messages import NormalizedMessage
from gateway.domain.pacing import Queued
from gateway.domain.records import DeliveryError, Message, MessageEvent
from gateway.domain.suppressions import SuppressionReason


@dataclass(frozen=True, slots=True)
class Change:
    """A committed status change: the message as it is now and the event that recorded it."""

    message: Message
    event: MessageEvent


@dataclass(frozen=True, slots=True)
class Sent:
    """The provider took the message. ``detail`` (for its audit trail) lists the vendors that
    failed before it in the same attempt, if any."""

    message_id: UUID
    provider: str
    provider_message_id: str
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: back to QUEUED, due again at ``next_attempt_at``. ``provider``:
    the vendor that may have taken it (an ambiguous attempt), which it is kept to from now on."""

    message_id: UUID
    error: DeliveryError
    next_attempt_at: datetime
    detail: dict[str, Any] | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A permanent failure or the last attempt spent: FAILED, dead-lettered."""

    message_id: UUID
    error: DeliveryError
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """Claimed but untried (no provider could take it): given back, the attempt not counted."""

    message_id: UUID
    next_attempt_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Claimed inside its recipient's quiet hours: SCHEDULED again until they end, untried
    (the attempt not counted). ``detail`` says why and until when, for its audit trail."""

    message_id: UUID
    until: datetime
    detail: dict[str, Any]


Outcome = Sent | Retry | Failure | Release | Hold


@dataclass(frozen=True, slots=True)
class Accepted:
    message: Message
    replayed: bool


@dataclass(frozen=True, slots=True)
class Conflict:
    reason: str
    original: Message | None


@dataclass(frozen=True, slots=True)
class Suppressed:
    """Refused at accept: the recipient is suppressed (since ``since``, for ``reason``)."""

    reason: SuppressionReason
    since: datetime


AcceptOutcome = Accepted | Conflict | Suppressed


@dataclass(frozen=True, slots=True)
class AcceptResult:
    outcomes: list[AcceptOutcome]
    """New messages only (replays excluded): what must be enqueued after commit."""
    created: list[Message]
    events: list[MessageEvent]
    """Conversations that already existed: their last activity moves forward after commit."""
    existing_conversations: set[UUID]


Item = tuple[UUID, NormalizedMessage]
"""One message to accept: the account it belongs to and its validated draft."""


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What became of one report: "applied" (with its event), "stale" (a late or out-of-order
    status, recorded as seen, nothing changed), "duplicate" or "unmatched" (no such message)."""

    outcome: str
    event: MessageEvent | None = None
    #: An applied report that took its message back to QUEUED (its provider failed it unsent
    #: for its sender's throughput): what to enqueue once the report has committed.
    requeued: Queued | None = None


@dataclass(frozen=True, slots=True)
class Unsettled:
    id: UUID
    provider: str
    provider_message_id: str
    #: Its last change: since when it has been waiting for its final status.
    updated_at: datetime
