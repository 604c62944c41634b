"""Root subscription fields."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from gateway.observability.metrics import SUBSCRIPTIONS_ACTIVE
from resolvers.errors import bad_input
from schema.context import context_of
from schema.ids import InvalidCursor, decode_event_cursor, decode_id
from schema.types import MessageEvent


async def message_events(
    info: strawberry.Info,
    conversation_id: strawberry.ID | None = None,
    message_id: strawberry.ID | None = None,
    after: str | None = None,
) -> AsyncGenerator[MessageEvent, None]:
    context, account, _ = context_of(info)
    try:
        cursor = decode_event_cursor(after) if after is not None else None
    except InvalidCursor as exc:
        raise bad_input(f"invalid cursor: {exc}") from exc
    conversation = decode_id(conversation_id, "Conversation") if conversation_id else None
    message = decode_id(message_id, "Message") if message_id else None
    if (conversation_id and conversation is None) or (message_id and message is None):
        # An id that cannot exist: nothing will ever match, same as another account's id.
        return
    stream = context.container.events.stream(
        account.id,
        after=cursor,
        conversation_id=conversation[1] if conversation else None,
        message_id=message[1] if message else None,
    )
    SUBSCRIPTIONS_ACTIVE.inc()
    try:
        async for event in stream:
            yield MessageEvent.from_record(event)
    finally:
        SUBSCRIPTIONS_ACTIVE.dec()
