"""GraphQL input -> domain request."""

from __future__ import annotations

from collections.abc import Mapping
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


def send_request_from_coerced(data: Mapping[str, Any]) -> SendRequest:
    """The same request from graphql-core's coerced ``SendMessageInput`` value.

    graphql-core has already checked and coerced every field (enum member, parsed DateTime,
    JSON); keys are the GraphQL field names, and an omitted optional field is absent or None.
    """
    attachments = data.get("attachments")
    return SendRequest(
        channel=data["channel"],
        from_=data["from"],
        to=data["to"],
        body=data.get("body"),
        attachments=tuple(attachments) if attachments is not None else None,
        idempotency_key=data.get("idempotencyKey"),
        send_at=data.get("sendAt"),
        metadata=data.get("metadata"),
    )
