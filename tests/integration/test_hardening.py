"""Hardening over real HTTP and websockets: complexity limits, error masking, introspection and
GraphiQL switches, GET rules, execution timeouts, CORS, websocket origins and the cap on
operations in flight on one websocket.

Backend-dependent behaviour (anything that executes or writes) runs on both backends through
the ``gateway`` fixture (default settings: depth 12, 30 aliases, 5000 tokens, no CORS, no
cross-origin websockets, introspection and GraphiQL on). The switched-off variants run on a
``hardened`` gateway of this module's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from harness.http import loopback_client
from tests.conftest import GraphQLClient, RunningGateway, gateway_settings, serve, stored_messages

PROTOCOL = Subprotocol("graphql-transport-ws")
APP_ORIGIN = "https://app.example"
EVIL_ORIGIN = "https://evil.example"
TIMEOUT_SECONDS = 2.0
MAX_OPERATIONS = 3  # in flight on one websocket, on the hardened gateway

SMS_LITERAL = '{channel: SMS, from: "+14155550100", to: "+14155550199", body: "hi"}'

SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) { __typename ... on MessageAccepted { message { id } } }
}
"""

CONVERSATIONS = "query Convs { conversations(first: 5) { edges { node { id messageCount } } } }"


def sms(body: str = "hello") -> dict[str, str]:
    return {"channel": "SMS", "from": "+14155550100", "to": "+14155550199", "body": body}


async def send_ok(client: GraphQLClient, body: str = "hello") -> str:
    result = (await client.execute(SEND, {"input": sms(body)}))["sendMessage"]
    assert result["__typename"] == "MessageAccepted", result
    message_id: str = result["message"]["id"]
    return message_id


def only_error(response: httpx.Response) -> dict[str, Any]:
    """The single GraphQL error of a response that has no data."""
    body = response.json()
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert isinstance(error, dict)
    return error


def assert_too_complex(response: httpx.Response) -> None:
    error = only_error(response)
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error


