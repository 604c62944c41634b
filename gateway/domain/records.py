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


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message as stored. A field defaults only to its absence (None): a new message leaves
    out what it does not have yet, such as a provider, an error or an optional input. Its
    attempts are always stated, and so are its segments and encoding, which its body decides:
    a default would let a new message go without them unnoticed."""

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
    provider: str | None = None
    provider_message_id: str | None = None
    attempts: int
    segments: int | None
    encoding: str | None
    error: DeliveryError | None = None
    idempotency_key: str | None = None
    send_at: datetime | None = None
    next_attempt_at: datetime | None = None
    metadata: dict[str, Any] | None = None
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
