"""Root fields of routes: list, set and remove the account's own."""

from __future__ import annotations

import strawberry

from gateway.domain.channels import Channel
from gateway.domain.messages import FieldProblem
from gateway.domain.routing import RouteError
from resolvers.mutations import invalid_input
from schema.context import context_of
from schema.routes import Route, RouteInput, RouteSet, SetRouteResult


async def routes(info: strawberry.Info) -> list[Route]:
    context, account, _ = context_of(info)
    return [Route.from_domain(r) for r in await context.services.routes.of(account.id)]


async def set_route(info: strawberry.Info, input: RouteInput) -> SetRouteResult:
    context, account, _ = context_of(info)
    outcome = await context.services.routes.set(
        account.id, input.channel, input.country, input.providers
    )
    if isinstance(outcome, RouteError):
        field = "country" if outcome.code == "INVALID_COUNTRY" else "providers"
        return invalid_input([FieldProblem(field, f"{outcome.code}: {outcome}")])
    return RouteSet(route=Route.from_domain(outcome))


async def remove_route(info: strawberry.Info, channel: Channel, country: str | None = None) -> bool:
    context, account, _ = context_of(info)
    return await context.services.routes.remove(account.id, channel, country)
