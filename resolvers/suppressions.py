"""Root fields of suppressions: the list, add one, remove one."""

from __future__ import annotations

import strawberry

from gateway.domain.records import Page
from gateway.services.ports import PageRequest
from gateway.services.suppressions import Added, ReasonRequired, Refused, Removed
from resolvers.mutations import invalid_input
from resolvers.pages import time_cursor
from schema.context import context_of
from schema.ids import decode_uuid, encode_time_cursor
from schema.message_pages import page_size
from schema.results import NotFound
from schema.suppressions import (
    AddSuppressionInput,
    AddSuppressionResult,
    RemovalReasonRequired,
    RemoveSuppressionResult,
    Suppression,
    SuppressionAdded,
    SuppressionConnection,
    SuppressionEdge,
    SuppressionRemoved,
)
from schema.types import PageInfo


async def suppressions(
    info: strawberry.Info,
    first: int | None = None,
    after: str | None = None,
    address: str | None = None,
) -> SuppressionConnection:
    context, account, _ = context_of(info)
    page = await context.services.suppressions.page(
        account.id, PageRequest(page_size(first), time_cursor("s", after)), address=address
    )
    if page is None:  # no address at all: nothing matches it
        page = Page([], has_next=False, has_previous=False)
    edges = [
        SuppressionEdge(
            cursor=encode_time_cursor("s", s.created_at, s.id), node=Suppression.from_record(s)
        )
        for s in page.items
    ]
    return SuppressionConnection(edges=edges, page_info=PageInfo.of_page(edges, page))


async def add_suppression(
    info: strawberry.Info, input: AddSuppressionInput
) -> AddSuppressionResult:
    context, account, _ = context_of(info)
    outcome = await context.services.suppressions.add(
        account.id, input.address, channel=input.channel, sender=input.from_, note=input.note
    )
    if isinstance(outcome, Added):
        return SuppressionAdded(
            suppression=Suppression.from_record(outcome.suppression), created=outcome.created
        )
    return invalid_input(outcome.problems)


async def remove_suppression(
    info: strawberry.Info, id: strawberry.ID, reason: str | None = None
) -> RemoveSuppressionResult:
    context, account, _ = context_of(info)
    suppression_id = decode_uuid(id, "Suppression")
    if suppression_id is None:
        return NotFound(id=id)
    outcome = await context.services.suppressions.remove(account.id, suppression_id, reason)
    if isinstance(outcome, Removed):
        return SuppressionRemoved(suppression=Suppression.from_record(outcome.suppression))
    if isinstance(outcome, ReasonRequired):
        return RemovalReasonRequired(suppression=Suppression.from_record(outcome.suppression))
    if isinstance(outcome, Refused):
        return invalid_input(outcome.problems)
    return NotFound(id=id)
