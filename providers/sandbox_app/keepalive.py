"""A minimal keep-alive HTTP/1.1 client for the sandbox's status callbacks.

The callbacks are small POSTs to one webhook host, hundreds a second in a benchmark, and the
stand-in should cost little next to the gateway it drives: a general client (aiohttp) spent
about 0.1 ms of CPU per callback building request and response objects, most of the sandbox's
own work. This one writes the request in one piece on a pooled connection and reads only what
it needs back: the status code, and the body's length to find where the response ends.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import Final, cast
from urllib.parse import urlsplit

__all__ = ["KeepAliveClient", "TransportFailure"]

# Shorter than the idle timeouts of common servers (uvicorn: 5 s): an idle connection is dropped
# by us before the server can close it under a request being written.
IDLE_SECONDS: Final = 4.0
_HEADER_END: Final = b"\r\n\r\n"
_MAX_HEADER: Final = 64 * 1024


class TransportFailure(Exception):
    """No complete HTTP answer: refused, reset, timed out or garbled."""


class _Connection(asyncio.Protocol):
    """One connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bool]] | None = None
        self._status = 0
        self._keep = True
        self._length: int | None = None  # body bytes still expected; None: headers not yet in
        self._chunked = False
        self._until_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        answer = self._answer
        if answer is not None and not answer.done():
            if self._until_close and self._length is not None:
                answer.set_result((self._status, False))
            else:
                answer.set_exception(TransportFailure("connection closed before the answer"))

    def request(self, payload: bytes) -> asyncio.Future[tuple[int, bool]]:
        """Write one request; the future gives (status, reusable)."""
        assert self.transport is not None
        answer: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        if self.lost:
            answer.set_exception(TransportFailure("connection closed"))
            return answer
        self._buffer.clear()
        self._length = None
        self._chunked = self._until_close = False
        self._keep = True
        self._answer = answer
        self.transport.write(payload)
        return answer

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        answer = self._answer
        if answer is None or answer.done():
            return
        try:
            done = self._parse()
        except (ValueError, IndexError) as exc:
            answer.set_exception(TransportFailure(f"garbled answer: {exc}"))
            return
        if done:
            answer.set_result((self._status, self._keep))

    def _parse(self) -> bool:
        if self._length is None:
            end = self._buffer.find(_HEADER_END)
            if end < 0:
                if len(self._buffer) > _MAX_HEADER:
                    raise ValueError("header too large")
                return False
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            del self._buffer[: end + len(_HEADER_END)]
            version, _, rest = head[0].partition(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError("not an HTTP/1.x answer")
            self._status = int(rest[:3])
            self._keep = version != "HTTP/1.0"
            length: int | None = None
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    self._chunked = True
                elif name == "connection":
                    self._keep = "close" not in value if self._keep else "keep-alive" in value
            if self._chunked:
                self._length = 0
            elif length is not None:
                self._length = length
            elif self._status in (204, 304) or 100 <= self._status < 200:
                self._length = 0
            else:
                self._length = 0
                self._until_close = True
                self._keep = False
        if self._until_close:
            return False
        if self._chunked:
            # The last chunk: a zero size line and an empty trailer. The answers read here are
            # short webhook acknowledgements, never bodies that could contain that sequence.
            return self._buffer.endswith(b"0\r\n\r\n")
        return len(self._buffer) >= self._length


class KeepAliveClient:
    """POSTs over pooled keep-alive connections, at most ``max_connections`` at a time."""

    def __init__(self, *, max_connections: int, timeout: float) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._timeout = timeout
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """The answer's status code; TransportFailure without a complete answer."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if scheme not in ("http", "https") or not host:
            raise TransportFailure(f"unsupported URL: {scheme}://")
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        lines = [
            f"POST {target} HTTP/1.1",
            f"Host: {parts.netloc.rpartition('@')[2]}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        key = (scheme, host, port)
        async with self._slots:
            connection = self._take(key)
            try:
                async with asyncio.timeout(self._timeout):
                    if connection is None:
                        connection = await self._connect(scheme, host, port)
                    status, reusable = await connection.request(payload)
            except (OSError, TimeoutError, TransportFailure, ssl.SSLError) as exc:
                if connection is not None and connection.transport is not None:
                    connection.transport.abort()
                if isinstance(exc, TransportFailure):
                    raise
                raise TransportFailure(type(exc).__name__) from exc
            if reusable and not connection.lost:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(key, []).append(connection)
            elif connection.transport is not None:
                connection.transport.close()
            return status

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            connection = pool.pop()
            if not connection.lost and now - connection.idle_since < IDLE_SECONDS:
                return connection
            if connection.transport is not None:
                connection.transport.close()
        return None

    async def _connect(self, scheme: str, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        _, connection = await loop.create_connection(
            _Connection, host, port, ssl=tls, server_hostname=host if tls else None
        )
        return connection

    async def aclose(self) -> None:
        for pool in self._idle.values():
            for connection in pool:
                if connection.transport is not None:
                    connection.transport.close()
        self._idle.clear()
