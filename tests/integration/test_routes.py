"""Routes over the API, on PostgreSQL and SQLite: listed, set, replaced, removed, refused when
they name a vendor that is not configured for the channel, and kept per account."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GraphQLClient, RunningGateway
from tests.integration.operations import set_mutation

ROUTES = "query { routes { channel country providers } }"
SET = set_mutation("setRoute", "RouteInput", "RouteSet", "route { channel country providers }")
REMOVE = """
mutation Remove($channel: Channel!, $country: String) {
  removeRoute(channel: $channel, country: $country)
}
"""

BAD_COUNTRY = "INVALID_COUNTRY"


async def set_route(client: GraphQLClient, **fields: object) -> dict[str, Any]:
    result: dict[str, Any] = (await client.execute(SET, {"input": fields}))["setRoute"]
    return result


async def routes(client: GraphQLClient) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await client.execute(ROUTES))["routes"]
    return listed


async def test_routes_are_set_replaced_listed_and_removed(gateway: RunningGateway) -> None:
    client = await gateway.new_client()
    assert await routes(client) == [], "no route: the default order"
    uk = await set_route(client, channel="SMS", country="gb", providers=["twilio"])
    assert uk == {
        "__typename": "RouteSet",
        "route": {"channel": "SMS", "country": "GB", "providers": ["twilio"]},
    }
    await set_route(client, channel="EMAIL", providers=["sendgrid"])
    await set_route(client, channel="SMS", country="GB", providers=[" twilio "])  # replaces
    assert await routes(client) == [
        {"channel": "EMAIL", "country": None, "providers": ["sendgrid"]},
        {"channel": "SMS", "country": "GB", "providers": ["twilio"]},
    ]
    removed = await client.execute(REMOVE, {"channel": "SMS", "country": "GB"})
    assert removed == {"removeRoute": True}
    again = await client.execute(REMOVE, {"channel": "SMS", "country": "GB"})
    assert again == {"removeRoute": False}, "nothing left to remove"
    assert await routes(client) == [
        {"channel": "EMAIL", "country": None, "providers": ["sendgrid"]}
    ]


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"channel": "SMS", "providers": ["nexmo"]}, "providers", "UNKNOWN_PROVIDER"),
        ({"channel": "SMS", "providers": ["sendgrid"]}, "providers", "WRONG_CHANNEL"),
        ({"channel": "EMAIL", "providers": ["twilio"]}, "providers", "WRONG_CHANNEL"),
        ({"channel": "SMS", "providers": []}, "providers", "EMPTY_ROUTE"),
        ({"channel": "SMS", "providers": ["twilio", "twilio"]}, "providers", "DUPLICATE_PROVIDER"),
        ({"channel": "SMS", "country": "XX", "providers": ["twilio"]}, "country", BAD_COUNTRY),
        ({"channel": "EMAIL", "country": "GB", "providers": ["sendgrid"]}, "country", BAD_COUNTRY),
    ],
)  # fmt: skip
async def test_a_route_that_cannot_be_followed_is_refused(
    gateway: RunningGateway, fields: dict[str, object], field: str, code: str
) -> None:
    client = await gateway.new_client()
    result = await set_route(client, **fields)
    assert result["__typename"] == "InvalidInput", result
    [problem] = result["problems"]
    assert problem["field"] == field and problem["problem"].startswith(f"{code}: "), problem
    assert await routes(client) == [], "nothing stored"


async def test_each_account_has_its_own_routes(gateway: RunningGateway) -> None:
    mine, other = await gateway.new_client(), await gateway.new_client()
    await set_route(mine, channel="SMS", providers=["twilio"])
    assert await routes(other) == []
    assert await other.execute(REMOVE, {"channel": "SMS", "country": None}) == {
        "removeRoute": False
    }, "another account's route is not found, let alone removed"
    assert await routes(mine) == [{"channel": "SMS", "country": None, "providers": ["twilio"]}]
