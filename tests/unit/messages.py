"""Message records as the services see them, for tests that need one but care about few of its
fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from gateway.domain.channels import Channel, Direction
from gateway.domain.records import Message
from gateway.domain.statuses import MessageStatus


def outbound_message(**changes: Any) -> Message:
    """An outbound SMS being sent for the first time, in an account and conversation of its own;
    ``changes`` replace any of its fields."""
    now = datetime.now(UTC)
    fields: dict[str, Any] = dict(
        id=uuid4(),
        account_id=uuid4(),
        conversation_id=uuid4(),
        channel=Channel.SMS,
        direction=Direction.OUTBOUND,
        sender="+14155550100",
        recipient="+14155550101",
        body="x",
        attachments=(),
        status=MessageStatus.SENDING,
        attempts=1,
        segments=1,
        encoding="GSM7",
        created_at=now,
        updated_at=now,
    )
    return Message(**(fields | changes))
