"""GraphQL types of webhook endpoints: the endpoints, their deliveries, their pages, and the
results of the mutations that manage them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar
from uuid import UUID

import strawberry

from gateway.domain.records import Page
from gateway.domain.statuses import MessageStatus
from gateway.domain.webhook_endpoints import (
    DeliveryState,
    DisabledReason,
    EndpointEvent,
    EndpointEventKind,
)
from gateway.domain.webhook_endpoints import WebhookDelivery as DeliveryRecord
from gateway.domain.webhook_endpoints import WebhookEndpoint as EndpointRecord
from gateway.services.webhook_endpoints import WebhookEndpointService
from schema.context import context_of
from schema.errors import bad_input
from schema.ids import (
    InvalidCursor,
    decode_delivery_id,
    decode_endpoint_event_id,
    encode_delivery_id,
    encode_endpoint_event_id,
    encode_id,
)
from schema.message_pages import page_size
from schema.results import InvalidInput, NotFound
from schema.types import MessageEvent, PageInfo

_T = TypeVar("_T")

strawberry.enum(
    DisabledReason,
    name="WebhookDisabledReason",
    description=(
        "Why an endpoint is disabled: the account disabled it (MANUAL), it answered 410\n"
        "(GONE), or every delivery failed for longer than allowed (FAILING)."
    ),
)
strawberry.enum(
    DeliveryState,
    name="WebhookDeliveryState",
    description=(
        "PENDING: on its way (tried again at `nextAttemptAt`); SUCCEEDED: answered 2xx;\n"
        "FAILED: tries exhausted or the endpoint answered 410 (see `redeliverWebhook`)."
    ),
)

strawberry.enum(
    EndpointEventKind,
    name="WebhookEndpointEventKind",
    description=(
        "What happened to an endpoint: CREATED; UPDATED (URL, description or filters);\n"
        "DISABLED (see the event's `reason`: MANUAL, GONE or FAILING); ENABLED;\n"
        "SECRET_ROTATED."
    ),
)


@strawberry.type(description="One entry of an endpoint's event log.")
class WebhookEndpointEvent:
    id: strawberry.ID
    kind: EndpointEventKind
    reason: DisabledReason | None = strawberry.field(
        description="Why it was disabled (DISABLED only): MANUAL, GONE or FAILING."
    )
    occurred_at: datetime

    @classmethod
    def from_record(cls, record: EndpointEvent) -> WebhookEndpointEvent:
        return cls(
            id=strawberry.ID(encode_endpoint_event_id(record.id)),
            kind=record.kind,
            reason=record.reason,
            occurred_at=record.occurred_at,
        )


@strawberry.type
class WebhookEndpointEventEdge:
    cursor: str
    node: WebhookEndpointEvent


@strawberry.type
class WebhookEndpointEventConnection:
    edges: list[WebhookEndpointEventEdge]
    page_info: PageInfo


@strawberry.type(description="One event on its way to one endpoint, and how its tries went.")
class WebhookDelivery:
    id: strawberry.ID
    event: MessageEvent
    state: DeliveryState
    attempts: int = strawberry.field(description="Tries so far (since the last redelivery).")
    last_status_code: int | None = strawberry.field(
        description="The HTTP status of the last try; null when it got no answer."
    )
    last_error: str | None = strawberry.field(
        description="Why the last try failed: the start of the answer, or the transport error."
    )
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime

    @classmethod
    def from_record(cls, record: DeliveryRecord) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(encode_delivery_id(record.id)),
            event=MessageEvent.from_record(record.event),
            state=record.state,
            attempts=record.attempts,
            last_status_code=record.last_status_code,
            last_error=record.last_error,
            last_attempt_at=record.last_attempt_at,
            next_attempt_at=record.next_attempt_at,
            created_at=record.created_at,
        )


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str
    node: WebhookDelivery


@strawberry.type
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo


@strawberry.type(
    description=(
        "An HTTPS URL of the account that audit-trail events are POSTed to, signed per the\n"
        "Standard Webhooks specification. Its secret is shown only when made; its\n"
        "`deliveries` are listed newest first, and so are its `events`: what happened to it\n"
        "(created, updated, disabled and why, enabled, secret rotated)."
    )
)
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    description: str | None
    event_kinds: list[str] = strawberry.field(
        description="The event kinds it receives (see MessageEvent.kind); empty: every kind."
    )
    statuses: list[MessageStatus] = strawberry.field(
        description="The statuses it receives events of; empty: every status."
    )
    enabled: bool
    disabled_reason: DisabledReason | None
    disabled_at: datetime | None
    failing_since: datetime | None = strawberry.field(
        description="Since when every delivery has failed; null after a success."
    )
    previous_secret_expires_at: datetime | None = strawberry.field(
        description="Until when the secret replaced by the last rotation still signs too."
    )
    created_at: datetime
    updated_at: datetime
    record: strawberry.Private[EndpointRecord]

    @classmethod
    def from_record(cls, record: EndpointRecord) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(encode_id("WebhookEndpoint", record.id)),
            url=record.url,
            description=record.description,
            event_kinds=sorted(record.filter.kinds),
            statuses=sorted(record.filter.statuses, key=lambda s: s.value),
            enabled=record.enabled,
            disabled_reason=record.disabled_reason,
            disabled_at=record.disabled_at,
            failing_since=record.failing_since,
            previous_secret_expires_at=record.previous_secret_until,
            created_at=record.created_at,
            updated_at=record.updated_at,
            record=record,
        )

    @strawberry.field
    async def deliveries(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> WebhookDeliveryConnection:
        page = await _newest_first(
            info, first, after, decode_delivery_id, lambda s: s.deliveries, self.record.id
        )
        edges = [
            WebhookDeliveryEdge(
                cursor=encode_delivery_id(d.id), node=WebhookDelivery.from_record(d)
            )
            for d in page.items
        ]
        return WebhookDeliveryConnection(edges=edges, page_info=PageInfo.of_page(edges, page))

    @strawberry.field
    async def events(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> WebhookEndpointEventConnection:
        page = await _newest_first(
            info, first, after, decode_endpoint_event_id, lambda s: s.events, self.record.id
        )
        edges = [
            WebhookEndpointEventEdge(
                cursor=encode_endpoint_event_id(v.id), node=WebhookEndpointEvent.from_record(v)
            )
            for v in page.items
        ]
        return WebhookEndpointEventConnection(edges=edges, page_info=PageInfo.of_page(edges, page))


Listing = Callable[..., Awaitable[Page[_T]]]


async def _newest_first(
    info: strawberry.Info,
    first: int | None,
    after: str | None,
    decode: Callable[[str], int],
    listing: Callable[[WebhookEndpointService], Listing[_T]],
    endpoint_id: UUID,
) -> Page[_T]:
    """One of an endpoint's newest-first listings, keyed by serial ids that are also the
    cursors: ``listing`` picks the service's method."""
    context, account, _ = context_of(info)
    size = page_size(first)
    before: int | None = None
    if after is not None:
        try:
            before = decode(after)
        except InvalidCursor as exc:
            raise bad_input(f"invalid cursor: {exc}") from exc
    fetch = listing(context.services.webhook_endpoints)
    return await fetch(account.id, endpoint_id, first=size, after=before)


