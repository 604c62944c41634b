"""workers.pubsub: RESP2 parsing of what a subscribed connection receives, in any chunking."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.fakes import FakeTransport
from workers.pubsub import Subscriber, _Protocol, command


def push(channel: bytes, payload: bytes) -> bytes:
    return command(b"message", channel, payload)


STREAM = b"".join(
    [
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
        push(b"ch", b'{"id":1}'),
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
        push(b"ch", b"with\r\ninside"),
        push(b"ch", b""),
        b"+OK\r\n",
        push(b"ch", b"x" * 300),
    ]
)
PAYLOADS = [b'{"id":1}', b"with\r\ninside", b"", b"x" * 300]


def feed(chunks: list[bytes]) -> tuple[list[list[bytes]], list[bytes], FakeTransport]:
    batches: list[list[bytes]] = []
    subscriber = Subscriber(batches.append)
    confirmed: list[bytes] = []
    subscriber._confirmed = confirmed.append  # type: ignore[method-assign]
    protocol = _Protocol(subscriber)
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        protocol.data_received(chunk)
    return batches, confirmed, transport


async def test_one_chunk_gives_one_batch_of_every_message_in_order() -> None:
    batches, confirmed, transport = feed([STREAM])
    assert batches == [PAYLOADS]
    assert confirmed == [b"ch"]
    assert not transport.closed


async def test_any_split_of_the_bytes_gives_the_same_payloads() -> None:
    for size in (1, 2, 3, 7, 16, 31):
        chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
        batches, confirmed, transport = feed(chunks)
        assert [p for batch in batches for p in batch] == PAYLOADS, size
        assert confirmed == [b"ch"]
        assert not transport.closed


async def test_an_error_reply_drops_the_connection() -> None:
    batches, _, transport = feed([push(b"ch", b"a") + b"-NOAUTH Authentication required.\r\n"])
    assert transport.closed
    assert batches == [[b"a"]]  # what came before the error was received all the same


async def test_a_failing_consumer_does_not_break_the_reader() -> None:
    calls: list[Any] = []

    def boom(payloads: list[bytes]) -> None:
        calls.append(payloads)
        raise RuntimeError("consumer bug")

    protocol = _Protocol(Subscriber(boom))
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(push(b"ch", b"1"))
    protocol.data_received(push(b"ch", b"2"))
    assert calls == [[b"1"], [b"2"]]
    assert not transport.closed
    await asyncio.sleep(0)
