"""GraphQL input -> domain request."""

from __future__ import annotations

from typing import Any

from gateway.domain.messages import SendRequest
from schema.results import SendMessageInput


def to_send_request(data: SendMessageInput) -> SendRequest:
    metadata: Any = data.metadata
    return SendRequest(
        channel=data.channel,
        from_=data.from_,
        to=data.to,
        body=data.body,
        attachments=tuple(data.attachments) if data.attachments is not None else None,
        idempotency_key=data.idempotency_key,
        send_at=data.send_at,
        metadata=metadata,
    )
