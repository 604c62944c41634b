"""The fast paths (gateway.fastpaths) under the real, pinned uvicorn and Strawberry.

Two gateways run side by side under uvicorn on loopback, on one PostgreSQL database and one
Redis: one with ``FAST_PATHS`` on, one with it off. For each fast path the tests show that it
is taken on the first and not on the second (its ``engaged`` count, and for HTTP the writes
on the server's real socket transport), and that both answer with the same bytes: the same
HTTP responses (errors included), the same websocket frames for the same events, and the
same send-mutation results (a send replayed on the other gateway by its idempotency key is
the same message, so both mapped the input alike). A third gateway shows the version guard:
with an installed version outside the proven range, the fast paths are off and it still
answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from websockets.typing import Subprotocol

from gateway import fastpaths
from gateway.entry.app import GatewayApp, create_app
from gateway.entry.migrations import upgrade_to_head
from gateway.fastpaths import FastPaths
from gateway.settings import Settings
from harness.asgi import run_uvicorn
from harness.servers import PostgresServer, RedisServer, free_port
from schema.context import Context
from tests.conftest import fresh_postgres_url


@dataclass
class Served:
    port: int
    app: GatewayApp

    @property
    def paths(self) -> FastPaths:
        paths: FastPaths = self.app.state.fast_paths
        return paths

    def engaged(self) -> dict[str, int]:
        return {p.name: p.engaged for p in self.paths.all()}


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[Served]:
    port = free_port()
    settings.public_base_url = f"http://127.0.0.1:{port}"
    app = create_app(settings)
    async with run_uvicorn(app, port):
        yield Served(port, app)


def settings_for(database_url: str, redis_url: str, tmp: Path, *, fast: bool) -> Settings:
    # No worker: accepted messages stay QUEUED, so both gateways see the same states.
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp,
        embedded_worker=False,
        api_key_cache_seconds=0.5,
        fast_paths=fast,
    )


@dataclass
class Pair:
    fast: Served
    plain: Served

    async def new_key(self) -> str:
        _, key = await self.fast.app.state.api.api_keys.create("fast-" + uuid.uuid4().hex[:10])
        assert isinstance(key, str)
        return key


@pytest.fixture(scope="module")
async def pair(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
    database_url = fresh_postgres_url(postgres)
    tmp = tmp_path_factory.mktemp("fast-paths")
    await upgrade_to_head(settings_for(database_url, redis_server.url, tmp, fast=True))
    async with (
        served(settings_for(database_url, redis_server.url, tmp, fast=True)) as fast,
        served(settings_for(database_url, redis_server.url, tmp, fast=False)) as plain,
    ):
        assert fast.paths.taken() == list(fastpaths.PROVEN_ON)
        assert plain.paths.taken() == []
        yield Pair(fast, plain)


# -- HTTP -----------------------------------------------------------------------------------


@contextlib.contextmanager
def server_writes(port: int) -> Iterator[Counter[object]]:
    """Writes to the real socket transports of the server on ``port``, per connection."""
    from asyncio.selector_events import _SelectorSocketTransport

    # Keyed by the transport itself: holding it keeps its id from being reused.
    counts: Counter[object] = Counter()
    write = _SelectorSocketTransport.write

    def counted(self: Any, data: Any) -> None:
        sockname = self.get_extra_info("sockname")
        if sockname is not None and sockname[1] == port:
            counts[self] += 1
        write(self, data)

    _SelectorSocketTransport.write = counted  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        _SelectorSocketTransport.write = write  # type: ignore[method-assign]


def request(
    method: str,
    path: str,
    body: object = None,
    *,
    key: str | None = None,
    headers: tuple[str, ...] = (),
    rid: str,
) -> bytes:
    payload = body if isinstance(body, bytes) else b"" if body is None else orjson.dumps(body)
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"X-Request-ID: {rid}",
        "Connection: close",
        *([f"Authorization: Bearer {key}"] if key else []),
        *(["Content-Type: application/json", f"Content-Length: {len(payload)}"] if body else []),
        *headers,
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + payload


async def exchange(port: int, raw: bytes) -> bytes:
    """The server's whole answer to one request on a connection of its own."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        await writer.wait_closed()


def without_date(response: bytes) -> bytes:
    head, sep, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + sep + body


PREVIEW = """query P($input: SendMessageInput!) { previewMessage(input: $input) {
  valid problems { field problem } normalizedFrom normalizedTo segments encoding
  nonGsmCharacters } }"""
SEND_FIELDS = """__typename
  ... on MessageAccepted { replayed message { id channel from to body attachments status
    segments encoding idempotencyKey sendAt metadata createdAt conversation { id } } }
  ... on InvalidInput { problems { field problem } }
  ... on IdempotencyConflict { reason }"""
