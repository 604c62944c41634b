"""Keyset-paginated lists: conversations, a conversation's messages, dead letters."""

from __future__ import annotations

from typing import Any

import strawberry

from gateway.domain.addresses import AddressError, normalize_email, normalize_number
from gateway.domain.message_filters import MessageSort
from gateway.domain.search import SearchError, conversation_search
from gateway.services.ports import ConversationFilter, PageRequest
from schema.context import context_of
from schema.errors import bad_input
from schema.ids import (
    InvalidCursor,
    decode_time_cursor,
    encode_time_cursor,
)
from schema.message_filters import MessageFilter, SortOrder, to_filter
from schema.message_pages import page_size
from schema.types import (
    Conversation,
    ConversationConnection,
    ConversationEdge,
    Message,
    MessageConnection,
    MessageEdge,
    PageInfo,
)


def time_cursor(tag: str, cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        return decode_time_cursor(tag, cursor)
    except InvalidCursor as exc:
        raise bad_input(f"invalid cursor: {exc}") from exc


async def conversations(
    info: strawberry.Info,
    first: int | None = None,
    after: str | None = None,
    participant: str | None = None,
    search: str | None = None,
) -> ConversationConnection:
    context, account, _ = context_of(info)
    size = page_size(first)
    normalized = None
    if participant is not None:
        normalized = normalize_participant(participant, context.services.default_phone_region)
        if normalized is None:
            return ConversationConnection(edges=[], page_info=PageInfo.of([], False, False))
    wanted = None
    if search is not None:
        try:
            wanted = conversation_search(search)
        except SearchError as exc:
            raise bad_input(f"`search`: {exc}") from exc
    queries = context.services.queries
    page = await queries.conversations_page(
        account.id,
        ConversationFilter(normalized, wanted),
        PageRequest(size, time_cursor("c", after)),
    )
    matches = {}
    if wanted is not None:
        matches = await queries.latest_matches(account.id, [c.id for c in page.items], wanted.terms)
    edges = []
    for c in page.items:
        node = Conversation.from_record(c)
        if c.id in matches:
            node.matching_message = Message.from_record(matches[c.id])
        cursor = encode_time_cursor("c", c.last_message_at or c.created_at, c.id)
        edges.append(ConversationEdge(cursor=cursor, node=node))
    return ConversationConnection(edges=edges, page_info=PageInfo.of_page(edges, page))


async def messages(
    info: strawberry.Info,
    filter: MessageFilter | None = None,
    first: int | None = None,
    after: str | None = None,
    sort_by: MessageSort = MessageSort.CREATED_AT,
    order: SortOrder = SortOrder.NEWEST_FIRST,
) -> MessageConnection:
    context, account, _ = context_of(info)
    size = page_size(first)
    region = context.services.default_phone_region
    where = to_filter(filter, lambda raw: normalize_participant(raw, region) or raw)
    # The cursor names its order: one from another order would skip or repeat messages.
    tag = "m" + ("u" if sort_by == MessageSort.UPDATED_AT else "c") + order.value[0].lower()
    request = PageRequest(size, time_cursor(tag, after), descending=order == SortOrder.NEWEST_FIRST)
    page = await context.services.queries.filtered_messages_page(
        account.id, where, request, sort=sort_by
    )
    edges = [
        MessageEdge(
            cursor=encode_time_cursor(
                tag, m.updated_at if sort_by == MessageSort.UPDATED_AT else m.created_at, m.id
            ),
            node=Message.from_record(m),
        )
        for m in page.items
    ]
    return MessageConnection(edges=edges, page_info=PageInfo.of_page(edges, page))


async def dead_letters(
    info: strawberry.Info, first: int | None = None, after: str | None = None
) -> MessageConnection:
    context, account, _ = context_of(info)
    size = page_size(first)
    page = await context.services.queries.dead_letters_page(
        account.id, PageRequest(size, time_cursor("d", after))
    )
    edges = [
        MessageEdge(cursor=encode_time_cursor("d", m.updated_at, m.id), node=Message.from_record(m))
        for m in page.items
    ]
    return MessageConnection(edges=edges, page_info=PageInfo.of_page(edges, page))


def normalize_participant(raw: str, region: str) -> str | None:
    """The participant filter matches however the address is written; None when ``raw`` is
    no address at all (it then matches nothing, which is the honest answer)."""
    try:
        return normalize_email(raw) if "@" in raw else normalize_number(raw, region)
    except AddressError:
        return None
