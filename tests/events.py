"""Audit-trail events for tests that need some to publish, fan out or deliver live."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from uuid import UUID, uuid4

from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus

_ids = count(1)


def accepted_event(
    account: UUID,
    event_id: int | None = None,
    *,
    message: UUID | None = None,
    conversation: UUID | None = None,
) -> MessageEvent:
    """The event acceptance records for a new message; what is not given is fresh (ids from
    one rising count, so events made later sort later)."""
    return MessageEvent(
        id=next(_ids) if event_id is None else event_id,
        account_id=account,
        message_id=message or uuid4(),
        conversation_id=conversation or uuid4(),
        status=MessageStatus.QUEUED,
        kind="accepted",
        detail=None,
        occurred_at=datetime.now(UTC),
    )
