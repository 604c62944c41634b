"""A tiny HTTP endpoint for worker processes (they serve no HTTP otherwise).

``GET /health`` answers 200 while the worker's loop has made progress recently, 503 when it
has stalled, so an orchestrator can restart a stuck worker. ``GET /metrics`` serves the
process's Prometheus metrics: the circuit breakers and delivery counters live in the workers,
so this is the only place their values can be seen. ``HEAD`` answers like ``GET`` without a
body; other methods get 405, other paths 404.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.observability.metrics import REGISTRY

JSON = "application/json"
_METHODS = (b"GET", b"HEAD")
_ALLOW = "Allow: GET, HEAD\r\n"


class HealthServer:
    def __init__(
        self,
        last_progress: Callable[[], float],
        *,
        stale_after: float = 30.0,
        metrics: Callable[[], bytes] = lambda: generate_latest(REGISTRY),
    ) -> None:
        self._last_progress = last_progress
        self._stale_after = stale_after
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)

    def _answer(self, method: bytes, target: bytes) -> tuple[str, str, bytes, str]:
        """(status, content type, body, extra header lines) for one request line."""
        path = target.split(b"?", 1)[0]
        if path not in (b"/health", b"/metrics"):
            return "404 Not Found", JSON, b'{"status":"not found"}', ""
        if method not in _METHODS:
            return "405 Method Not Allowed", JSON, b'{"status":"method not allowed"}', _ALLOW
        if path == b"/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, self._metrics(), ""
        if time.monotonic() - self._last_progress() < self._stale_after:
            return "200 OK", JSON, b'{"status":"ok"}', ""
        return "503 Service Unavailable", JSON, b'{"status":"stalled"}', ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            # Drain the headers; the answer does not depend on them.
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.split()
            if len(parts) == 3 and parts[2].startswith(b"HTTP/"):
                method = parts[0]
                status, content_type, body, extra = self._answer(method, parts[1])
            else:
                method = b""
                status, content_type, body, extra = "400 Bad Request", JSON, b"{}", ""
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == b"HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
