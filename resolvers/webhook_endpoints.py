"""Root fields of webhook endpoints: the list, one endpoint, and the mutations that manage
endpoints and send deliveries again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import strawberry

from gateway.domain.statuses import MessageStatus
from gateway.domain.webhook_endpoints import WebhookEndpoint as EndpointRecord
from gateway.services.webhook_endpoints import (
    EndpointChange,
    Refused,
    Unknown,
    WebhookEndpointService,
    WithSecret,
)
from resolvers.mutations import invalid_input
from resolvers.pages import time_cursor
from schema.context import context_of
from schema.errors import bad_input
from schema.ids import InvalidCursor, decode_delivery_id, decode_uuid, encode_time_cursor
from schema.message_pages import page_size
from schema.results import NotFound
from schema.types import PageInfo
from schema.webhook_endpoints import (
    CreateWebhookEndpointInput,
    CreateWebhookEndpointResult,
    RedeliverFailedWebhooksResult,
    RedeliverWebhookResult,
    RotateWebhookSecretResult,
    UpdateWebhookEndpointInput,
    UpdateWebhookEndpointResult,
    WebhookDeliveriesRedelivered,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointConnection,
    WebhookEndpointCreated,
    WebhookEndpointEdge,
    WebhookEndpointResult,
    WebhookSecretRotated,
)

_TAG = "w"
T = TypeVar("T")


def _change(
    url: str | None,
    description: str | None,
    kinds: list[str] | None,
    statuses: list[MessageStatus] | None,
) -> EndpointChange:
    return EndpointChange(url=url, description=description, kinds=kinds, statuses=statuses)


async def webhook_endpoints(
    info: strawberry.Info, first: int | None = None, after: str | None = None
) -> WebhookEndpointConnection:
    context, account, _ = context_of(info)
    page = await context.services.webhook_endpoints.page(
        account.id, first=page_size(first), after=time_cursor(_TAG, after)
    )
    edges = [
        WebhookEndpointEdge(
            cursor=encode_time_cursor(_TAG, e.created_at, e.id),
            node=WebhookEndpoint.from_record(e),
        )
        for e in page.items
    ]
    return WebhookEndpointConnection(edges=edges, page_info=PageInfo.of_page(edges, page))


async def webhook_endpoint(info: strawberry.Info, id: strawberry.ID) -> WebhookEndpoint | None:
    found = await _on_endpoint(info, id, lambda s, a, e: s.get(a, e))
    return WebhookEndpoint.from_record(found) if isinstance(found, EndpointRecord) else None


async def create_webhook_endpoint(
    info: strawberry.Info, input: CreateWebhookEndpointInput
) -> CreateWebhookEndpointResult:
    context, account, _ = context_of(info)
    change = _change(input.url, input.description, input.event_kinds, input.statuses)
    outcome = await context.services.webhook_endpoints.create(account.id, change)
    if isinstance(outcome, Refused):
        return invalid_input(outcome.problems)
    return WebhookEndpointCreated(
        endpoint=WebhookEndpoint.from_record(outcome.endpoint), secret=outcome.secret
    )


async def _on_endpoint(
    info: strawberry.Info,
    id: strawberry.ID,
    act: Callable[[WebhookEndpointService, UUID, UUID], Awaitable[T]],
) -> T | NotFound:
    """``act(service, account id, endpoint id)``, or NotFound for what is no endpoint id."""
    context, account, _ = context_of(info)
    endpoint_id = decode_uuid(id, "WebhookEndpoint")
    if endpoint_id is None:
        return NotFound(id=id)
    return await act(context.services.webhook_endpoints, account.id, endpoint_id)


def _shown(
    id: strawberry.ID, outcome: EndpointRecord | Unknown | NotFound
) -> WebhookEndpointResult:
    if isinstance(outcome, EndpointRecord):
        return WebhookEndpoint.from_record(outcome)
    return NotFound(id=id)


async def update_webhook_endpoint(
    info: strawberry.Info, id: strawberry.ID, input: UpdateWebhookEndpointInput
) -> UpdateWebhookEndpointResult:
    change = _change(input.url, input.description, input.event_kinds, input.statuses)
    outcome = await _on_endpoint(info, id, lambda s, a, e: s.update(a, e, change))
    if isinstance(outcome, Refused):
        return invalid_input(outcome.problems)
    return _shown(id, outcome)


async def enable_webhook_endpoint(
    info: strawberry.Info, id: strawberry.ID
) -> WebhookEndpointResult:
    return _shown(id, await _on_endpoint(info, id, lambda s, a, e: s.set_enabled(a, e, True)))


async def disable_webhook_endpoint(
    info: strawberry.Info, id: strawberry.ID
) -> WebhookEndpointResult:
    return _shown(id, await _on_endpoint(info, id, lambda s, a, e: s.set_enabled(a, e, False)))


async def delete_webhook_endpoint(
    info: strawberry.Info, id: strawberry.ID
) -> WebhookEndpointResult:
    return _shown(id, await _on_endpoint(info, id, lambda s, a, e: s.delete(a, e)))


async def rotate_webhook_secret(
    info: strawberry.Info, id: strawberry.ID
) -> RotateWebhookSecretResult:
    outcome = await _on_endpoint(info, id, lambda s, a, e: s.rotate_secret(a, e))
    if isinstance(outcome, WithSecret):
        return WebhookSecretRotated(
            endpoint=WebhookEndpoint.from_record(outcome.endpoint), secret=outcome.secret
        )
    return NotFound(id=id)


async def redeliver_webhook(info: strawberry.Info, id: strawberry.ID) -> RedeliverWebhookResult:
    context, account, _ = context_of(info)
    try:
        delivery_id = decode_delivery_id(id)
    except InvalidCursor:
        return NotFound(id=id)
    outcome = await context.services.webhook_endpoints.redeliver(account.id, delivery_id)
    if isinstance(outcome, Unknown):
        return NotFound(id=id)
    return WebhookDelivery.from_record(outcome)


async def redeliver_failed_webhooks(
    info: strawberry.Info, endpoint_id: strawberry.ID, since: datetime
) -> RedeliverFailedWebhooksResult:
    if since.tzinfo is None:
        raise bad_input("`since` needs a time zone")
    outcome = await _on_endpoint(info, endpoint_id, lambda s, a, e: s.redeliver_failed(a, e, since))
    if isinstance(outcome, int):
        return WebhookDeliveriesRedelivered(count=outcome)
    return NotFound(id=endpoint_id)
