"""The worker's small HTTP server on a loopback port: what each request line gets."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CONTENT_TYPE_LATEST

from harness.servers import free_port
from workers.health import HealthServer


async def exchange(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes; the status line, headers (lower-case names) and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


async def test_health_metrics_and_everything_else() -> None:
    progress = time.monotonic()
    server = HealthServer(lambda: progress, stale_after=30, metrics=lambda: b"m_total 1.0\n")
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        status, headers, body = await exchange(port, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n")
        assert (status, headers["content-type"], body) == (
            "HTTP/1.1 200 OK",
            CONTENT_TYPE_LATEST,
            b"m_total 1.0\n",
        )
        status, headers, body = await exchange(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert (status, headers["content-length"], body) == ("HTTP/1.1 200 OK", "12", b"")
        status, headers, _ = await exchange(port, b"DELETE /health HTTP/1.1\r\n\r\n")
        assert (status, headers["allow"]) == ("HTTP/1.1 405 Method Not Allowed", "GET, HEAD")
        status, _, _ = await exchange(port, b"GET /metrics/ HTTP/1.1\r\n\r\n")
        assert status == "HTTP/1.1 404 Not Found"
        status, _, _ = await exchange(port, b"nonsense\r\n\r\n")
        assert status == "HTTP/1.1 400 Bad Request"
        status, _, body = await exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == ("HTTP/1.1 200 OK", b'{"status":"ok"}')
        progress -= 31
        status, _, body = await exchange(port, b"GET /health HTTP/1.1\r\n\r\n")
        assert (status, body) == ("HTTP/1.1 503 Service Unavailable", b'{"status":"stalled"}')
    finally:
        await server.close()
