"""A tiny liveness endpoint for worker processes (they serve no HTTP otherwise).

``GET /health`` answers 200 while the worker's loop has made progress recently, 503 when it
has stalled, so an orchestrator can restart a stuck worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class HealthServer:
    def __init__(self, last_progress: Callable[[], float], *, stale_after: float = 30.0) -> None:
        self._last_progress = last_progress
        self._stale_after = stale_after
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            # Drain the headers; the answer does not depend on them.
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = request_line.split(b" ")[1] if request_line.count(b" ") >= 2 else b""
            alive = time.monotonic() - self._last_progress() < self._stale_after
            if path != b"/health":
                status, body = "404 Not Found", b'{"status":"not found"}'
            elif alive:
                status, body = "200 OK", b'{"status":"ok"}'
            else:
                status, body = "503 Service Unavailable", b'{"status":"stalled"}'
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
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
