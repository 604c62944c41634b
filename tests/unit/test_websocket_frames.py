"""gateway.websocket.FrameWriter: write a frame at once only when the server would not wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from gateway.websocket import FrameWriter


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing


class FakeServerProtocol:
    """The state uvicorn's websockets (sans-I/O) protocol keeps, with a real ``conn``."""

    def __init__(self) -> None:
        self.conn = ServerProtocol(state=State.OPEN)
        self.transport = FakeTransport()
        self.writable = asyncio.Event()
        self.writable.set()
        self.handshake_complete = True
        self.close_sent = False
        self.disconnected = False
        self.initial_response: Any = None

    async def send(self, message: Any) -> None:
        raise AssertionError("not used")


def frames(protocol: FakeServerProtocol) -> list[bytes]:
    """Payloads of the written frames: one unmasked text frame per write."""
    out: list[bytes] = []
    for chunk in protocol.transport.written:
        assert chunk[0] == 0x80 | Opcode.TEXT.value  # FIN + text
        length = chunk[1] & 0x7F
        out.append(chunk[4:] if length == 126 else chunk[2:])
    return out


async def test_writes_a_text_frame_when_the_socket_takes_it() -> None:
    protocol = FakeServerProtocol()
    writer = FrameWriter.of(protocol.send)
    assert writer is not None
    assert writer.send_text(b'{"id":"1"}')
    assert writer.send_text(b"x" * 300)
    assert frames(protocol) == [b'{"id":"1"}', b"x" * 300]


@pytest.mark.parametrize(
    "state",
    ["paused", "closing_transport", "close_sent", "disconnected", "no_handshake", "http_reply"],
)
async def test_declines_whenever_the_server_would_wait_or_refuse(state: str) -> None:
    protocol = FakeServerProtocol()
    if state == "paused":
        protocol.writable.clear()
    elif state == "closing_transport":
        protocol.transport.closing = True
    elif state == "close_sent":
        protocol.close_sent = True
    elif state == "disconnected":
        protocol.disconnected = True
    elif state == "no_handshake":
        protocol.handshake_complete = False
    else:
        protocol.initial_response = (403, [], b"")
    writer = FrameWriter.of(protocol.send)
    assert writer is not None
    assert not writer.send_text(b"{}")
    assert protocol.transport.written == []


async def test_declines_when_the_protocol_state_refuses_the_frame() -> None:
    protocol = FakeServerProtocol()
    protocol.conn = ServerProtocol(state=State.CLOSED)
    writer = FrameWriter.of(protocol.send)
    assert writer is not None
    assert not writer.send_text(b"{}")
    assert protocol.transport.written == []


def test_only_a_server_protocol_send_is_recognised() -> None:
    async def plain_send(message: Any) -> None:
        return None

    assert FrameWriter.of(plain_send) is None
    assert FrameWriter.of(FakeTransport().write) is None  # type: ignore[arg-type]
