"""Message lifecycle: which status changes are legal, and on which path.

Provider callbacks arrive late, duplicated and out of order, so the normal flow only ever
moves forward in rank; the ways back to QUEUED are explicit, separate operations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType


class MessageStatus(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    SENDING = "SENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    UNDELIVERED = "UNDELIVERED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    RECEIVED = "RECEIVED"


TERMINAL: frozenset[MessageStatus] = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.FAILED,
        MessageStatus.CANCELED,
        MessageStatus.RECEIVED,
    }
)

_RANK = MappingProxyType(
    {
        MessageStatus.SCHEDULED: 0,
        MessageStatus.QUEUED: 1,
        MessageStatus.SENDING: 2,
        MessageStatus.SENT: 3,
        **{status: 4 for status in TERMINAL},
    }
)

# Deliberately narrower than "any higher rank": e.g. QUEUED -> SENT would mean a provider
# reported on a message we never handed to it, which is a bug worth refusing.
_FORWARD: MappingProxyType[MessageStatus, frozenset[MessageStatus]] = MappingProxyType(
    {
        MessageStatus.SCHEDULED: frozenset({MessageStatus.QUEUED, MessageStatus.CANCELED}),
        MessageStatus.QUEUED: frozenset(
            {MessageStatus.SENDING, MessageStatus.CANCELED, MessageStatus.FAILED}
        ),
        MessageStatus.SENDING: frozenset(
            {
                MessageStatus.SENT,
                MessageStatus.DELIVERED,
                MessageStatus.UNDELIVERED,
                MessageStatus.FAILED,
            }
        ),
        # DELIVERED may overtake SENT, so SENT is not required before a final outcome.
        MessageStatus.SENT: frozenset(
            {MessageStatus.DELIVERED, MessageStatus.UNDELIVERED, MessageStatus.FAILED}
        ),
    }
)


def rank(status: MessageStatus) -> int:
    return _RANK[status]


def can_advance(current: MessageStatus, new: MessageStatus) -> bool:
    return new in _FORWARD.get(current, frozenset())


def can_requeue(current: MessageStatus) -> bool:
    # Only a send attempt that hit a transient error goes back; anything later has left our hands.
    return current == MessageStatus.SENDING


def can_requeue_unsent(current: MessageStatus) -> bool:
    # The one way back from SENT: the provider reports it failed the message without sending
    # it, because the sender went faster than its throughput (it sat too long in the
    # provider's queue). Nothing reached the recipient, so it may go again. Any other late
    # failure of a SENT message is final. The report can overtake the worker's own record of
    # the send (the message still SENDING): the same holds, and the worker's late record
    # leaves the requeued message's status alone.
    return current in (MessageStatus.SENDING, MessageStatus.SENT)


def can_retry(current: MessageStatus) -> bool:
    return current == MessageStatus.FAILED


def can_cancel(current: MessageStatus) -> bool:
    return current in (MessageStatus.SCHEDULED, MessageStatus.QUEUED)


# What a provider's status report does to a message, decided from the status the message has
# when the report is applied. Persistence executes the decision; it decides nothing itself.


@dataclass(frozen=True, slots=True)
class Advance:
    """The report moves the message forward, to ``to``."""

    to: MessageStatus


@dataclass(frozen=True, slots=True)
class Record:
    """The report moves no status (engagement, a deferral, a vendor status that stands for
    none of ours): it joins the audit trail at the status the message has."""


@dataclass(frozen=True, slots=True)
class Stale:
    """A late, repeated or out-of-order status: nothing changes and no event is written (the
    report still counts as seen, so its redelivery is a duplicate)."""


@dataclass(frozen=True, slots=True)
class Requeue:
    """The provider failed the message unsent because its sender went faster than the
    provider's throughput: back to QUEUED for another attempt once the sender's pause is over,
    the attempt not counted (``reason`` goes into the audit trail)."""

    reason: str


ReportDecision = Advance | Record | Stale | Requeue

THROUGHPUT_REQUEUE_REASON = (
    "the provider failed it unsent: its sender went faster than the provider's throughput"
)


def decide_report(
    current: MessageStatus, reported: MessageStatus | None, *, throughput_refusal: bool = False
) -> ReportDecision:
    """What a report of ``reported`` does to a message that is ``current`` now.

    Callbacks arrive duplicated and out of order, so a report only ever moves a message along
    the forward table: a SENT arriving after DELIVERED, a FAILED after DELIVERED, a second
    DELIVERED, all are stale rather than moving a final status or going backwards.

    The one exception: a FAILED that the provider marks as a throughput refusal (it never
    sent the message) takes a SENT message (or a SENDING one whose send the worker has not
    recorded yet) back to QUEUED (``can_requeue_unsent``). From any other status it is an
    ordinary failure report.
    """
    if reported is None:
        return Record()
    if throughput_refusal and reported == MessageStatus.FAILED and can_requeue_unsent(current):
        return Requeue(THROUGHPUT_REQUEUE_REASON)
    if can_advance(current, reported):
        return Advance(reported)
    return Stale()
