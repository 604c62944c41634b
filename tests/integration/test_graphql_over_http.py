"""GraphQL over HTTP on a real server: the two response media types and their status codes, and
the GET rules.

``application/graphql-response+json`` (asked for by ``Accept``) answers a request that fails
before execution with a 4xx and no ``data`` entry, and an operation that ran with 200;
``application/json`` (asked for, ``*/*``, or no ``Accept``) answers exactly as it always did.
A mutation over GET is 405 with ``Allow: POST`` in both. Media types do not depend on the
storage backend: one SQLite gateway of this module's own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from harness.http import loopback_client
from tests.conftest import RunningGateway, gateway_settings, serve
from tests.integration.test_hardening import SMS_LITERAL, stored_messages

NEW = "application/graphql-response+json"
NEW_CONTENT_TYPE = "application/graphql-response+json; charset=utf-8"
#: What clients that do not ask for the new type send: every one of them gets application/json.
LEGACY_ACCEPTS: list[str | None] = [None, "*/*", "application/json"]
BOTH = f"{NEW}, application/json"

SEND = f"mutation Send {{ sendMessage(input: {SMS_LITERAL}) {{ __typename }} }}"


@pytest.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings("sqlite", tmp_path_factory.mktemp("over-http"), None)
    settings = settings.model_copy(update={"rate_limits": "deadLetters=1/minute;*=1000/second"})
    async with (
        serve(settings) as (base_url, container),
        loopback_client(timeout=30) as http,
    ):
        yield RunningGateway("sqlite", base_url, container, http)


@pytest.fixture
async def key(gw: RunningGateway) -> str:
    return (await gw.new_client()).key


def headers(accept: str | None, key: str | None) -> dict[str, str]:
    sent = {}
    if accept is not None:
        sent["Accept"] = accept
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    return sent


async def post(
    gw: RunningGateway, accept: str | None, key: str | None, payload: Any
) -> httpx.Response:
    """POST ``payload`` as JSON (bytes are sent as they are, as JSON)."""
    sent = headers(accept, key)
    if isinstance(payload, bytes):
        sent["Content-Type"] = "application/json"
        body: dict[str, Any] = {"content": payload}
    else:
        body = {"json": payload}
    request = gw.http.build_request("POST", f"{gw.base_url}/graphql", headers=sent, **body)
    if accept is None:
        del request.headers["accept"]  # httpx sends */* by default
    return await gw.http.send(request)


async def get(
    gw: RunningGateway, accept: str | None, key: str | None, params: dict[str, str]
) -> httpx.Response:
    request = gw.http.build_request(
        "GET", f"{gw.base_url}/graphql", params=params, headers=headers(accept, key)
    )
    if accept is None:
        del request.headers["accept"]
    return await gw.http.send(request)


def assert_legacy(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def assert_new(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == NEW_CONTENT_TYPE
    body: dict[str, Any] = response.json()
    return body


async def test_a_successful_query_is_200_in_the_type_asked_for(
    gw: RunningGateway, key: str
) -> None:
    query = {"query": "{ __typename }"}
    for accept in LEGACY_ACCEPTS:
        body = assert_legacy(await post(gw, accept, key, query), 200)
        assert body == {"data": {"__typename": "Query"}}
    for accept in (NEW, BOTH, f"application/json, {NEW}", f"{NEW};q=1, */*;q=0.1"):
        body = assert_new(await post(gw, accept, key, query), 200)
        assert body == {"data": {"__typename": "Query"}}
    sent = assert_new(await post(gw, NEW, key, {"query": SEND}), 200)
    assert sent == {"data": {"sendMessage": {"__typename": "MessageAccepted"}}}


REQUEST_ERRORS = {
    "parse": {"query": "{"},
    "validation": {"query": "{ noSuchField }"},
    "variable coercion": {
        "query": "query One($id: ID!) { message(id: $id) { id } }",
        "variables": {"id": None},
    },
    "too complex": {"query": "{ " + " ".join(f"a{n}: __typename" for n in range(31)) + " }"},
    # GraphQL's GetOperation: several operations and no name is an error, not the first one.
    "no operation chosen": {"query": "query A { __typename } query B { __typename }"},
}


@pytest.mark.parametrize("case", REQUEST_ERRORS)
async def test_a_request_that_fails_before_execution_is_400_without_data_in_the_new_type(
    gw: RunningGateway, key: str, case: str
) -> None:
    payload = REQUEST_ERRORS[case]
    new = assert_new(await post(gw, NEW, key, payload), 400)
    assert "data" not in new, new
    assert new["errors"] and all("path" not in error for error in new["errors"])
    # application/json, as it always was: 200 with "data": null and the same errors.
    for accept in LEGACY_ACCEPTS:
        legacy = assert_legacy(await post(gw, accept, key, payload), 200)
        assert legacy == {"data": None, **new}


async def test_field_errors_are_200_with_their_data_in_both_types(
    gw: RunningGateway, key: str
) -> None:
    # A root field error nulls all of data, but the operation ran: 200, data kept.
    payload = {"query": "{ conversations(first: -1) { edges { cursor } } }"}
    new = assert_new(await post(gw, NEW, key, payload), 200)
    assert new["data"] is None and new["errors"][0]["path"] == ["conversations"]
    assert new["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert assert_legacy(await post(gw, None, key, payload), 200) == new


async def test_no_key_is_401_and_a_rate_limit_429_in_both_types(
    gw: RunningGateway, key: str
) -> None:
    query = {"query": "{ __typename }"}
    new = assert_new(await post(gw, NEW, None, query), 401)
    legacy = assert_legacy(await post(gw, None, None, query), 401)
    assert legacy == {"data": None, **new} and "data" not in new
    assert new["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    limited = {"query": "{ deadLetters { edges { cursor } } }"}
    assert_new(await post(gw, NEW, key, limited), 200)  # the one call a minute allowed
    refused_new = await post(gw, NEW, key, limited)
    body = assert_new(refused_new, 429)
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(refused_new.headers["retry-after"]) >= 1
    refused_legacy = await post(gw, "application/json", key, limited)
    assert assert_legacy(refused_legacy, 429)["data"] is None
    assert "retry-after" in refused_legacy.headers


async def test_subscriptions_over_http_stay_400(gw: RunningGateway, key: str) -> None:
    payload = {"query": "subscription { messageEvents { cursor } }"}
    new = assert_new(await post(gw, NEW, key, payload), 400)
    assert "data" not in new and new["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert assert_legacy(await post(gw, None, key, payload), 400) == {"data": None, **new}


async def test_malformed_requests_are_400_graphql_errors_in_the_new_type_text_in_the_old(
    gw: RunningGateway, key: str
) -> None:
    for payload in ({"qeury": "{ __typename }"}, {"query": "{ __typename }", "variables": [7]}):
        body = assert_new(await post(gw, NEW, key, payload), 400)
        assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST" and "data" not in body
        assert (await post(gw, None, key, payload)).status_code == 400

    bad_json = b'{"query": '
    body = assert_new(await post(gw, NEW, key, bad_json), 400)
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    legacy = await post(gw, "application/json", key, bad_json)
    assert legacy.status_code == 400
    assert legacy.headers["content-type"].startswith("text/plain")


async def test_get_runs_queries_in_either_type(gw: RunningGateway, key: str) -> None:
    params = {
        "query": "query Type($name: String!) { __type(name: $name) { name } }",
        "variables": json.dumps({"name": "Message"}),
    }
    expected = {"data": {"__type": {"name": "Message"}}}
    assert assert_new(await get(gw, NEW, key, params), 200) == expected
    assert assert_legacy(await get(gw, None, key, params), 200) == expected
    assert assert_new(await get(gw, NEW, key, {"query": "{"}), 400).get("data", 0) == 0


async def test_a_mutation_over_get_is_405_allow_post_and_never_runs(gw: RunningGateway) -> None:
    client = await gw.new_client()
    attempts = [
        {"query": SEND},
        # Picked by operationName from a document that also holds a query.
        {"query": "query Q { __typename } " + SEND, "operationName": "Send"},
    ]
    for params in attempts:
        for accept in (*LEGACY_ACCEPTS, NEW):
            response = await get(gw, accept, client.key, params)
            assert response.status_code == 405, response.text
            assert response.headers["allow"] == "POST"
            body = response.json()
            assert body["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED", body
            if accept == NEW:
                assert response.headers["content-type"] == NEW_CONTENT_TYPE
                assert "data" not in body
            else:
                assert response.headers["content-type"] == "application/json"
                assert body["data"] is None
    # Without a key too: the method is refused before anything else.
    assert (await get(gw, NEW, None, {"query": SEND})).status_code == 405
    assert await stored_messages(gw.container, client.account) == 0
    # The same mutation over POST runs.
    sent = await post(gw, NEW, client.key, {"query": SEND})
    assert assert_new(sent, 200)["data"]["sendMessage"]["__typename"] == "MessageAccepted"
    assert await stored_messages(gw.container, client.account) == 1


async def test_an_accept_admitting_neither_type_is_406_and_graphiql_still_opens(
    gw: RunningGateway, key: str
) -> None:
    refused = await post(gw, "text/plain", key, {"query": "{ __typename }"})
    body = assert_legacy(refused, 406)
    assert body["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"

    page = await gw.http.get(f"{gw.base_url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
