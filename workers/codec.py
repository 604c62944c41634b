"""Wire format of events on Redis pub/sub (compact JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

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


def decode_event(raw: bytes | str) -> MessageEvent:
    data: dict[str, Any] = orjson.loads(raw)
    return MessageEvent(
        id=int(data["id"]),
        account_id=UUID(hex=data["a"]),
        message_id=UUID(hex=data["m"]),
        conversation_id=UUID(hex=data["c"]),
        status=MessageStatus(data["s"]),
        kind=str(data["k"]),
        detail=data["d"],
        occurred_at=datetime.fromisoformat(data["t"]),
    )
