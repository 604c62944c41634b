"""What every resolver gets as ``info.context``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLResolveInfo
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info

from gateway.domain.records import Account
from gateway.services.events import EventStream
from gateway.services.inbox import InboxService
from gateway.services.operator import OperatorService
from gateway.services.opt_outs import OptOutService
from gateway.services.pacing import SenderRates
from gateway.services.ports import MessageQueries
from gateway.services.quiet_hours import QuietHoursService
from gateway.services.rate_limits import RateLimiter
from gateway.services.routing import RoutingService
from gateway.services.sending import SendService
from gateway.services.suppressions import SuppressionService
from gateway.services.webhook_endpoints import WebhookEndpointService
from schema.loaders import Loaders


@dataclass(frozen=True, slots=True)
class Services:
    """What the resolvers use, handed over by the API's bootstrap: the same for every request."""

    sending: SendService
    operator: OperatorService
    events: EventStream
    inbox: InboxService
    queries: MessageQueries
    quiet_hours: QuietHoursService
    opt_outs: OptOutService
    routes: RoutingService
    suppressions: SuppressionService
    webhook_endpoints: WebhookEndpointService
    sender_rates: SenderRates
    rate_limiter: RateLimiter
    #: Region assumed for phone numbers written without +country.
    default_phone_region: str
    max_batch_size: int


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    services: Services
    account: Account | None = None
    loaders: Loaders | None = None
    #: A stable id of the API key (for per-key limits), a prefix of its hash.
    key_id: str = ""
    #: The API key's hash: what an open websocket's key is checked again by.
    key_hash: str = ""
    # Filled by Strawberry from the websocket's connection_init payload.
    connection_params: dict[str, Any] | None = field(default=None)

    def authenticate(self, account: Account, key_hash: str, *, cache: bool) -> None:
        self.account = account
        self.key_hash = key_hash
        self.key_id = key_hash[:24]
        self.loaders = Loaders(self.services.queries, account.id, cache=cache)


def context_of(info: Info[Any, Any] | GraphQLResolveInfo[Any]) -> tuple[Context, Account, Loaders]:
    """The context of an authenticated operation (the auth extension guarantees it)."""
    context: Context = info.context
    if context.account is None or context.loaders is None:
        raise PermissionError("operation ran without an authenticated account")
    return context, context.account, context.loaders