SEND = f"mutation S($input: SendMessageInput!) {{ sendMessage(input: $input) {{ {SEND_FIELDS} }} }}"
SEND_MANY = (
    "mutation M($inputs: [SendMessageInput!]!) "
    f"{{ sendMessages(inputs: $inputs) {{ {SEND_FIELDS} }} }}"
)
SMS = {"channel": "SMS", "from": "+14155550100", "to": "+14155550199", "body": "hello"}


def http_operations(key: str) -> list[tuple[str, str, object, dict[str, Any]]]:
    """(method, path, body, options) of answers that do not depend on the gateway's state."""
    bad_sms = {**SMS, "to": "not a number"}
    return [
        ("POST", "/graphql", {"query": PREVIEW, "variables": {"input": SMS}}, {"key": key}),
        ("POST", "/graphql", {"query": PREVIEW, "variables": {"input": bad_sms}}, {"key": key}),
        ("POST", "/graphql", {"query": SEND, "variables": {"input": bad_sms}}, {"key": key}),
        (
            "POST",
            "/graphql",
            {"query": SEND_MANY, "variables": {"inputs": [bad_sms, {**SMS, "body": ""}]}},
            {"key": key},
        ),
        # Variables that do not coerce: graphql-core refuses them before any resolver.
        (
            "POST",
            "/graphql",
            {"query": SEND, "variables": {"input": {**SMS, "channel": "FAX"}}},
            {"key": key},
        ),
        ("POST", "/graphql", {"query": SEND, "variables": {"input": {"to": "x"}}}, {"key": key}),
        ("POST", "/graphql", {"query": '{ node(id: "nope") { id } }'}, {"key": key}),
        ("POST", "/graphql", {"query": "{ nope }"}, {"key": key}),
        ("POST", "/graphql", {"query": "{"}, {"key": key}),
        ("POST", "/graphql", b"{not json", {"key": key}),
        ("POST", "/graphql", {"query": PREVIEW, "variables": {"input": SMS}}, {}),
        (
            "GET",
            "/graphql?query=mutation%7BcancelMessage(id%3A%22x%22)%7B__typename%7D%7D",
            None,
            {"key": key},
        ),
        (
            "POST",
            "/graphql",
            {"query": "{ __typename }"},
            {"key": key, "headers": ("Accept: text/plain",)},
        ),
        ("GET", "/graphql", None, {"headers": ("Accept: text/html",)}),
        ("GET", "/health", None, {}),
        ("GET", "/nowhere", None, {}),
    ]


async def test_http_answers_are_the_same_bytes_in_one_write_only_with_fast_paths(
    pair: Pair,
) -> None:
    key = await pair.new_key()
    operations = http_operations(key)
    answers: dict[str, list[bytes]] = {}
    for name, served_ in (("fast", pair.fast), ("plain", pair.plain)):
        before = served_.engaged()
        with server_writes(served_.port) as writes:
            answers[name] = [
                await exchange(
                    served_.port,
                    request(method, path, body, rid=f"same-{n}", **options),
                )
                for n, (method, path, body, options) in enumerate(operations)
            ]
        after = served_.engaged()
        # One connection per request, each answered with one response.
        per_connection = sorted(writes.values())
        if served_ is pair.fast:
            assert per_connection == [1] * len(operations)
            assert after["one_write_responses"] - before["one_write_responses"] == len(operations)
        else:
            assert per_connection == [2] * len(operations)  # head, then body
            assert after == before == {name: 0 for name in fastpaths.PROVEN_ON}
    for n, (fast, plain) in enumerate(zip(answers["fast"], answers["plain"], strict=True)):
        assert fast.startswith(b"HTTP/1.1 "), fast
        assert without_date(fast) == without_date(plain), operations[n]
    statuses = {a.split(b" ", 2)[1] for a in answers["fast"]}
    assert {b"200", b"400", b"401", b"404", b"405", b"406"} <= statuses


# -- The send mutations -----------------------------------------------------------------------


