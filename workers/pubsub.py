"""A Redis pub/sub subscriber on a plain asyncio protocol.

Live events arrive as pub/sub messages, a few per delivered message, and a process reads them
all. redis-py reads them one ``get_message`` call at a time (a coroutine chain, a timeout and a
health check each); here the bytes that arrive together are parsed in one go and their payloads
handed over as one batch, from the protocol's ``data_received``.

The connection speaks RESP2 (no ``HELLO``): in subscribe mode the server sends only
``subscribe``/``unsubscribe`` confirmations, ``message`` pushes, ``pong`` replies and errors.
It reconnects (and subscribes again) after a lost connection, and pings when idle so that a
dead connection is noticed. Events published while it is disconnected are not received: the
owner is told (``on_interrupted``) so that subscribers resume from their cursor.

This is the only pub/sub reader: plain TCP, TLS and unix-socket Redis all go through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

import structlog

log = structlog.get_logger(__name__)

OnPayloads = Callable[[list[bytes]], None]

PING_INTERVAL: Final = 15.0
RECONNECT_DELAY: Final = 0.5
CONFIRM_TIMEOUT: Final = 5.0


class ReplyError(Exception):
    pass


class _Incomplete(Exception):
    pass


def _line(buf: bytearray, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    return bytes(buf[pos:end]), end + 2


def _value(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 value at ``pos`` and the position after it; raises _Incomplete if cut."""
    if pos >= len(buf):
        raise _Incomplete
    kind = buf[pos]
    line, pos = _line(buf, pos + 1)
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, pos
        end = pos + size
        if end + 2 > len(buf):
            raise _Incomplete
        return bytes(buf[pos:end]), end + 2
    if kind == 0x2A:  # * array
        count = int(line)
        items = []
        for _ in range(max(count, 0)):
            item, pos = _value(buf, pos)
            items.append(item)
        return items, pos
    if kind == 0x3A:  # : integer
        return int(line), pos
    if kind == 0x2B:  # + simple string
        return line, pos
    if kind == 0x2D:  # - error
        return ReplyError(line.decode(errors="replace")), pos
    raise ReplyError(f"unexpected reply type {chr(kind)!r}")


def command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: Subscriber) -> None:
        self._owner = owner
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.heard = True  # anything received since the last ping

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        buf = self._buf
        buf += data
        pos = 0
        payloads: list[bytes] = []
        try:
            while pos < len(buf):
                try:
                    value, pos = _value(buf, pos)
                except _Incomplete:
                    break
                if isinstance(value, list) and value:
                    if value[0] == b"message" and len(value) == 3:
                        payloads.append(value[2])
                    elif value[0] == b"subscribe" and len(value) == 3:
                        self._owner._confirmed(value[1])
                elif isinstance(value, ReplyError):
                    raise value
        except Exception as exc:
            # An error reply (e.g. refused AUTH) or bytes we cannot parse: start over.
            log.warning("pubsub_protocol_error", error=str(exc))
            del buf[:]
            if self.transport is not None:
                self.transport.close()
        else:
            del buf[:pos]
        if payloads:
            self._owner._deliver(payloads)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        return True


class Subscriber:
    """Subscribes channels on one connection and hands their payloads to ``on_payloads``."""

    def __init__(
        self,
        on_payloads: OnPayloads,
        *,
        on_interrupted: Callable[[], None] = lambda: None,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._on_payloads = on_payloads
        self._on_interrupted = on_interrupted
        self._host, self._port, self._path = host, port, path
        self._tls = tls
        self._auth = [a.encode() for a in (username, password) if a]
        self._channels: set[bytes] = set()
        self._waiting: dict[bytes, list[asyncio.Future[None]]] = {}
        self._protocol: _Protocol | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._protocol is not None

    async def subscribe(self, channel: str) -> None:
        """Subscribe, and wait (bounded) until the server confirms it: events published after
        this returns are received."""
        name = channel.encode()
        self._channels.add(name)
        self._start()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(name, []).append(waiter)
        protocol = self._protocol
        if protocol is not None:
            protocol.write(command(b"SUBSCRIBE", name))
        # Not connected: the connection subscribes every channel when it is (re)made.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), CONFIRM_TIMEOUT)
        if not waiter.done():
            waiter.cancel()
            log.warning("pubsub_subscribe_unconfirmed", channel=channel)

    async def unsubscribe(self, channel: str) -> None:
        name = channel.encode()
        self._channels.discard(name)
        protocol = self._protocol
        if protocol is not None:
            protocol.write(command(b"UNSUBSCRIBE", name))

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="pubsub-reader")

    def _confirmed(self, name: bytes) -> None:
        for waiter in self._waiting.pop(name, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _deliver(self, payloads: list[bytes]) -> None:
        try:
            self._on_payloads(payloads)
        except Exception:
            log.exception("pubsub_delivery_failed")

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        protocol: _Protocol
        if self._path is not None:
            _, protocol = await loop.create_unix_connection(lambda: _Protocol(self), self._path)
        else:
            _, protocol = await loop.create_connection(
                lambda: _Protocol(self),
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )
        return protocol

    async def _run(self) -> None:
        while True:
            protocol: _Protocol | None = None
            try:
                protocol = await asyncio.wait_for(self._connect(), CONFIRM_TIMEOUT)
                hello = [command(b"AUTH", *self._auth)] if self._auth else []
                if self._channels:
                    hello.append(command(b"SUBSCRIBE", *sorted(self._channels)))
                protocol.write(b"".join(hello))
                self._protocol = protocol
                await self._watch(protocol)
            except asyncio.CancelledError:
                if protocol is not None and protocol.transport is not None:
                    protocol.transport.close()
                raise
            except Exception:
                log.warning("pubsub_connection_failed", exc_info=True)
            finally:
                established, self._protocol = self._protocol is not None, None
            if established and self._channels:
                # Whatever is published until the next connection subscribes is not received.
                self._on_interrupted()
            log.warning("pubsub_reconnecting")
            await asyncio.sleep(RECONNECT_DELAY)

    async def _watch(self, protocol: _Protocol) -> None:
        """Until the connection is lost; pings when idle and drops it if a ping goes unheard."""
        while not protocol.closed.done():
            protocol.heard = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.closed), PING_INTERVAL)
                return
            if not protocol.heard:
                protocol.write(command(b"PING"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(protocol.closed), PING_INTERVAL)
                    return
                if not protocol.heard and protocol.transport is not None:
                    log.warning("pubsub_connection_silent")
                    protocol.transport.close()
                    await protocol.closed
                    return

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
