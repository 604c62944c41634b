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


async def fast(request: Request) -> Response:
    await request.body()
    COUNTS["fast"] += 1
    return Response("ok")


async def other(request: Request) -> Response:
    await request.body()
    COUNTS["other"] += 1
    return Response("ok")


async def slow(request: Request) -> Response:
    await request.body()
    COUNTS["slow"] += 1
    await asyncio.sleep(SLOW["seconds"])
    return Response("ok")


async def counts(_: Request) -> Response:
    return JSONResponse(COUNTS)


async def ready(_: Request) -> Response:
    return JSONResponse({"status": "ready"})


app = Starlette(
    routes=[
        Route("/fast", fast, methods=["POST"]),
        Route("/other", other, methods=["POST"]),
        Route("/slow", slow, methods=["POST"]),
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
