"""Inbox state: marking a conversation read, and watching inbox changes live."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import strawberry

from gateway.domain.inbox import InboxState
from resolvers.subscriptions import conversation_filter, live_subscription
from schema.context import context_of
from schema.ids import decode_uuid
from schema.inbox import ConversationRead, InboxChange, MarkConversationReadResult
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
    read = await context.services.inbox.mark_read(account.id, conversation, message)
    if read is None:
        # Another account's conversation, or a message that is not in it.
        return NotFound(id=up_to or conversation_id)
    return ConversationRead(conversation=Conversation.from_record(read))


async def inbox_changes(
    info: strawberry.Info, conversation_id: strawberry.ID | None = None
) -> AsyncGenerator[InboxChange, None]:
    """A plain coroutine handing back the stream, as ``messageEvents``."""
    context, account, _ = context_of(info)
    states = context.services.inbox.changes(
        account.id, conversation_id=conversation_filter(conversation_id)
    )
    return _delivered(states)


async def _delivered(states: AsyncIterator[InboxState]) -> AsyncGenerator[InboxChange, None]:
    # No cursor to resume from: the state is in the conversations, read again.
    with live_subscription(resume="resubscribe, then read the conversations again"):
        async for state in states:
            yield InboxChange.from_state(state)
