"""gateway.web.responses.OneWriteResponses with uvicorn's own HTTP request-response cycle."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.fastpaths import FastPath, FastPaths
from gateway.web.responses import OneWriteResponses
from tests.unit.fakes import FakeTransport

PATH = FastPath("one_write_responses", enabled=True)


def cycle(transport: FakeTransport, *, keep_alive: bool = True) -> RequestResponseCycle:
    scope: Any = {"type": "http", "method": "POST", "path": "/graphql", "headers": []}
    return RequestResponseCycle(
        scope,
        transport,  # type: ignore[arg-type]
        FlowControl(transport),  # type: ignore[arg-type]
        logging.getLogger("test"),
        logging.getLogger("test.access"),
        False,
        [],
        asyncio.Event(),
        False,
        keep_alive,
        lambda: None,
    )


async def respond(messages: list[dict[str, Any]], transport: FakeTransport, **kw: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    server = cycle(transport, **kw)
    await OneWriteResponses(app, PATH)(server.scope, server.receive, server.send)


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"{}"}


async def test_head_and_body_go_out_in_one_write() -> None:
    transport = FakeTransport()
    await respond([START, BODY], transport)
    assert len(transport.written) == 1
    head, _, body = transport.written[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 2" in head
    assert body == b"{}"
    assert not transport.closed


async def test_a_closing_response_is_written_before_the_close() -> None:
    transport = FakeTransport()
    await respond([START, BODY], transport, keep_alive=False)
    assert len(transport.written) == 1 and transport.written[0].endswith(b"{}")
    assert transport.closed


async def test_a_streamed_body_is_written_as_it_comes() -> None:
    transport = FakeTransport()
    start = {"type": "http.response.start", "status": 200, "headers": []}
    await respond(
        [
            start,
            {"type": "http.response.body", "body": b"a", "more_body": True},
            {"type": "http.response.body", "body": b"b"},
        ],
        transport,
    )
    assert len(transport.written) == 3  # head, chunk, last chunk
    assert b"".join(transport.written).endswith(b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n")


async def test_a_start_without_body_is_still_sent_when_the_app_fails() -> None:
    transport = FakeTransport()
    with pytest.raises(RuntimeError):
        await respond([START, {"type": "boom"}], transport)
    with pytest.raises(ZeroDivisionError):

        async def failing(scope: Any, receive: Any, send: Any) -> None:
            await send(START)
            raise ZeroDivisionError

        server = cycle(transport)
        await OneWriteResponses(failing, PATH)(server.scope, server.receive, server.send)
    assert transport.written and transport.written[-1].startswith(b"HTTP/1.1 200 OK")


async def test_other_servers_pass_through() -> None:
    sent: list[Any] = []

    async def plain_send(message: Any) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send(BODY)

    await OneWriteResponses(app, PATH)({"type": "http"}, plain_send, plain_send)
    assert sent == [START, BODY]


async def test_the_gateway_app_answers_in_one_write_through_its_whole_stack() -> None:
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from gateway.entry.app import GatewayApp
    from gateway.observability import MetricsMiddleware, RequestIdMiddleware

    async def endpoint(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = GatewayApp(
        routes=[Route("/graphql", endpoint, methods=["POST"])],
        middleware=[Middleware(RequestIdMiddleware), Middleware(MetricsMiddleware)],
        fast_paths=FastPaths(),
    )
    transport = FakeTransport()
    server = cycle(transport)
    server.scope.update({"query_string": b"", "root_path": "", "scheme": "http"})
    server.more_body = False
    await app(server.scope, server.receive, server.send)
    assert len(transport.written) == 1
    head, _, body = transport.written[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"x-request-id: " in head
    assert body == b'{"ok":true}'
