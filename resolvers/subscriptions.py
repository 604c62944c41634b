"""Root subscription fields."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from uuid import UUID, uuid4

import strawberry
import structlog
from graphql import GraphQLError

from gateway.observability.metrics import SUBSCRIPTIONS_ACTIVE
from gateway.services.fanout import LiveItem, Rendered
from gateway.services.hub import CutOff, LiveEventsInterrupted, SubscriberTooSlow
from schema.context import context_of
from schema.errors import bad_input
from schema.ids import InvalidCursor, decode_event_cursor, decode_id
from schema.live import LiveSink, current_sink, shared_rendering
from schema.types import MessageEvent

log = structlog.get_logger(__name__)

CUT_OFF_CODES: dict[type[CutOff], str] = {
    SubscriberTooSlow: "SUBSCRIBER_TOO_SLOW",
    LiveEventsInterrupted: "LIVE_EVENTS_INTERRUPTED",
}


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
    sink = current_sink.get()
    stream = context.services.events.stream(
        account.id,
        after=cursor,
        conversation_id=conversation_filter(conversation_id),
        message_id=_filter(message_id, "Message"),
        shared=shared_rendering(info, sink) if sink is not None else None,
    )
    return _delivered(stream, sink)


def conversation_filter(public_id: strawberry.ID | None) -> UUID | None:
    return _filter(public_id, "Conversation")


def _filter(public_id: strawberry.ID | None, kind: str) -> UUID | None:
    if public_id is None:
        return None
    decoded = decode_id(public_id, kind)
    # An id that cannot exist matches nothing, exactly like another account's id: the
    # subscription stays open and silent either way.
    return decoded[1] if decoded else uuid4()


async def _delivered(
    stream: AsyncIterator[LiveItem], sink: LiveSink | None
) -> AsyncGenerator[MessageEvent, None]:
    """Events for graphql-core to execute, except those rendered in common: the sink sends
    those as they are, in their place in the sequence."""
    with live_subscription():
        async for item in stream:
            if isinstance(item, Rendered):
                assert sink is not None
                await sink.send(item.payload)
            else:
                yield MessageEvent.from_record(item)


@contextmanager
def live_subscription(resume: str | None = None) -> Iterator[None]:
    """Around a subscription's stream: counted as active while it runs, and ended by a
    cut-off with that cut-off's code (its message telling how to ``resume``, when the
    subscription has no cursor to resume from)."""
    SUBSCRIPTIONS_ACTIVE.inc()
    try:
        yield
    except CutOff as exc:
        # A documented end with its own code, not an unexpected error to mask and log with
        # a traceback: the client resubscribes from its last cursor.
        code = CUT_OFF_CODES.get(type(exc), "SUBSCRIBER_TOO_SLOW")
        log.info("subscription_cut_off", code=code)
        message = str(exc) if resume is None else f"{str(exc).partition(';')[0]}; {resume}"
        raise GraphQLError(message, extensions={"code": code}) from None
    finally:
        SUBSCRIPTIONS_ACTIVE.dec()
