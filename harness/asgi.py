"""An ASGI app served by uvicorn inside the caller's event loop (the sandbox of a pipeline,
stand-ins for providers, a gateway under test)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from harness.servers import LOOPBACK, free_port

__all__ = ["run_uvicorn"]


@contextlib.asynccontextmanager
async def run_uvicorn(app: Any, port: int | None = None, **options: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port, in this event loop."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host=LOOPBACK,
        port=port,
        log_config=None,
        lifespan="on",
        ws_ping_interval=None,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        task.result()  # surface the start-up error
        raise RuntimeError("server did not start")
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        await task