@pytest.fixture(scope="module")
async def hardened(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings("sqlite", tmp_path_factory.mktemp("hardened"), None)
    settings = settings.model_copy(
        update={
            "introspection": False,
            "graphiql": False,
            "cors_origins": APP_ORIGIN,
            "ws_allowed_origins": APP_ORIGIN,
            "execution_timeout_seconds": TIMEOUT_SECONDS,
            "rate_limits": "sendMessage=1/minute;*=1000/second",
            "ws_max_operations": MAX_OPERATIONS,
        }
    )
    async with (
        serve(settings) as (base_url, container),
        loopback_client(timeout=30) as http,
    ):
        yield RunningGateway("sqlite", base_url, container, http)


# --- complexity limits ------------------------------------------------------------------------


def deep_send(levels: int) -> str:
    """A sendMessage whose selection goes conversation -> messages -> node -> conversation..."""
    selection = "id"
    for _ in range(levels):
        selection = f"conversation {{ messages {{ edges {{ node {{ {selection} }} }} }} }}"
    return (
        f"mutation Deep {{ sendMessage(input: {SMS_LITERAL}) {{ "
        f"... on MessageAccepted {{ message {{ {selection} }} }} }} }}"
    )


async def test_too_deep_is_refused_before_anything_runs(gateway: RunningGateway) -> None:
    client = await gateway.new_client()
    selection = "id"
    for _ in range(4):
        selection = f"messages {{ edges {{ node {{ conversation {{ {selection} }} }} }} }}"
    query = f"{{ conversations {{ edges {{ node {{ {selection} }} }} }} }}"  # depth 19
    assert_too_complex(await client.post(query))

    # A mutation past the limit is not executed: nothing is written.
    assert_too_complex(await client.post(deep_send(4)))
    assert await stored_messages(gateway.container, client.account) == 0
    # Within the limit the same shape runs.
    data = await client.execute(deep_send(1))
    assert data["sendMessage"]["message"]["conversation"]["messages"]["edges"]
    assert await stored_messages(gateway.container, client.account) == 1


async def test_too_many_aliases_is_refused_before_anything_runs(gateway: RunningGateway) -> None:
    client = await gateway.new_client()
    aliases = " ".join(
        f"a{n}: sendMessage(input: {SMS_LITERAL}) {{ __typename }}" for n in range(31)
    )
    assert_too_complex(await client.post(f"mutation Many {{ {aliases} }}"))
    assert await stored_messages(gateway.container, client.account) == 0

    queries = " ".join(f"q{n}: conversations {{ pageInfo {{ hasNextPage }} }}" for n in range(40))
    assert_too_complex(await client.post(f"{{ {queries} }}"))

    fine = " ".join(f"q{n}: conversations {{ pageInfo {{ hasNextPage }} }}" for n in range(5))
    assert len(await client.execute(f"{{ {fine} }}")) == 5


async def test_too_many_tokens_is_refused_as_too_complex(gateway: RunningGateway) -> None:
    """The contract: "QUERY_TOO_COMPLEX depth, alias or token limits exceeded"."""
    client = await gateway.new_client()
    padding = " ".join("__typename" for _ in range(6000))
    response = await client.post(
        f"mutation Big {{ sendMessage(input: {SMS_LITERAL}) {{ __typename {padding} }} }}"
    )
    assert await stored_messages(gateway.container, client.account) == 0
    error = only_error(response)
    assert "tokens" in error["message"], error
    assert (error.get("extensions") or {}).get("code") == "QUERY_TOO_COMPLEX", error


async def test_absurdly_nested_documents_are_refused_as_too_complex(
    gateway: RunningGateway,
) -> None:
    """Past graphql-core's parser nesting limit (200) a document is far past the depth limit
    (12) as well: the same contract code, not an anonymous syntax error."""
    client = await gateway.new_client()
    selection = "id"
    for _ in range(150):
        selection = f"messages {{ edges {{ node {{ conversation {{ {selection} }} }} }} }}"
    response = await client.post(f"{{ conversations {{ edges {{ node {{ {selection} }} }} }} }}")
    error = only_error(response)
    assert (error.get("extensions") or {}).get("code") == "QUERY_TOO_COMPLEX", error


async def test_refused_complex_operations_do_not_count_against_rate_limits(
    hardened: RunningGateway,
) -> None:
    client = await hardened.new_client()  # sendMessage=1/minute on this gateway
    for _ in range(3):
        response = await client.post(deep_send(4))
        assert_too_complex(response)
        assert response.status_code != 429
    await send_ok(client, "the one allowed")
    assert await stored_messages(hardened.container, client.account) == 1


# --- masking ----------------------------------------------------------------------------------


@contextlib.contextmanager
def broken(target: object, name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make ``target.name`` raise an unexpected error full of things no client should see."""
    secret = 'SELECT * FROM messages -- File "/srv/app.py", password=hunter2'

    async def explode(*_: object, **__: object) -> object:
        raise RuntimeError(secret)

    with monkeypatch.context() as patch:
        patch.setattr(target, name, explode)
        yield secret


async def test_unexpected_errors_are_masked_with_the_request_id(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await gateway.new_client()
    await send_ok(client)
    for request_id in (None, "not a sane id!", "hardening-mask-1"):
        headers = {"Authorization": f"Bearer {client.key}"}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        with broken(gateway.container.queries, "conversations_page", monkeypatch) as secret:
            response = await gateway.http.post(
                f"{gateway.base_url}/graphql", json={"query": CONVERSATIONS}, headers=headers
            )
        for leak in (secret, "hunter2", "RuntimeError", "Traceback", "SELECT"):
            assert leak not in response.text, response.text
        error = only_error(response)
        assert error["message"] == "Internal error"
        header = response.headers["x-request-id"]
        assert error["extensions"] == {"code": "INTERNAL", "requestId": header}
        if request_id == "hardening-mask-1":
            assert header == request_id
        else:
            assert header and header != request_id
    # Restored: the same query works.
    assert (await client.execute(CONVERSATIONS))["conversations"]["edges"]


async def test_validation_and_bad_input_errors_are_not_masked(gateway: RunningGateway) -> None:
    client = await gateway.new_client()
    cases: list[tuple[str, dict[str, Any], str, str | None]] = [
        ("{ noSuchField }", {}, "noSuchField", None),
        (
            "query Q($n: Int) { conversations(first: $n) { edges { cursor } } }",
            {"n": "x"},
            "$n",
            None,
        ),
        ("{ conversations(first: 1000) { edges { cursor } } }", {}, "first", "BAD_USER_INPUT"),
        (
            '{ conversations(after: "bm90IGEgY3Vyc29y") { edges { cursor } } }',
            {},
            "cursor",
            "BAD_USER_INPUT",
        ),
        ('{ deadLetters(after: "%%%") { edges { cursor } } }', {}, "cursor", "BAD_USER_INPUT"),
    ]
    for query, variables, mentioned, code in cases:
        response = await client.post(query, variables)
        body = response.json()
        assert body["errors"], body
        error = body["errors"][0]
        assert error["message"] != "Internal error", (query, body)
        assert mentioned in error["message"], (query, body)
        extensions = error.get("extensions") or {}
        assert extensions.get("code") != "INTERNAL", (query, body)
        if code is not None:
            assert extensions.get("code") == code, (query, body)


# --- introspection and GraphiQL ---------------------------------------------------------------


async def test_introspection_can_be_switched_off(
    gateway: RunningGateway, hardened: RunningGateway
) -> None:
    schema_query = "{ __schema { queryType { name } } }"
    type_query = '{ __type(name: "Message") { fields { name } } }'

    on = await gateway.new_client()
    assert (await on.execute(schema_query))["__schema"]["queryType"]["name"] == "Query"

    off = await hardened.new_client()
    for query in (schema_query, type_query):
        body = (await off.post(query)).json()
        assert body.get("data") is None, body
        assert body["errors"], body
        for error in body["errors"]:
            assert "introspection has been disabled" in error["message"], error
    # __typename is not introspection of the schema: it still answers.
    assert await off.execute("{ __typename }") == {"__typename": "Query"}


async def test_graphiql_can_be_switched_off(
    gateway: RunningGateway, hardened: RunningGateway
) -> None:
    html = {"Accept": "text/html"}
    served = await gateway.http.get(f"{gateway.base_url}/graphql", headers=html)
    assert served.status_code == 200
    assert "graphiql" in served.text.lower()

    refused = await hardened.http.get(f"{hardened.base_url}/graphql", headers=html)
    assert refused.status_code in (400, 404, 405), refused.status_code
    assert "graphiql" not in refused.text.lower()
    assert not refused.headers.get("content-type", "").startswith("text/html")

    # Its assets go with it.
    page = served.text
    script = re.search(r'<script src="(graphiql/assets/[^"]+)"', page)
    assert script is not None, page
    assert (await gateway.http.get(f"{gateway.base_url}/{script.group(1)}")).status_code == 200
    gone = await hardened.http.get(f"{hardened.base_url}/{script.group(1)}")
    assert gone.status_code == 404


# --- GET --------------------------------------------------------------------------------------


async def test_get_runs_queries_but_never_mutations(gateway: RunningGateway) -> None:
    client = await gateway.new_client()
    await send_ok(client, "over POST")
    url = f"{gateway.base_url}/graphql"
    headers = {"Authorization": f"Bearer {client.key}", "Accept": "application/json"}

    ok = await gateway.http.get(url, params={"query": CONVERSATIONS}, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"]["conversations"]["edges"][0]["node"]["messageCount"] == 1

    attempts = [
        {"query": SEND, "variables": json.dumps({"input": sms("over GET")})},
        {"query": f"mutation {{ sendMessage(input: {SMS_LITERAL}) {{ __typename }} }}"},
        # A mutation picked by operationName from a document that also holds a query.
        {
            "query": "query Q { __typename } "
            f"mutation M {{ sendMessage(input: {SMS_LITERAL}) {{ __typename }} }}",
            "operationName": "M",
        },
    ]
    for params in attempts:
        refused = await gateway.http.get(url, params=params, headers=headers)
        assert refused.status_code in (400, 405), refused.text
        assert "MessageAccepted" not in refused.text
    assert await stored_messages(gateway.container, client.account) == 1


# --- execution timeout ------------------------------------------------------------------------


async def test_slow_operations_answer_504_timeout(
    hardened: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await hardened.new_client()
    container = hardened.container

    async def hang(*_: object, **__: object) -> Any:
        await asyncio.sleep(3600)  # cancelled by the time limit, long before this ends

    with monkeypatch.context() as patch:
        patch.setattr(container.queries, "conversations_page", hang)
        patch.setattr(container.sending, "send", hang)
        query, mutation = await asyncio.gather(
            client.post(CONVERSATIONS), client.post(SEND, {"input": sms("too slow")})
        )
    for response in (query, mutation):
        assert response.status_code == 504, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers.get("x-request-id")
        error = only_error(response)
        assert error["extensions"]["code"] == "TIMEOUT", error
        assert error["extensions"]["requestId"] == response.headers["x-request-id"], error
    assert await stored_messages(container, client.account) == 0

    # The process is fine afterwards.
    assert (await client.execute(CONVERSATIONS))["conversations"]["edges"] == []
    assert (await hardened.http.get(f"{hardened.base_url}/health")).status_code == 200


# --- CORS -------------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }


async def test_cors_allows_only_the_configured_origins(
    gateway: RunningGateway, hardened: RunningGateway
) -> None:
    url = f"{hardened.base_url}/graphql"
    allowed = await hardened.http.options(url, headers=preflight(APP_ORIGIN))
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers.get("access-control-allow-origin") == APP_ORIGIN
    assert "POST" in allowed.headers.get("access-control-allow-methods", "")
    assert "authorization" in allowed.headers.get("access-control-allow-headers", "").lower()

    denied = await hardened.http.options(url, headers=preflight(EVIL_ORIGIN))
    assert "access-control-allow-origin" not in denied.headers
    assert denied.status_code != 200 or "access-control-allow-methods" not in denied.headers

    client = await hardened.new_client()
    for origin, expected in ((APP_ORIGIN, APP_ORIGIN), (EVIL_ORIGIN, None)):
        response = await hardened.http.post(
            url,
            json={"query": "{ __typename }"},
            headers={"Authorization": f"Bearer {client.key}", "Origin": origin},
        )
        assert response.status_code == 200, response.text
        assert response.headers.get("access-control-allow-origin") == expected
        if expected is not None:
            # The page may read the request id and Retry-After of the answers it gets.
            exposed = response.headers.get("access-control-expose-headers", "").lower()
            assert "x-request-id" in exposed and "retry-after" in exposed

    # Without CORS origins configured, nobody is allowed.
    default = await gateway.http.options(
        f"{gateway.base_url}/graphql", headers=preflight(APP_ORIGIN)
    )
    assert "access-control-allow-origin" not in default.headers


# --- websocket origins ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ws(base_url: str, origin: str | None) -> AsyncIterator[ClientConnection]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url, subprotocols=[PROTOCOL], origin=Origin(origin) if origin else None
    ) as connection:
        yield connection


async def assert_acknowledged(base_url: str, client: GraphQLClient, origin: str | None) -> None:
    async with ws(base_url, origin) as connection:
        await connection.send(
            json.dumps(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {client.key}"}}
            )
        )
        ack = json.loads(await asyncio.wait_for(connection.recv(), 10))
        assert ack["type"] == "connection_ack", ack


async def assert_refused(base_url: str, origin: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with ws(base_url, origin):
            pass
    assert refused.value.response.status_code == 403


async def test_websocket_origins(gateway: RunningGateway, hardened: RunningGateway) -> None:
    # No cross-origin websockets configured (the default).
    client = await gateway.new_client()
    await assert_refused(gateway.base_url, EVIL_ORIGIN)
    await assert_refused(gateway.base_url, APP_ORIGIN)
    await assert_acknowledged(gateway.base_url, client, None)  # not a browser: no Origin
    await assert_acknowledged(gateway.base_url, client, gateway.base_url)  # same origin

    # One origin allowed.
    other = await hardened.new_client()
    await assert_acknowledged(hardened.base_url, other, APP_ORIGIN)
    await assert_refused(hardened.base_url, EVIL_ORIGIN)
    await assert_acknowledged(hardened.base_url, other, None)


# --- operations in flight on one websocket ------------------------------------------------------


async def test_operations_in_flight_on_one_socket_are_capped_with_a_code(
    hardened: RunningGateway,
) -> None:
    client = await hardened.new_client()

    async def subscribe(connection: ClientConnection, op: str, query: str) -> None:
        payload = {"query": query}
        await connection.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))

    async def answer(connection: ClientConnection) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(connection.recv(), 10))
        return message

    events = "subscription { messageEvents { cursor } }"
    async with ws(hardened.base_url, None) as connection:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {client.key}"}}
        await connection.send(json.dumps(init))
        assert (await answer(connection))["type"] == "connection_ack"
        # Live subscriptions stay in flight until completed.
        for op in range(MAX_OPERATIONS):
            await subscribe(connection, f"live-{op}", events)
        await subscribe(connection, "one-too-many", events)
        assert await answer(connection) == {
            "id": "one-too-many",
            "type": "error",
            "payload": [
                {
                    "message": f"too many operations in flight on this socket "
                    f"(at most {MAX_OPERATIONS})",
                    "extensions": {"code": "TOO_MANY_OPERATIONS", "maxOperations": MAX_OPERATIONS},
                }
            ],
        }

        # The socket stays open, and an operation that ends frees its place.
        await connection.send(json.dumps({"id": "live-0", "type": "complete"}))
        await subscribe(connection, "query", "{ __typename }")
        assert await answer(connection) == {
            "id": "query",
            "type": "next",
            "payload": {"data": {"__typename": "Query"}},
        }
        assert await answer(connection) == {"id": "query", "type": "complete"}
        await subscribe(connection, "live-again", events)
        await subscribe(connection, "refused-again", "{ __typename }")
        refused = await answer(connection)
        assert refused["id"] == "refused-again" and refused["type"] == "error", refused
        assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_OPERATIONS", refused
