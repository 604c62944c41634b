"""Pre-rendered websocket frames written straight through uvicorn's websocket protocol.

Under uvicorn's websockets (sans-I/O) protocol, ``direct_frames`` lets a subscription feed
write a ready-made frame synchronously when the socket can take it: a feed then delivers to a
thousand idle subscribers in one loop, without waking a thousand tasks and without the ASGI
send chain (which, for a websocket past its handshake, only forwards ``websocket.send``
anyway).

It relies on uvicorn's internals (the protocol object behind its ``send`` and that object's
state), so it is a fast path (``gateway.fastpaths``): with it off, ``direct_frames`` leaves
the app as it is, ``frame_writer`` finds no writer, and every frame goes through the awaited
``websocket.send``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.fastpaths import FastPath

FRAMES_EXTENSION = "gateway.websocket.frames"


def direct_frames(app: ASGIApp, path: FastPath) -> ASGIApp:
    """``app`` offering its websockets a ``FrameWriter`` when the fast path is on."""
    return DirectFrames(app, path) if path.enabled else app


def frame_writer(scope: Scope) -> FrameWriter | None:
    """The websocket's ``FrameWriter``, if ``direct_frames`` gave it one."""
    extensions = scope.get("extensions") or {}
    writer: FrameWriter | None = extensions.get(FRAMES_EXTENSION)
    return writer


class FrameWriter:
    """Writes a text frame now, if the server's websocket protocol can take it without waiting.

    Mirrors what uvicorn's websockets (sans-I/O) protocol does for ``websocket.send`` once the
    handshake is done; declines (False) whenever that would wait or fail, and the caller then
    goes the ordinary, awaited way.

    The frame is framed at once but reaches the socket at the end of the event-loop pass, in
    one write with every other frame written meanwhile: events arrive in bursts, and a write
    to a socket costs more than framing. Order is kept: the server's own sends flush the same
    connection buffer (``data_to_send``) before anything they write.
    """

    __slots__ = ("_flush_scheduled", "_loop", "_path", "_protocol")

    def __init__(self, protocol: Any, path: FastPath) -> None:
        self._protocol = protocol
        self._path = path
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False

    @classmethod
    def of(cls, send: Send, path: FastPath) -> FrameWriter | None:
        protocol = getattr(send, "__self__", None)
        if all(hasattr(protocol, a) for a in _PROTOCOL_STATE) and callable(
            getattr(getattr(protocol, "conn", None), "send_text", None)
        ):
            return cls(protocol, path)
        return None

    def send_text(self, data: bytes) -> bool:
        p = self._protocol
        if (
            not p.handshake_complete
            or p.close_sent
            or p.disconnected
            or p.initial_response is not None
            or not p.writable.is_set()
            or p.transport.is_closing()
        ):
            return False
        try:
            p.conn.send_text(data)
        except Exception:  # the protocol's state refused it: let the awaited path report it
            return False
        self._path.engaged += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        p = self._protocol
        output = p.conn.data_to_send()  # empty when a send of the server's took it already
        if output and not p.transport.is_closing():
            p.transport.write(b"".join(output))


_PROTOCOL_STATE = (
    "handshake_complete",
    "close_sent",
    "disconnected",
    "initial_response",
    "writable",
    "transport",
)


class DirectFrames:
    """Pure ASGI: hands the server's websocket protocol to the app as a ``FrameWriter``.

    Must sit first in the middleware stack, where ``send`` is still the server's own.
    """

    def __init__(self, app: ASGIApp, path: FastPath) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            writer = FrameWriter.of(send, self.path)
            if writer is not None:
                scope.setdefault("extensions", {})[FRAMES_EXTENSION] = writer
        await self.app(scope, receive, send)
