"""The account's routes in the API: what ``routes`` lists, ``setRoute`` sets and
``removeRoute`` removes."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gateway.domain.channels import Channel
from gateway.domain.routing import Route as RouteRecord
from schema.results import InvalidInput


@strawberry.type(
    description=(
        "The order in which this account's messages of a channel try the vendors: for the\n"
        "numbers of one country, or for every destination. A country route wins over the\n"
        "channel's route, which wins over the gateway's default order."
    )
)
class Route:
    channel: Channel
    country: str | None = strawberry.field(
        description="ISO 3166-1 alpha-2 region of the recipient's number (e.g. GB for +44); "
        "null: every destination."
    )
    providers: list[str] = strawberry.field(description="Vendor names, first tried first.")

    @classmethod
    def from_domain(cls, route: RouteRecord) -> Route:
        return cls(channel=route.channel, country=route.country, providers=list(route.providers))


@strawberry.input(description="Replaces the account's route for the channel and country.")
class RouteInput:
    channel: Channel
    country: str | None = strawberry.field(
        default=None, description="ISO 3166-1 alpha-2 (SMS and MMS only); null: every destination."
    )
    providers: list[str] = strawberry.field(
        description="Vendors configured for the channel, in the order to try them."
    )


@strawberry.type
class RouteSet:
    route: Route


SetRouteResult = Annotated[RouteSet | InvalidInput, strawberry.union("SetRouteResult")]
