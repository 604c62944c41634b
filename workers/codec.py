"""Wire format of events and inbox changes on Redis pub/sub (compact JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

import orjson

from gateway.domain.inbox import InboxChange, InboxChangeKind
from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus


def encode_event(event: MessageEvent) -> bytes:
    return orjson.dumps(
        {
            "id": event.id,
            "a": event.account_id.hex,
            "m": event.message_id.hex,
            "c": event.conversation_id.hex,
            "s": event.status.value,
            "k": event.kind,
            "d": event.detail,
            "t": event.occurred_at.isoformat(),
        }
    )


_STATUSES: Final = {s.value: s for s in MessageStatus}

# The same ids come by again and again (an account's id in each of its events, a message's in
# each of its four or so events): parsing a UUID costs more than looking it up.
_IDS: dict[str, UUID] = {}
_IDS_MAX: Final = 4096


def _uuid(text: str) -> UUID:
    found = _IDS.get(text)
    if found is None:
        found = UUID(hex=text)
        if len(_IDS) >= _IDS_MAX:
            _IDS.clear()
        _IDS[text] = found
    return found


def decode_event(raw: bytes | str) -> MessageEvent:
    data: dict[str, Any] = orjson.loads(raw)
    status = _STATUSES.get(data["s"])
    return MessageEvent(
        id=int(data["id"]),
        account_id=_uuid(data["a"]),
        message_id=_uuid(data["m"]),
        conversation_id=_uuid(data["c"]),
        status=MessageStatus(data["s"]) if status is None else status,
        kind=str(data["k"]),
        detail=data["d"],
        occurred_at=datetime.fromisoformat(data["t"]),
    )


def encode_inbox_change(change: InboxChange) -> bytes:
    return orjson.dumps(
        {
            "a": change.account_id.hex,
            "c": change.conversation_id.hex,
            "k": change.kind.value,
            "m": change.message_id.hex,
        }
    )


def decode_inbox_change(raw: bytes | str) -> InboxChange:
    data: dict[str, Any] = orjson.loads(raw)
    return InboxChange(
        account_id=_uuid(data["a"]),
        conversation_id=_uuid(data["c"]),
        kind=InboxChangeKind(data["k"]),
        message_id=UUID(hex=data["m"]),
    )


def redis_text(value: bytes | str) -> str:
    """A Redis reply item as text (clients without ``decode_responses`` give bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