@strawberry.type
class WebhookEndpointEdge:
    cursor: str
    node: WebhookEndpoint


@strawberry.type
class WebhookEndpointConnection:
    edges: list[WebhookEndpointEdge]
    page_info: PageInfo


@strawberry.input
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="https only (see WEBHOOK_ALLOW_PRIVATE_URLS).")
    description: str | None = None
    event_kinds: list[str] | None = strawberry.field(
        default=None, description="Event kinds to receive; null or empty: every kind."
    )
    statuses: list[MessageStatus] | None = strawberry.field(
        default=None, description="Statuses to receive events of; null or empty: every one."
    )


@strawberry.input(description="Fields left null keep their value.")
class UpdateWebhookEndpointInput:
    url: str | None = None
    description: str | None = None
    event_kinds: list[str] | None = None
    statuses: list[MessageStatus] | None = None


@strawberry.type(description="The new endpoint and its signing secret, shown this once.")
class WebhookEndpointCreated:
    endpoint: WebhookEndpoint
    secret: str


@strawberry.type(
    description=(
        "The new signing secret, shown this once. The one it replaces signs every delivery\n"
        "too until `endpoint.previousSecretExpiresAt` (24 hours)."
    )
)
class WebhookSecretRotated:
    endpoint: WebhookEndpoint
    secret: str


@strawberry.type
class WebhookDeliveriesRedelivered:
    count: int = strawberry.field(description="How many deliveries were made due again.")


CreateWebhookEndpointResult = Annotated[
    WebhookEndpointCreated | InvalidInput, strawberry.union("CreateWebhookEndpointResult")
]
UpdateWebhookEndpointResult = Annotated[
    WebhookEndpoint | NotFound | InvalidInput, strawberry.union("UpdateWebhookEndpointResult")
]
WebhookEndpointResult = Annotated[
    WebhookEndpoint | NotFound, strawberry.union("WebhookEndpointResult")
]
RotateWebhookSecretResult = Annotated[
    WebhookSecretRotated | NotFound, strawberry.union("RotateWebhookSecretResult")
]
RedeliverWebhookResult = Annotated[
    WebhookDelivery | NotFound, strawberry.union("RedeliverWebhookResult")
]
RedeliverFailedWebhooksResult = Annotated[
    WebhookDeliveriesRedelivered | NotFound, strawberry.union("RedeliverFailedWebhooksResult")
]
