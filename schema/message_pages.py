"""A conversation's messages, one keyset page at a time: the ``Conversation.messages`` field;
and the size of a page, which every paged field takes the same way.

Apart from ``schema.types``, which calls it: this module hands back domain records and builds
no GraphQL object, so it never needs the types that call it.
"""

from __future__ import annotations

import strawberry

from gateway.domain.records import Conversation, Message, Page
from gateway.services.ports import TwoWayPageRequest
from schema.context import context_of
from schema.errors import bad_input, check_page_size
from schema.ids import InvalidCursor, decode_id_cursor

DEFAULT_PAGE = 50


def page_size(first: int | None) -> int:
    """The size of the page a ``first`` argument asks for: checked, or the default when not
    given."""
    check_page_size("first", first)
    return DEFAULT_PAGE if first is None else first


async def conversation_messages(
    info: strawberry.Info,
    conversation: Conversation,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Page[Message]:
    context, account, _ = context_of(info)
    check_page_size("first", first)
    check_page_size("last", last)
    if first is not None and last is not None:
        raise bad_input("pass either `first` or `last`, not both")
    try:
        after_id = decode_id_cursor("m", after) if after is not None else None
        before_id = decode_id_cursor("m", before) if before is not None else None
    except InvalidCursor as exc:
        raise bad_input(f"invalid cursor: {exc}") from exc
    if first is None and last is None:
        first = DEFAULT_PAGE
    return await context.services.queries.messages_page(
        account.id, conversation.id, TwoWayPageRequest(first, after_id, last, before_id)
    )
