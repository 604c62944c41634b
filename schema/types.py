"""GraphQL object types of the contract. They wrap domain records; related objects load lazily
through the request's DataLoaders."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON
from strawberry.types.field import StrawberryField

from gateway.domain import records
from gateway.domain.channels import Channel, Direction
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import SuppressionReason
from schema.context import context_of
from schema.ids import encode_event_cursor, encode_id, encode_id_cursor
from schema.message_pages import conversation_messages

_R = TypeVar("_R")


def _described_field(
    description: str,
) -> Callable[[Callable[..., Coroutine[Any, Any, _R]]], StrawberryField]:
    """``@strawberry.field(description=...)`` with the resolver's types kept.

    Strawberry types the decorator that call returns as ``Any``, which would leave the resolver
    untyped; handing the resolver over in the same call is typed, and builds the same field.
    """

    def field(resolver: Callable[..., Coroutine[Any, Any, _R]]) -> StrawberryField:
        return strawberry.field(resolver, description=description)

    return field


async def _referenced(loader: DataLoader[UUID, _R | None], key: UUID, missing: str) -> _R:
    """The record a visible record refers to: it is in the same account, so it is there."""
    found = await loader.load(key)
    if found is None:
        raise LookupError(missing)
    return found


# Registered on the domain enums themselves so resolvers can hand domain values straight through.
strawberry.enum(Channel, name="Channel")
strawberry.enum(Direction, name="Direction")
strawberry.enum(
    MessageStatus,
    name="MessageStatus",
    description=(
        "Lifecycle of a message. Outbound: SCHEDULED? -> QUEUED -> SENDING -> SENT -> DELIVERED,\n"
        "with UNDELIVERED, FAILED and CANCELED as the other terminal states. Inbound: RECEIVED.\n"
        "A status never moves backwards (a late SENT callback after DELIVERED changes nothing)."
    ),
)


strawberry.enum(
    SuppressionReason,
    name="SuppressionReason",
    description=(
        "Why a recipient is suppressed: their opt-out keyword (STOP_KEYWORD), a hard bounce,\n"
        "a spam report or unsubscribe (e-mail), the provider saying they unsubscribed, or the\n"
        "account adding them (API)."
    ),
)


class _Edge(Protocol):
    @property
    def cursor(self) -> str: ...


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, cursors: list[str], has_next: bool, has_previous: bool) -> PageInfo:
        """The page info of a page whose edges carry ``cursors``, in order."""
        return cls(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )

    @classmethod
    def of_page(cls, edges: Sequence[_Edge], page: records.Page[Any]) -> PageInfo:
        """The page info of ``page``, whose items became ``edges``."""
        return cls.of([e.cursor for e in edges], page.has_next, page.has_previous)


@strawberry.type
class DeliveryError:
    code: str
    description: str
    permanent: bool = strawberry.field(
        description="True when retrying cannot help (e.g. invalid recipient)."
    )

    @classmethod
    def from_record(cls, error: records.DeliveryError | None) -> DeliveryError | None:
        if error is None:
            return None
        return cls(code=error.code, description=error.description, permanent=error.permanent)


@strawberry.type
class Conversation(Node):
    id: strawberry.ID
    participants: list[str] = strawberry.field(
        description=(
            "The two normalized addresses (E.164 phone numbers or lower-cased e-mail), sorted."
        )
    )
    created_at: datetime
    last_message_at: datetime | None
    record: strawberry.Private[records.Conversation]
    last_read_message_id: strawberry.ID | None = strawberry.field(
        default=None, description="The newest message marked read; null: none yet."
    )
    matching_message: Message | None = strawberry.field(
        default=None,
        description="With `conversations(search:)`: its newest message that has the words.",
    )

    @classmethod
    def from_record(cls, conversation: records.Conversation) -> Conversation:
        return cls(
            id=strawberry.ID(encode_id("Conversation", conversation.id)),
            participants=list(conversation.participants),
            created_at=conversation.created_at,
            last_message_at=conversation.last_message_at,
            record=conversation,
            last_read_message_id=(
                None
                if conversation.read_up_to is None
                else strawberry.ID(encode_id("Message", conversation.read_up_to))
            ),
        )

    @strawberry.field
    async def message_count(self, info: strawberry.Info) -> int:
        _, _, loaders = context_of(info)
        return await loaders.message_count.load(self.record.id)

    @_described_field("Inbound messages after the read cursor (`markConversationRead`).")
    async def unread_count(self, info: strawberry.Info) -> int:
        _, _, loaders = context_of(info)
        return await loaders.unread_count.load(self.record.id)

    @_described_field("Oldest first by default; keyset cursors.")
    async def messages(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> MessageConnection:
        page = await conversation_messages(info, self.record, first, after, last, before)
        edges = [
            MessageEdge(cursor=encode_id_cursor("m", m.id), node=Message.from_record(m))
            for m in page.items
        ]
        return MessageConnection(edges=edges, page_info=PageInfo.of_page(edges, page))


@strawberry.type
class Message(Node):
    id: strawberry.ID
    channel: Channel
    direction: Direction
    from_: str = strawberry.field(name="from")
    to: str
    body: str | None
    attachments: list[str]
    status: MessageStatus
    provider: str | None = strawberry.field(
        description=(
            "Name of the provider that carried it (e.g. twilio, sendgrid, sandbox), or that may\n"
            "have taken it in an attempt that timed out: it is kept to that provider."
        )
    )
    provider_message_id: str | None
    attempts: int = strawberry.field(description="Provider calls made so far.")
    segments: int | None = strawberry.field(
        description=(
            "SMS/MMS only: billable segments and the encoding (GSM7 or UCS2) they were counted in."
        )
    )
    encoding: str | None
    error: DeliveryError | None
    idempotency_key: str | None
    send_at: datetime | None
    metadata: JSON | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = strawberry.field(
        description=(
            "When it left for its recipient: the provider's acceptance (outbound) or the "
            "sender's timestamp (inbound)."
        )
    )
    record: strawberry.Private[records.Message]

    @classmethod
    def from_record(cls, message: records.Message) -> Message:
        return cls(
            id=strawberry.ID(encode_id("Message", message.id)),
            channel=message.channel,
            direction=message.direction,
            from_=message.sender,
            to=message.recipient,
            body=message.body,
            attachments=list(message.attachments),
            status=message.status,
            provider=message.provider,
            provider_message_id=message.provider_message_id,
            attempts=message.attempts,
            segments=message.segments,
            encoding=message.encoding,
            error=DeliveryError.from_record(message.error),
            idempotency_key=message.idempotency_key,
            send_at=message.send_at,
            metadata=cast(JSON, message.metadata),
            created_at=message.created_at,
            updated_at=message.updated_at,
            sent_at=message.sent_at,
            record=message,
        )

    @strawberry.field
    async def conversation(self, info: strawberry.Info) -> Conversation:
        _, _, loaders = context_of(info)
        found = await _referenced(
            loaders.conversation,
            self.record.conversation_id,
            "conversation of a visible message is missing",
        )
        return Conversation.from_record(found)

    @_described_field("The audit trail, oldest first.")
    async def events(self, info: strawberry.Info) -> list[MessageEvent]:
        _, _, loaders = context_of(info)
        return [MessageEvent.from_record(e) for e in await loaders.events.load(self.record.id)]


@strawberry.type(
    description="One entry of a message's audit trail. `cursor` orders all events of an account."
)
class MessageEvent:
    id: strawberry.ID
    cursor: str
    message_id: strawberry.ID
    conversation_id: strawberry.ID
    status: MessageStatus
    kind: str = strawberry.field(
        description=(
            "What happened: e.g. accepted, enqueued, attempt, retry_scheduled, provider_accepted,"
            " delivery_receipt, dead_lettered, canceled, received."
        )
    )
    detail: JSON | None
    occurred_at: datetime
    record: strawberry.Private[records.MessageEvent]

    @classmethod
    def from_record(cls, event: records.MessageEvent) -> MessageEvent:
        return cls(
            id=strawberry.ID(f"evt_{event.id}"),
            cursor=encode_event_cursor(event.id),
            message_id=strawberry.ID(encode_id("Message", event.message_id)),
            conversation_id=strawberry.ID(encode_id("Conversation", event.conversation_id)),
            status=event.status,
            kind=event.kind,
            detail=cast(JSON, event.detail),
            occurred_at=event.occurred_at,
            record=event,
        )

    @strawberry.field
    async def message(self, info: strawberry.Info) -> Message:
        _, _, loaders = context_of(info)
        found = await _referenced(
            loaders.message, self.record.message_id, "message of a visible event is missing"
        )
        return Message.from_record(found)


@strawberry.type
class MessageEdge:
    cursor: str
    node: Message


@strawberry.type
class MessageConnection:
    edges: list[MessageEdge]
    page_info: PageInfo


@strawberry.type
class ConversationEdge:
    cursor: str
    node: Conversation


@strawberry.type
class ConversationConnection:
    edges: list[ConversationEdge]
    page_info: PageInfo
