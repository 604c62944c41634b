"""gateway.web.frames.FrameWriter: write a frame at once only when the server would not wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from gateway.fastpaths import FastPath
from gateway.web.frames import FrameWriter
from tests.unit.fakes import FakeTransport

PATH = FastPath("direct_frames", enabled=True)


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
    """Payloads of the written frames (unmasked text frames, any number per write)."""
    out: list[bytes] = []
    data = b"".join(protocol.transport.written)
    while data:
        assert data[0] == 0x80 | Opcode.TEXT.value  # FIN + text
        length = data[1] & 0x7F
        start = 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        out.append(data[start : start + length])
        data = data[start + length :]
    return out


def writer_of(protocol: FakeServerProtocol) -> FrameWriter:
    writer = FrameWriter.of(protocol.send, PATH)
    assert writer is not None, "the server protocol's send was not recognised"
    return writer


async def next_pass() -> None:
    await asyncio.sleep(0)


async def test_writes_a_text_frame_when_the_socket_takes_it() -> None:
    protocol = FakeServerProtocol()
    writer = writer_of(protocol)
    assert writer.send_text(b'{"id":"1"}')
    await next_pass()
    assert writer.send_text(b"x" * 300)
    await next_pass()
    assert frames(protocol) == [b'{"id":"1"}', b"x" * 300]
    assert len(protocol.transport.written) == 2


async def test_frames_of_one_loop_pass_go_out_in_one_write() -> None:
    protocol = FakeServerProtocol()
    writer = writer_of(protocol)
    for n in range(5):
        assert writer.send_text(b'{"n":%d}' % n)
    assert protocol.transport.written == []  # framed, not yet written
    await next_pass()
    assert len(protocol.transport.written) == 1
    assert frames(protocol) == [b'{"n":%d}' % n for n in range(5)]
    await next_pass()
    assert len(protocol.transport.written) == 1  # nothing written twice


async def test_a_send_of_the_server_in_between_keeps_the_order() -> None:
    protocol = FakeServerProtocol()
    writer = writer_of(protocol)
    assert writer.send_text(b"first")
    # What uvicorn does for an awaited websocket.send: frame, then write the whole buffer.
    protocol.conn.send_text(b"second")
    protocol.transport.write(b"".join(protocol.conn.data_to_send()))
    assert writer.send_text(b"third")
    await next_pass()
    assert frames(protocol) == [b"first", b"second", b"third"]


async def test_nothing_is_written_once_the_transport_closes() -> None:
    protocol = FakeServerProtocol()
    writer = writer_of(protocol)
    assert writer.send_text(b"late")
    protocol.transport.closed = True
    await next_pass()
    assert protocol.transport.written == []


@pytest.mark.parametrize(
    "state",
    [
        "paused",
        "closing_transport",
        "close_sent",
        "disconnected",
        "no_handshake",
        "http_reply",
        "protocol_closed",
    ],
)
async def test_declines_whenever_the_server_would_wait_or_refuse(state: str) -> None:
    protocol = FakeServerProtocol()
    if state == "paused":
        protocol.writable.clear()
    elif state == "closing_transport":
        protocol.transport.closed = True
    elif state == "close_sent":
        protocol.close_sent = True
    elif state == "disconnected":
        protocol.disconnected = True
    elif state == "no_handshake":
        protocol.handshake_complete = False
    elif state == "http_reply":
        protocol.initial_response = (403, [], b"")
    else:  # the protocol's own state refuses the frame
        protocol.conn = ServerProtocol(state=State.CLOSED)
    writer = writer_of(protocol)
    assert not writer.send_text(b"{}")
    await next_pass()
    assert protocol.transport.written == []


async def test_only_a_server_protocol_send_is_recognised() -> None:
    async def plain_send(message: Any) -> None:
        return None

    assert FrameWriter.of(plain_send, PATH) is None
    assert FrameWriter.of(FakeTransport().write, PATH) is None  # type: ignore[arg-type]
