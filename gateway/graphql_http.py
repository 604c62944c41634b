"""The outer layer of ``/graphql`` over HTTP: a body limit, and a GraphQL answer whatever happens.

- The body is read here, with ``GRAPHQL_MAX_BODY_BYTES`` enforced while reading (a declared
  ``Content-Length`` over it is refused unread), before authentication and parsing: an
  oversized post costs at most the limit in memory, and is answered 413
  ``PAYLOAD_TOO_LARGE``. Strawberry's view then gets the body already read.
- Whatever escapes the view before it answered (the API-key lookup runs outside any GraphQL
  error handling) is answered as GraphQL JSON with the request id, not as the server's
  plain-text 500: 503 ``UNAVAILABLE`` with ``Retry-After`` when a backing service is down,
  otherwise 500 ``INTERNAL``.
"""

from __future__ import annotations

import orjson
import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.bodies import BodyTooLarge, read_body, replay
from gateway.observability import current_request_id
from gateway.outages import RETRY_AFTER_SECONDS, describe, is_unavailable, unavailable_error

log = structlog.get_logger(__name__)

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class GraphQLHttp:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in _WITH_BODY:
            try:
                body = await read_body(scope, receive, self.max_body_bytes)
            except BodyTooLarge as exc:
                log.info("graphql_body_too_large", limit=exc.limit)
                await send_json(send, 413, _too_large(exc.limit))
                return
            except ClientDisconnect:
                return
            receive = replay(body, receive)

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            if is_unavailable(exc):
                log.warning("backing_service_unavailable", error=describe(exc))
                await send_json(
                    send,
                    503,
                    {"data": None, "errors": [unavailable_error()]},
                    headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
                )
                return
            log.exception("graphql_request_failed")
            await send_json(send, 500, _internal())


def _too_large(limit: int) -> dict[str, object]:
    return {
        "data": None,
        "errors": [
            {
                "message": f"the request body is larger than {limit} bytes",
                "extensions": {
                    "code": "PAYLOAD_TOO_LARGE",
                    "maxBytes": limit,
                    "requestId": current_request_id(),
                },
            }
        ],
    }


def _internal() -> dict[str, object]:
    return {
        "data": None,
        "errors": [
            {
                "message": "Internal error",
                "extensions": {"code": "INTERNAL", "requestId": current_request_id()},
            }
        ],
    }


async def send_json(
    send: Send, status: int, body: object, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    encoded = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(encoded)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": encoded})
