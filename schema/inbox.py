"""GraphQL types of inbox state: the result of marking a conversation read, and the live
changes of ``inboxChanges``."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gateway.domain.inbox import InboxChangeKind, InboxState
from schema.ids import encode_id
from schema.results import NotFound
from schema.types import Conversation

strawberry.enum(
    InboxChangeKind,
    name="InboxChangeKind",
    description=(
        "What changed a conversation's inbox state: READ, its read cursor was set\n"
        "(`markConversationRead`, from any tab); RECEIVED, an inbound message arrived."
    ),
)


@strawberry.type
class ConversationRead:
    conversation: Conversation


MarkConversationReadResult = Annotated[
    ConversationRead | NotFound, strawberry.union("MarkConversationReadResult")
]


@strawberry.type(
    description=(
        "A change of one conversation's inbox state, with that state as read after the change"
        "\ncommitted: the newest change a subscriber received always shows the current state."
    )
)
class InboxChange:
    conversation_id: strawberry.ID
    kind: InboxChangeKind
    message_id: strawberry.ID = strawberry.field(
        description="The message read up to (READ), or the message that arrived (RECEIVED)."
    )
    unread_count: int = strawberry.field(description="As `Conversation.unreadCount`.")
    last_read_message_id: strawberry.ID | None = strawberry.field(
        description="As `Conversation.lastReadMessageId`: the newest message marked read."
    )

    @classmethod
    def from_state(cls, state: InboxState) -> InboxChange:
        change = state.change
        return cls(
            conversation_id=strawberry.ID(encode_id("Conversation", change.conversation_id)),
            kind=change.kind,
            message_id=strawberry.ID(encode_id("Message", change.message_id)),
            unread_count=state.unread_count,
            last_read_message_id=(
                None
                if state.read_up_to is None
                else strawberry.ID(encode_id("Message", state.read_up_to))
            ),
        )
