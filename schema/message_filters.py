"""GraphQL inputs of the ``messages`` listing: its filter, its order, and their checks."""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime

import strawberry

from gateway.domain.channels import Channel, Direction
from gateway.domain.message_filters import MessageFilter as Filter
from gateway.domain.message_filters import MessageSort, TimeRange
from gateway.domain.search import SearchError, Term, parse
from gateway.domain.statuses import MessageStatus
from schema.errors import bad_input
from schema.ids import decode_uuid

strawberry.enum(
    MessageSort,
    name="MessageSort",
    description="The time `messages` are ordered by (the id breaks ties).",
)


@strawberry.enum(description="Which end of the list comes first.")
class SortOrder(enum.Enum):
    NEWEST_FIRST = "NEWEST_FIRST"
    OLDEST_FIRST = "OLDEST_FIRST"


@strawberry.input(description="A half-open time range: since <= t < until; either end open.")
class TimeRangeInput:
    since: datetime | None = None
    until: datetime | None = None


@strawberry.input(description="Every field given narrows the list (they combine with AND).")
class MessageFilter:
    status: list[MessageStatus] | None = strawberry.field(
        default=None, description="Any of these statuses."
    )
    channel: Channel | None = None
    direction: Direction | None = None
    from_: str | None = strawberry.field(default=None, name="from", description="The sender.")
    to: str | None = strawberry.field(default=None, description="The recipient.")
    conversation_id: strawberry.ID | None = None
    provider: str | None = strawberry.field(
        default=None, description="The vendor that carried it (e.g. twilio, sendgrid)."
    )
    created_at: TimeRangeInput | None = None
    updated_at: TimeRangeInput | None = None
    search: str | None = strawberry.field(
        default=None,
        description=(
            'Words in the body, all of them: `red "big dog" wor*` (a quoted phrase, a prefix).'
        ),
    )


def to_filter(given: MessageFilter | None, normalize: Callable[[str], str]) -> Filter:
    """The domain filter of ``given``; a GraphQL BAD_USER_INPUT error for what cannot be
    meant (an empty status list, an id that is no conversation's, an inverted range)."""
    if given is None:
        return Filter()
    if given.status is not None and not given.status:
        raise bad_input("`status` must name at least one status (leave it out for all)")
    conversation_id = None
    if given.conversation_id is not None:
        conversation_id = decode_uuid(given.conversation_id, "Conversation")
        if conversation_id is None:
            raise bad_input("`conversationId` is not a conversation id")
    where = Filter(
        statuses=frozenset(given.status or ()),
        channel=given.channel,
        direction=given.direction,
        sender=None if given.from_ is None else normalize(given.from_),
        recipient=None if given.to is None else normalize(given.to),
        conversation_id=conversation_id,
        provider=given.provider,
        created=_range("createdAt", given.created_at),
        updated=_range("updatedAt", given.updated_at),
        search=() if given.search is None else search_terms(given.search),
    )
    for field, problem in where.problems():
        raise bad_input(f"`{field}`: {problem}")
    return where


def search_terms(query: str) -> tuple[Term, ...]:
    try:
        return parse(query)
    except SearchError as exc:
        raise bad_input(f"`search`: {exc}") from exc


def _range(name: str, given: TimeRangeInput | None) -> TimeRange:
    if given is None:
        return TimeRange()
    for end in (given.since, given.until):
        if end is not None and end.tzinfo is None:
            raise bad_input(f"`{name}`: times need a UTC offset (e.g. 2026-11-27T10:00:00Z)")
    return TimeRange(given.since, given.until)
