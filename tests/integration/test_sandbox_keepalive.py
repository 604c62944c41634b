"""The sandbox's minimal callback client against a real socket server, on both event loops.

The server writes its answers by hand so that each way an HTTP/1.1 answer can end is covered:
a Content-Length, chunked encoding, and the end of the connection; and that connections are
reused only when the server allows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from providers.sandbox_app.keepalive import KeepAliveClient, TransportFailure

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run(loop: str, coro: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(coro)


class Server:
    """Reads one request at a time per connection and answers with the next canned answer."""

    def __init__(self, answers: list[bytes]) -> None:
        #: An answer ending in CLOSE is followed by the server hanging up.
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = self.answers.pop(0)
                hang_up = answer.endswith(CLOSE)
                writer.write(answer.removesuffix(CLOSE))
                await writer.drain()
                if hang_up:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def with_server(
    answers: list[bytes], check: Callable[[Server, str], Awaitable[None]]
) -> None:
    server = Server(answers)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        await check(server, f"http://127.0.0.1:{port}")
    finally:
        listener.close()
        await listener.wait_closed()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CLOSE = b"<close>"


@pytest.mark.parametrize("loop", LOOPS)
def test_requests_go_out_whole_and_connections_are_reused(loop: str) -> None:
    async def check(server: Server, url: str) -> None:
        client = KeepAliveClient(max_connections=4, timeout=5)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Sig": "abc="}
        for index in range(3):
            status = await client.post(f"{url}/hook?mid={index}", f"n={index}".encode(), headers)
            assert status == 200
        await client.aclose()
        assert server.connections == 1
        first = server.requests[0].decode()
        assert first.startswith("POST /hook?mid=0 HTTP/1.1\r\n")
        assert "\r\nHost: 127.0.0.1:" in first and "\r\nX-Sig: abc=\r\n" in first
        assert "\r\nContent-Length: 3\r\n" in first and first.endswith("\r\n\r\nn=0")
        assert [r.rpartition(b"\r\n\r\n")[2] for r in server.requests] == [b"n=0", b"n=1", b"n=2"]

    run(loop, with_server([OK, OK, OK], check))


@pytest.mark.parametrize("loop", LOOPS)
def test_every_way_an_answer_can_end(loop: str) -> None:
    answers = [
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" + CLOSE,
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end" + CLOSE,
    ]

    async def check(server: Server, url: str) -> None:
        client = KeepAliveClient(max_connections=4, timeout=5)
        statuses = [await client.post(url + "/hook", b"x", {}) for _ in range(4)]
        await client.aclose()
        assert statuses == [503, 204, 403, 200]
        # Closed by the server after the 403 and after the answer read until the end.
        assert server.connections == 2

    run(loop, with_server(answers, check))


@pytest.mark.parametrize("loop", LOOPS)
def test_no_answer_is_a_transport_failure(loop: str) -> None:
    async def check(server: Server, url: str) -> None:
        client = KeepAliveClient(max_connections=4, timeout=5)
        with pytest.raises(TransportFailure):
            await client.post(url + "/hook", b"x", {})  # the server hangs up without answering
        assert await client.post(url + "/hook", b"x", {}) == 200  # a fresh connection
        await client.aclose()

    run(loop, with_server([CLOSE, OK], check))


@pytest.mark.parametrize("loop", LOOPS)
def test_unreachable_and_silent_servers_fail_in_time(loop: str) -> None:
    async def check() -> None:
        client = KeepAliveClient(max_connections=4, timeout=0.3)
        with pytest.raises(TransportFailure):
            await client.post("http://127.0.0.1:1/hook", b"x", {})

        hung_up = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(1024):  # never answers; ends when the client gives up
                pass
            writer.close()
            hung_up.set()

        listener = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        with pytest.raises(TransportFailure):
            await client.post(f"http://127.0.0.1:{port}/hook", b"x", {})
        await asyncio.wait_for(hung_up.wait(), 5)
        listener.close()
        await listener.wait_closed()
        await client.aclose()

    run(loop, check())
