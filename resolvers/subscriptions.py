"""Root subscription fields."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from uuid import UUID, uuid4

import strawberry

from gateway.domain import records
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
    """Validate, then hand back the stream.

    A plain coroutine, not a generator: an invalid argument then fails the subscription as a
    whole (a graphql-transport-ws ``error`` message) instead of as its first event.
    """
    context, account, _ = context_of(info)
    try:
        cursor = decode_event_cursor(after) if after is not None else None
    except InvalidCursor as exc:
        raise bad_input(f"invalid cursor: {exc}") from exc
    stream = context.container.events.stream(
        account.id,
        after=cursor,
        conversation_id=_filter(conversation_id, "Conversation"),
        message_id=_filter(message_id, "Message"),
    )
    return _counted(stream)


def _filter(public_id: strawberry.ID | None, kind: str) -> UUID | None:
    if public_id is None:
        return None
    decoded = decode_id(public_id, kind)
    # An id that cannot exist matches nothing, exactly like another account's id: the
    # subscription stays open and silent either way.
    return decoded[1] if decoded else uuid4()


async def _counted(
    stream: AsyncIterator[records.MessageEvent],
) -> AsyncGenerator[MessageEvent, None]:
    SUBSCRIPTIONS_ACTIVE.inc()
    try:
        async for event in stream:
            yield MessageEvent.from_record(event)
    finally:
        SUBSCRIPTIONS_ACTIVE.dec()
