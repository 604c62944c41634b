"""The local receiver of the event-webhook benchmark: ``python -m bench.webhook_receiver
--port P --slow-seconds S``.

``POST /fast`` and ``POST /other`` answer 200 at once; ``POST /slow`` answers 200 after S
seconds (an endpoint that keeps the gateway's connections waiting). ``GET /counts`` says how
many of each arrived; ``GET /ready`` answers 200. Signatures are not checked: the tests do
that; here only the rate counts.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

COUNTS = {"fast": 0, "other": 0, "slow": 0}
SLOW = {"seconds": 3.0}


async def take(request: Request) -> Response:
    """Count the delivery under its path's name; only ``/slow`` answers late."""
    await request.body()
    name = request.url.path.strip("/")
    COUNTS[name] += 1
    if name == "slow":
        await asyncio.sleep(SLOW["seconds"])
    return Response("ok")


async def counts(_: Request) -> Response:
    return JSONResponse(COUNTS)


async def ready(_: Request) -> Response:
    return JSONResponse({"status": "ready"})


app = Starlette(
    routes=[
        *(Route(f"/{name}", take, methods=["POST"]) for name in COUNTS),
        Route("/counts", counts),
        Route("/ready", ready),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description="event-webhook receiver of the benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slow-seconds", type=float, default=3.0)
    args = parser.parse_args()
    SLOW["seconds"] = args.slow_seconds
    signal.signal(signal.SIGTERM, lambda *_: None)  # exit 0 after uvicorn's own shutdown
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, lifespan="on")


if __name__ == "__main__":
    main()
