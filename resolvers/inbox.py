"""Inbox state: marking a conversation read."""

from __future__ import annotations

import strawberry

from schema.context import context_of
from schema.ids import decode_uuid
from schema.inbox import ConversationRead, MarkConversationReadResult
from schema.results import NotFound
from schema.types import Conversation


async def mark_conversation_read(
    info: strawberry.Info, conversation_id: strawberry.ID, up_to: strawberry.ID | None = None
) -> MarkConversationReadResult:
    context, account, _ = context_of(info)
    conversation = decode_uuid(conversation_id, "Conversation")
    message = decode_uuid(up_to, "Message")
    if conversation is None:
        return NotFound(id=conversation_id)
    if up_to is not None and message is None:
        return NotFound(id=up_to)
    read = await context.services.queries.mark_read(account.id, conversation, message)
    if read is None:
        # Another account's conversation, or a message that is not in it.
        return NotFound(id=up_to or conversation_id)
    return ConversationRead(conversation=Conversation.from_record(read))
