"""The /graphql body limit on real servers: enforced while reading, before the key is checked.

Raw sockets, so that the test controls what is sent and when: a body is sent only in part, and
the answer must come while the rest is still unsent (a server waiting for the whole body would
never answer). Oversized posts without a key get 413, not 401: nothing is authenticated or
parsed first. Under sixteen concurrent 50 MB posts a real ``messaging-gateway serve`` keeps its
peak memory bounded and goes on serving other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from gateway.settings import Settings
from harness.http import loopback_client
from harness.processes import Process, embedded_serve
from tests.conftest import serve

LIMIT = 64 << 10
QUERY = "query Pad($pad: String) { __typename }"
#: Guards against hanging (a server that waits for the whole body), not timing assertions.
ANSWER_WITHIN = 30.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def head(port: int, extra: dict[str, str]) -> bytes:
    lines = [
        "POST /graphql HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return Answer(status, headers, json.loads(body))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def body_start() -> bytes:
    """A well-formed start of a GraphQL request that a pad string then makes long."""
    return json.dumps({"query": QUERY, "variables": {"pad": ""}})[:-3].encode()


def assert_too_large(answer: Answer, request_id: str, limit: int) -> None:
    assert answer.status == 413, answer
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["x-request-id"] == request_id
    [error] = answer.body["errors"]
    assert error["extensions"] == {
        "code": "PAYLOAD_TOO_LARGE",
        "maxBytes": limit,
        "requestId": request_id,
    }


@pytest.fixture(scope="module")
async def small_limit(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("body-limit"), graphql_max_body_bytes=LIMIT
    )
    async with serve(settings) as (url, _):
        yield url


async def answer_to(port: int, *parts: bytes) -> Answer:
    """Sends ``parts`` on a fresh connection and reads the answer, whether or not they make a
    whole request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.writelines(parts)
        await writer.drain()
        return await asyncio.wait_for(read_answer(reader), ANSWER_WITHIN)
    finally:
        writer.close()


async def test_a_chunked_body_is_refused_once_it_passes_the_limit_before_it_ends(
    small_limit: str,
) -> None:
    port, request_id = port_of(small_limit), "chunked-" + uuid.uuid4().hex
    # No last chunk: the body never ends, so only a limit enforced while reading answers.
    answer = await answer_to(
        port,
        head(port, {"Transfer-Encoding": "chunked", "X-Request-ID": request_id}),
        chunked(body_start()),
        *[chunked(b"x" * 8192)] * (LIMIT // 8192 + 1),
    )
    assert_too_large(answer, request_id, LIMIT)


async def test_a_declared_length_over_the_limit_is_refused_unread(small_limit: str) -> None:
    port, request_id = port_of(small_limit), "declared-" + uuid.uuid4().hex
    # Claims a terabyte and sends a few bytes of it.
    answer = await answer_to(
        port,
        head(port, {"Content-Length": str(10**12), "X-Request-ID": request_id}),
        body_start(),
    )
    assert_too_large(answer, request_id, LIMIT)


async def test_a_body_within_the_limit_is_handled_as_usual(small_limit: str) -> None:
    pad = "x" * (LIMIT - 200)
    async with loopback_client(timeout=30) as http:
        response = await http.post(
            f"{small_limit}/graphql", json={"query": QUERY, "variables": {"pad": pad}}
        )
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# --- a real `messaging-gateway serve` under abuse ------------------------------------------

ABUSE_LIMIT = 4 << 20
POST_BYTES = 50_000_000
POSTS = 16


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), which no sampling can miss."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Process, str, str]]:
    async with embedded_serve(tmp_path, GRAPHQL_MAX_BODY_BYTES=str(ABUSE_LIMIT)) as running:
        yield running


async def abusive_post(port: int, chunked_body: bool) -> int:
    """A well-formed 50 MB request without a key, streamed until the server answers (or all of
    it is sent); its status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = (
        {"Transfer-Encoding": "chunked"} if chunked_body else {"Content-Length": str(POST_BYTES)}
    )
    start, end = b'{"query": "{ __typename }", "variables": {"pad": "', b'"}}'
    piece = b"a" * (256 << 10)

    def frame(data: bytes) -> bytes:
        return chunked(data) if chunked_body else data

    try:
        writer.write(head(port, framing))
        answer = asyncio.create_task(read_answer(reader))
        writer.write(frame(start))
        left = POST_BYTES - len(start) - len(end)
        while left and not answer.done():
            size = min(left, len(piece))
            writer.write(frame(piece[:size]))
            left -= size
            await writer.drain()
        if not left:
            writer.write(frame(end) + (b"0\r\n\r\n" if chunked_body else b""))
        return (await asyncio.wait_for(answer, ANSWER_WITHIN)).status
    finally:
        writer.close()


async def test_sixteen_concurrent_50_mb_posts_keep_memory_bounded_and_others_served(
    served: tuple[Process, str, str],
) -> None:
    proc, url, key = served
    port = port_of(url)
    async with loopback_client(timeout=60) as http:
        query = {"query": "{ conversations { edges { cursor } } }"}
        auth = {"Authorization": f"Bearer {key}"}
        assert (await http.post(f"{url}/graphql", json=query, headers=auth)).status_code == 200
        before = peak_rss_kib(proc.pid)

        abuse = asyncio.gather(*(abusive_post(port, i % 2 == 0) for i in range(POSTS)))
        served_meanwhile = []
        while not abuse.done():
            response = await http.post(f"{url}/graphql", json=query, headers=auth)
            served_meanwhile.append(response.status_code)
        statuses = await abuse
        after = peak_rss_kib(proc.pid)

    assert statuses == [413] * POSTS
    assert served_meanwhile and set(served_meanwhile) == {200}, served_meanwhile
    # Each post holds at most the limit before it is refused; unlimited, each held all of
    # its 50 MB (twice, while joined) and its parsed copy.
    growth_mib = (after - before) / 1024
    assert growth_mib < POSTS * ABUSE_LIMIT / (1 << 20) + 128, growth_mib
    assert proc.alive


async def test_a_websocket_message_over_the_limit_closes_the_socket(
    served: tuple[Process, str, str],
) -> None:
    _, url, key = served
    ws_url = url.replace("http://", "ws://") + "/graphql"
    ws = await websockets.connect(ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    try:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connection_ack"
        pad = "x" * (ABUSE_LIMIT + 1)
        subscribe = {"query": QUERY, "variables": {"pad": pad}}
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
            await asyncio.wait_for(ws.recv(), ANSWER_WITHIN)
    finally:
        with contextlib.suppress(ConnectionClosed):
            await ws.close()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value
