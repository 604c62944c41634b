"""The floor of the accept benchmarks: a plain Starlette JSON endpoint, nothing else.

``python -m bench.plain_app --port P`` serves it in one process with the uvicorn options that
``messaging-gateway serve`` shares with it (``SERVE_OPTIONS`` in gateway/entry/cli.py) and
uvicorn's defaults otherwise (uvloop and httptools where installed). ``POST /plain`` parses the
JSON body (the same request wrk sends to ``/graphql``) and answers a small JSON document;
``GET /ready`` answers 200.
"""

from __future__ import annotations

import argparse
import signal

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.entry.cli import SERVE_OPTIONS


async def plain(request: Request) -> Response:
    body = orjson.loads(await request.body())
    variables = body.get("variables") or {}
    count = len(variables.get("inputs") or [variables.get("input")])
    return JSONResponse({"data": {"ok": True, "items": count}})


async def ready(_: Request) -> Response:
    return JSONResponse({"status": "ready"})


app = Starlette(routes=[Route("/plain", plain, methods=["POST"]), Route("/ready", ready)])


def main() -> None:
    parser = argparse.ArgumentParser(description="plain Starlette floor app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: None)  # as gateway/entry/cli.py: exit 0 after shutdown
    uvicorn.run(app, host=args.host, port=args.port, **SERVE_OPTIONS)


if __name__ == "__main__":
    main()
