"""Row <-> record mapping, shared by the repositories."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Row, Table

from gateway.domain.channels import Channel, Direction
from gateway.domain.records import Conversation, DeliveryError, Message, MessageEvent
from gateway.domain.statuses import MessageStatus
from persistence.models import ConversationRow, MessageEventRow, MessageRow

MESSAGES = cast(Table, MessageRow.__table__)
CONVERSATIONS = cast(Table, ConversationRow.__table__)
EVENTS = cast(Table, MessageEventRow.__table__)


def message_from_row(row: Row[Any]) -> Message:
    m = row._mapping
    error = None
    if m["error_code"] is not None:
        error = DeliveryError(
            code=m["error_code"],
            description=m["error_description"] or "",
            permanent=bool(m["error_permanent"]),
        )
    return Message(
        id=m["id"],
        account_id=m["account_id"],
        conversation_id=m["conversation_id"],
        channel=Channel(m["channel"]),
        direction=Direction(m["direction"]),
        sender=m["sender"],
        recipient=m["recipient"],
        body=m["body"],
        attachments=tuple(m["attachments"] or ()),
        status=MessageStatus(m["status"]),
        provider=m["provider"],
        provider_message_id=m["provider_message_id"],
        attempts=m["attempts"],
        segments=m["segments"],
        encoding=m["encoding"],
        error=error,
        idempotency_key=m["idempotency_key"],
        send_at=m["send_at"],
        next_attempt_at=m["next_attempt_at"],
        metadata=m["metadata"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        sent_at=m["sent_at"],
        bypass_quiet_hours=bool(m["bypass_quiet_hours"]),
        suppression_exempt=bool(m["suppression_exempt"]),
    )


def message_to_row(message: Message) -> dict[str, Any]:
    """Column values for an INSERT (keys are column names, not attribute names)."""
    error = message.error
    return {
        "id": message.id,
        "account_id": message.account_id,
        "conversation_id": message.conversation_id,
        "channel": message.channel.value,
        "direction": message.direction.value,
        "sender": message.sender,
        "recipient": message.recipient,
        "body": message.body,
        "attachments": list(message.attachments),
        "status": message.status.value,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "attempts": message.attempts,
        "segments": message.segments,
        "encoding": message.encoding,
        "error_code": error.code if error else None,
        "error_description": error.description if error else None,
        "error_permanent": error.permanent if error else None,
        "idempotency_key": message.idempotency_key,
        "send_at": message.send_at,
        "next_attempt_at": message.next_attempt_at,
        "metadata": message.metadata,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "sent_at": message.sent_at,
        "bypass_quiet_hours": message.bypass_quiet_hours or None,
        "suppression_exempt": message.suppression_exempt or None,
    }


def conversation_from_row(row: Row[Any]) -> Conversation:
    m = row._mapping
    return Conversation(
        id=m["id"],
        account_id=m["account_id"],
        participants=(m["participant_a"], m["participant_b"]),
        created_at=m["created_at"],
        last_message_at=m["last_message_at"],
        read_up_to=m.get("read_up_to"),
    )


def event_from_row(row: Row[Any]) -> MessageEvent:
    m = row._mapping
    return event_from_mapping(m["id"], m)


def event_from_mapping(event_id: int, m: Mapping[Any, Any]) -> MessageEvent:
    """The audit-trail entry ``event_id`` whose other column values ``m`` holds, by name."""
    return MessageEvent(
        id=event_id,
        account_id=m["account_id"],
        message_id=m["message_id"],
        conversation_id=m["conversation_id"],
        status=MessageStatus(m["status"]),
        kind=m["kind"],
        detail=m["detail"],
        occurred_at=m["occurred_at"],
    )
