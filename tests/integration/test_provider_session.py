"""providers.http.ProviderSession, the one outbound HTTP client (provider calls, attachment
fetches, sandbox callbacks), against a real socket server, on both event loops.

The server writes its answers by hand so that each way an HTTP/1.1 answer can end is covered
(a Content-Length, chunked encoding, the end of the connection), and so that what the client
sends, how it reuses connections and how it fails can be seen from the other side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from harness.servers import free_port
from providers.http import ProviderSession, TransportError, transport_error

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#: An answer ending in CLOSE is followed by the server hanging up; CLOSE alone: no answer.
CLOSE = b"<close>"
#: No answer at all, the connection held open until the client gives up.
SILENT = b"<silent>"


def run(loop: str, coro: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(coro)


def session(**overrides: Any) -> ProviderSession:
    options: dict[str, Any] = {"max_connections": 4, "connect_timeout": 5, "read_timeout": 5}
    return ProviderSession(**(options | overrides))


class Server:
    """Reads one request at a time per connection and answers with the next canned answer."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.hung_up = asyncio.Event()
        self.received = asyncio.Event()

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
                self.received.set()
                answer = self.answers.pop(0)
                if answer == SILENT:
                    while await reader.read(1024):  # ends when the client gives up
                        pass
                    self.hung_up.set()
                    break
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


@pytest.mark.parametrize("loop", LOOPS)
def test_requests_go_out_whole_and_connections_are_kept_alive(loop: str) -> None:
    set_cookie = b"HTTP/1.1 200 OK\r\nSet-Cookie: track=me\r\nContent-Length: 2\r\n\r\nok"

    async def check(server: Server, url: str) -> None:
        client = session()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Sig": "abc="}
        # By name: a cookie jar would keep a cookie set for a name (not for an IP address).
        named = url.replace("127.0.0.1", "localhost")
        for index in range(3):
            response = await client.post(
                f"{named}/hook?mid={index}", body=f"n={index}".encode(), headers=headers
            )
            assert (response.status_code, response.content) == (200, b"ok")
        await client.aclose()
        assert server.connections == 1
        first = server.requests[0].decode()
        assert first.startswith("POST /hook?mid=0 HTTP/1.1\r\n")
        assert "\r\nHost: localhost:" in first and "\r\nX-Sig: abc=\r\n" in first
        assert "\r\nContent-Length: 3\r\n" in first and first.endswith("\r\n\r\nn=0")
        assert [r.rpartition(b"\r\n\r\n")[2] for r in server.requests] == [b"n=0", b"n=1", b"n=2"]
        # Credentials travel per request only, and no cookie is kept for later requests.
        later = b"".join(server.requests[1:]).lower()
        assert b"authorization" not in later and b"cookie" not in later

    run(loop, with_server([set_cookie, OK, OK], check))


@pytest.mark.parametrize("loop", LOOPS)
def test_every_way_an_answer_can_end(loop: str) -> None:
    answers = [
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
        b"4\r\nbusy\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" + CLOSE,
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end" + CLOSE,
    ]

    async def check(server: Server, url: str) -> None:
        client = session()
        responses = [await client.post(url + "/hook", body=b"x", headers={}) for _ in range(4)]
        await client.aclose()
        assert [(r.status_code, r.content) for r in responses] == [
            (503, b"busy"),
            (204, b""),
            (403, b""),
            (200, b"until the end"),
        ]
        assert responses[0].headers.get("retry-after") == "7"
        # Closed by the server after the 403 and after the answer read until the end.
        assert server.connections == 2

    run(loop, with_server(answers, check))


@pytest.mark.parametrize("loop", LOOPS)
def test_no_answer_after_the_request_left_is_ambiguous(loop: str) -> None:
    async def check(server: Server, url: str) -> None:
        client = session()
        with pytest.raises(TransportError) as caught:
            await client.post(url + "/hook", body=b"x", headers={})  # hung up, no answer
        assert not caught.value.unsent
        assert transport_error("twilio", caught.value).ambiguous
        response = await client.post(url + "/hook", body=b"x", headers={})  # a fresh connection
        assert response.status_code == 200
        await client.aclose()

    run(loop, with_server([CLOSE, OK], check))


@pytest.mark.parametrize("loop", LOOPS)
def test_a_refused_connection_never_left_and_a_silent_server_times_out_ambiguous(
    loop: str,
) -> None:
    async def check(server: Server, url: str) -> None:
        client = session(connect_timeout=1, read_timeout=0.3)
        with pytest.raises(TransportError) as refused:
            await client.post(f"http://127.0.0.1:{free_port()}/hook", body=b"x", headers={})
        assert (refused.value.code, refused.value.unsent) == ("ConnectError", True)
        error = transport_error("sendgrid", refused.value)
        assert (error.code, error.ambiguous) == ("CONNECTERROR", False)

        with pytest.raises(TransportError) as silent:
            await client.post(url + "/hook", body=b"x", headers={})
        assert (silent.value.code, silent.value.unsent) == ("ReadTimeout", False)
        assert transport_error("sendgrid", silent.value).ambiguous
        await asyncio.wait_for(server.hung_up.wait(), 5)  # the connection is given up
        await client.aclose()

    run(loop, with_server([SILENT], check))


@pytest.mark.parametrize("loop", LOOPS)
def test_the_pool_is_bounded_and_waiting_for_it_is_bounded_like_a_connect(loop: str) -> None:
    async def check(server: Server, url: str) -> None:
        client = session(max_connections=1, connect_timeout=0.3, read_timeout=2)
        # The one connection is held by a request the server never answers: the next request
        # cannot get one, and gives up before it was ever sent (safe to retry).
        held = asyncio.create_task(client.post(url + "/held", body=b"x", headers={}))
        await asyncio.wait_for(server.received.wait(), 5)
        with pytest.raises(TransportError) as waited:
            await client.post(url + "/next", body=b"x", headers={})
        assert (waited.value.code, waited.value.unsent) == ("ConnectTimeout", True)
        with pytest.raises(TransportError):
            await held
        await client.aclose()
        assert len(server.requests) == 1 and server.connections == 1

    run(loop, with_server([SILENT], check))


@pytest.mark.parametrize("loop", LOOPS)
def test_callbacks_may_wait_for_a_free_connection(loop: str) -> None:
    async def check(server: Server, url: str) -> None:
        client = session(max_connections=1, wait_for_connections=True)
        statuses = await asyncio.gather(
            *(client.post(f"{url}/hook/{i}", body=b"x", headers={}) for i in range(5))
        )
        await client.aclose()
        assert [r.status_code for r in statuses] == [200] * 5
        assert server.connections == 1

    run(loop, with_server([OK] * 5, check))


@pytest.mark.parametrize("loop", LOOPS)
def test_a_streamed_answer_reports_redirects_and_reads_in_pieces(loop: str) -> None:
    body = b"x" * 200_000
    answers = [
        b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
    ]

    async def check(server: Server, url: str) -> None:
        client = session()
        async with client.stream(url + "/file") as first:
            assert (first.status_code, first.redirect_location) == (302, "/elsewhere")
        async with client.stream(url + "/elsewhere") as second:
            assert second.redirect_location is None
            assert second.headers.get("content-type") == "application/pdf"
            pieces = [piece async for piece in second.chunks()]
        await client.aclose()
        assert b"".join(pieces) == body and len(pieces) > 1
        assert server.connections == 1

    run(loop, with_server(answers, check))
