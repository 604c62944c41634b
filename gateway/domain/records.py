"""Plain records the services work with; persistence maps rows to them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from gateway.domain.channels import Channel, Direction
from gateway.domain.statuses import MessageStatus


@dataclass(frozen=True, slots=True)
class DeliveryError:
    code: str
    description: str
    permanent: bool
    #: The provider refused the recipient as unsubscribed from it (Twilio 21610): the
    #: adapter says so in our terms, and the send's failure suppresses the recipient.
    recipient_unsubscribed: bool = False


@dataclass(frozen=True, slots=True)
class Conversation:
    id: UUID
    account_id: UUID
    participants: tuple[str, str]
    created_at: datetime
    last_message_at: datetime | None
    #: The newest message read; inbound messages after it are unread. None: nothing read.
    read_up_to: UUID | None = None


@dataclass(frozen=True, slots=True)
class Message:
    id: UUID
    account_id: UUID
    conversation_id: UUID
    channel: Channel
    direction: Direction
    sender: str
    recipient: str
    body: str | None
    attachments: tuple[str, ...]
    status: MessageStatus
    provider: str | None
    provider_message_id: str | None
    attempts: int
    segments: int | None
    encoding: str | None
    error: DeliveryError | None
    idempotency_key: str | None
    send_at: datetime | None
    next_attempt_at: datetime | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    #: Sent inside its recipient's quiet hours too (a transactional message).
    bypass_quiet_hours: bool = False
    #: An automatic answer to a recipient's keyword: sent although the recipient is
    #: suppressed (it confirms their opt-out). Never set through the API.
    suppression_exempt: bool = False


@dataclass(frozen=True, slots=True)
class MessageEvent:
    id: int
    account_id: UUID
    message_id: UUID
    conversation_id: UUID
    status: MessageStatus
    kind: str
    detail: dict[str, Any] | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Account:
    id: UUID
    name: str


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One keyset page of records, and whether more lie beyond it either way."""

    items: list[T]
    has_next: bool
    has_previous: bool
