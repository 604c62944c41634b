"""HTTP responses in one write: status line, headers and body together.

uvicorn's HTTP protocol writes a response's head when the app sends ``http.response.start``
and its body when the app sends ``http.response.body``: two writes to the socket for every
GraphQL answer, and on loopback a write costs more than building the whole response. When
the body comes in one message (as every response of this app does), ``OneWriteResponses``
lets uvicorn build both parts as usual but collects its writes and hands them to the socket
at once. Streamed responses (``more_body``) and other servers go the ordinary way.

It relies on uvicorn's internals (the request-response cycle behind its ``send`` and that
cycle's ``transport`` attribute), so it is a fast path (``gateway.fastpaths``): with it off,
``one_write_responses`` leaves the app as it is and uvicorn writes as it always does.
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.fastpaths import FastPath


def one_write_responses(app: ASGIApp, path: FastPath) -> ASGIApp:
    """``app`` answering in one write when the fast path is on; ``app`` itself otherwise."""
    return OneWriteResponses(app, path) if path.enabled else app


class _Collect:
    """Stands in for the server's transport while one response is being built."""

    __slots__ = ("chunks", "close_requested", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.chunks: list[bytes] = []
        self.close_requested = False

    def write(self, data: bytes) -> None:
        if data:
            self.chunks.append(bytes(data))

    def close(self) -> None:
        self.close_requested = True

    def is_closing(self) -> bool:
        return bool(self.close_requested or self.real.is_closing())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def flush(self) -> None:
        if self.chunks and not self.real.is_closing():
            self.real.write(b"".join(self.chunks))
        if self.close_requested:
            self.real.close()


def _cycle_of(send: Send) -> Any:
    """uvicorn's request-response cycle behind its own ``send``, or None."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if callable(getattr(transport, "write", None)) and hasattr(cycle, "response_started"):
        return cycle
    return None


class OneWriteResponses:
    """Pure ASGI; must sit where ``send`` is still the server's own (first in the stack)."""

    def __init__(self, app: ASGIApp, path: FastPath) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cycle = _cycle_of(send) if scope["type"] == "http" else None
        if cycle is None:
            await self.app(scope, receive, send)
            return
        held: Message | None = None

        async def send_joined(message: Message) -> None:
            nonlocal held
            if held is None and message["type"] == "http.response.start":
                held = message
                return
            if held is not None:
                start, held = held, None
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    self.path.engaged += 1
                    await _in_one_write(cycle, send, start, message)
                    return
                await send(start)
            await send(message)

        try:
            await self.app(scope, receive, send_joined)
        finally:
            if held is not None:  # a response started and never given a body
                start, held = held, None
                with contextlib.suppress(Exception):
                    await send(start)


async def _in_one_write(cycle: Any, send: Send, start: Message, body: Message) -> None:
    real = cycle.transport
    collect = _Collect(real)
    cycle.transport = collect
    try:
        await send(start)
        await send(body)
    finally:
        cycle.transport = real
        collect.flush()