def send_inputs(tag: str) -> list[dict[str, Any]]:
    """Inputs that use every field of SendMessageInput between them (metadata keys in the
    order PostgreSQL's jsonb keeps them, so that a replay reads back the same bytes)."""
    return [
        {**SMS, "idempotencyKey": f"{tag}-sms", "metadata": {"k": 1, "tags": ["a"]}},
        {
            "channel": "MMS",
            "from": "+14155550100",
            "to": "(415) 555-0142",
            "attachments": ["https://example.com/a.png"],
            "idempotencyKey": f"{tag}-mms",
        },
        {
            "channel": "EMAIL",
            "from": "Sender@Example.com",
            "to": "someone@example.com",
            "body": "Grüße",
            "sendAt": (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat(),
            "idempotencyKey": f"{tag}-email",
        },
    ]


async def send(served_: Served, key: str, body: dict[str, Any], rid: str) -> bytes:
    answer = await exchange(served_.port, request("POST", "/graphql", body, key=key, rid=rid))
    return answer.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("first", ["fast", "plain"])
async def test_sends_map_their_input_alike_on_either_path(pair: Pair, first: str) -> None:
    key = await pair.new_key()
    one, other = (pair.fast, pair.plain) if first == "fast" else (pair.plain, pair.fast)
    fast_before = pair.fast.paths.coerced_sends.engaged
    tag = uuid.uuid4().hex[:8]
    bodies = [{"query": SEND, "variables": {"input": i}} for i in send_inputs(tag)]
    bodies.append({"query": SEND_MANY, "variables": {"inputs": send_inputs(tag + "-many")}})
    for n, body in enumerate(bodies):
        accepted = await send(one, key, body, f"send-{n}")
        replayed = await send(other, key, body, f"send-{n}")
        assert b'"replayed":false' in accepted and b"IdempotencyConflict" not in accepted
        # The same message: the replaying path mapped every field as the accepting one did
        # (any difference would be an IdempotencyConflict).
        assert replayed == accepted.replace(b'"replayed":false', b'"replayed":true'), body
    # Each body ran once on each gateway.
    assert pair.fast.paths.coerced_sends.engaged - fast_before == len(bodies)
    assert pair.plain.paths.coerced_sends.engaged == 0


# -- The executor -----------------------------------------------------------------------------


@contextlib.contextmanager
def saving_garbage() -> Iterator[None]:
    """Inside the block the cyclic collector keeps what it finds unreachable in gc.garbage."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def contexts_collected(ports: tuple[int, ...]) -> dict[int, int]:
    """Request contexts the cyclic collector has found so far, by the port that served them."""
    gc.collect()
    found = dict.fromkeys(ports, 0)
    for obj in gc.garbage:
        if isinstance(obj, Context):
            found[obj.request.scope["server"][1]] += 1
    return found


async def test_a_finished_operation_is_freed_without_the_cyclic_collector_only_when_fast(
    pair: Pair,
) -> None:
    key = await pair.new_key()

    def bodies(tag: str) -> list[object]:
        return [
            {"query": PREVIEW, "variables": {"input": SMS}},
            {"query": SEND, "variables": {"input": {**SMS, "idempotencyKey": f"{tag}-one"}}},
            {"query": SEND_MANY, "variables": {"inputs": send_inputs(tag)}},
            {"query": '{ node(id: "nope") { id } }'},
        ]

    async def run(served_: Served, tag: str) -> None:
        for n, body in enumerate(bodies(tag)):
            answer = await exchange(
                served_.port, request("POST", "/graphql", body, key=key, rid=f"{tag}-{n}")
            )
            assert answer.startswith(b"HTTP/1.1 200 "), answer

    fast, plain = pair.fast, pair.plain
    tag = uuid.uuid4().hex[:8]
    wanted = len(bodies(tag))
    # Once before, not counted: a first run can stay referenced from the heap frozen at
    # startup after it ends (seen on the plain gateway), which would hide it from the count.
    for served_ in (fast, plain):
        await run(served_, f"{tag}-first")
    engaged_before = (fast.paths.acyclic_execution.engaged, plain.paths.acyclic_execution.engaged)
    with saving_garbage():
        for served_ in (fast, plain):
            await run(served_, tag)
        # A request's context (its request, response and loaders) reaches the collector only
        # when something cyclic holds it, and only once the server is done with the request,
        # which may be just after the client has the answer.
        for _ in range(100):
            collected = contexts_collected((fast.port, plain.port))
            if collected[plain.port] >= wanted:
                break
            await asyncio.sleep(0.05)
    assert collected == {fast.port: 0, plain.port: wanted}
    engaged = (fast.paths.acyclic_execution.engaged, plain.paths.acyclic_execution.engaged)
    assert (engaged[0] - engaged_before[0], engaged[1] - engaged_before[1]) == (wanted, 0)


# -- Websocket frames -----------------------------------------------------------------------

PROTOCOL = Subprotocol("graphql-transport-ws")
LEAVES = """subscription L($after: String) { messageEvents(after: $after) {
  id cursor messageId conversationId status kind occurredAt } }"""
NESTED = """subscription N($after: String) { messageEvents(after: $after) {
  __typename id status detail message { id status to idempotencyKey } } }"""
ACCEPTED_EVENTS = """query E($id: ID!) { message(id: $id) { events { cursor } } }"""
CANCEL = "mutation C($id: ID!) { cancelMessage(id: $id) { __typename } }"


async def graphql(served_: Served, key: str, query: str, variables: dict[str, Any]) -> Any:
    body = await send(served_, key, {"query": query, "variables": variables}, "ws-setup")
    data = orjson.loads(body)
    assert "errors" not in data, data
    return data["data"]


async def sent_message_id(served_: Served, key: str) -> str:
    data = await graphql(
        served_,
        key,
        "mutation($i: SendMessageInput!) { sendMessage(input: $i) "
        "{ ... on MessageAccepted { message { id } } } }",
        {"i": SMS},
    )
    message_id: str = data["sendMessage"]["message"]["id"]
    return message_id


async def frames_of(ws: Any, wanted: int) -> dict[str, list[str]]:
    """The raw text of the next ``wanted`` frames of each operation, by operation id."""
    frames: dict[str, list[str]] = {"1": [], "2": []}
    while any(len(f) < wanted for f in frames.values()):
        raw = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(raw, str), "a text frame"
        message = json.loads(raw)
        assert message["type"] == "next", message
        frames[message["id"]].append(raw)
    return frames


@contextlib.asynccontextmanager
async def subscribed(served_: Served, key: str, after: str) -> AsyncIterator[Any]:
    async with websockets.connect(
        f"ws://127.0.0.1:{served_.port}/graphql", subprotocols=[PROTOCOL]
    ) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        )
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        for op, query in (("1", LEAVES), ("2", NESTED)):
            payload = {"query": query, "variables": {"after": after}}
            await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))
        yield ws


async def test_live_frames_are_the_same_rendered_once_and_written_directly_only_when_fast(
    pair: Pair,
) -> None:
    key = await pair.new_key()
    # Two messages before subscribing: replaying the second's event tells that the live side
    # of each subscription is registered (it subscribes before it replays).
    first = await sent_message_id(pair.fast, key)
    cursor = (await graphql(pair.fast, key, ACCEPTED_EVENTS, {"id": first}))["message"]
    await sent_message_id(pair.fast, key)
    fast_was, plain_was = pair.fast.engaged(), pair.plain.engaged()
    async with (
        subscribed(pair.fast, key, cursor["events"][0]["cursor"]) as fast_ws,
        subscribed(pair.plain, key, cursor["events"][0]["cursor"]) as plain_ws,
    ):
        replayed = [await frames_of(ws, 1) for ws in (fast_ws, plain_ws)]
        assert replayed[0] == replayed[1]
        live: list[dict[str, list[str]]] = [{"1": [], "2": []}, {"1": [], "2": []}]
        # Through Redis, each event reaches both gateways' subscribers, one event at a time.
        third = await sent_message_id(pair.plain, key)
        for n, ws in enumerate((fast_ws, plain_ws)):
            for op, got in (await frames_of(ws, 1)).items():
                live[n][op] += got
        await graphql(pair.fast, key, CANCEL, {"id": third})
        for n, ws in enumerate((fast_ws, plain_ws)):
            for op, got in (await frames_of(ws, 1)).items():
                live[n][op] += got
    assert live[0] == live[1]
    statuses = [json.loads(f)["payload"]["data"]["messageEvents"]["status"] for f in live[0]["2"]]
    assert statuses == ["QUEUED", "CANCELED"]
    fast_now, plain_now = pair.fast.engaged(), pair.plain.engaged()
    # Two live events, two feeds (the two documents): each event rendered once per feed...
    assert fast_now["shared_rendering"] - fast_was["shared_rendering"] == 4
    # ... and written straight to the socket of a subscriber idle at the time (which each one
    # is, short of a scheduling accident: its last frame had reached the client already).
    assert fast_now["direct_frames"] - fast_was["direct_frames"] > 0
    assert plain_now == plain_was == {name: 0 for name in fastpaths.PROVEN_ON}


# -- The version guard ----------------------------------------------------------------------


async def test_outside_the_proven_versions_the_fast_paths_switch_themselves_off(
    pair: Pair,
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(fastpaths, "_reported", set())
    monkeypatch.setattr(fastpaths, "installed_version", lambda _: "999.0")
    key = await pair.new_key()
    database_url = pair.fast.app.state.api.settings.effective_database_url
    async with served(settings_for(database_url, redis_server.url, tmp_path, fast=True)) as old:
        assert old.paths.taken() == []
        with server_writes(old.port) as writes:
            preview = {"query": PREVIEW, "variables": {"input": SMS}}
            answer = await exchange(
                old.port, request("POST", "/graphql", preview, key=key, rid="guard")
            )
            tag = uuid.uuid4().hex[:8]
            sent = await send(
                old, key, {"query": SEND, "variables": {"input": send_inputs(tag)[0]}}, "g"
            )
        assert sorted(writes.values()) == [2, 2]
        assert b'"valid":true' in answer and b'"replayed":false' in sent
        assert old.engaged() == {name: 0 for name in fastpaths.PROVEN_ON}
