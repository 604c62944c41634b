"""``/graphql`` over HTTP: the outer layer (a body limit, and a GraphQL answer whatever
happens) and the view's GraphQL-over-HTTP rules (media types, status codes, GET).

- The body is read here, with ``GRAPHQL_MAX_BODY_BYTES`` enforced while reading (a declared
  ``Content-Length`` over it is refused unread), before authentication and parsing: an
  oversized post costs at most the limit in memory, and is answered 413
  ``PAYLOAD_TOO_LARGE``. Strawberry's view then gets the body already read.
- Whatever escapes the view before it answered (the API-key lookup runs outside any GraphQL
  error handling) is answered as GraphQL JSON with the request id, not as the server's
  plain-text 500: 503 ``UNAVAILABLE`` with ``Retry-After`` when a backing service is down,
  otherwise 500 ``INTERNAL``.
- The response media type is negotiated here first (``gateway.web.media_types``): an ``Accept``
  that admits neither JSON type is answered 406, before anything is read. Every answer of
  this layer is written in the negotiated type.

``GraphQLOverHttpView`` is Strawberry's ASGI view with the spec's rules on top: answers in
``application/graphql-response+json`` get the spec's status codes (see
``gateway.web.media_types.graphql_response_status``), ``application/json`` answers stay as they
were, and a mutation over GET is answered 405 with ``Allow: POST``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson
import structlog
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gateway.observability import current_request_id
from gateway.outages import RETRY_AFTER_SECONDS, describe, is_unavailable, unavailable_error
from gateway.web.bodies import BodyTooLarge, read_body, replay
from gateway.web.media_types import (
    GRAPHQL_RESPONSE,
    JSON,
    accept_header,
    content_type,
    error_body,
    graphql_response_status,
    media_type_of,
)
from schema.context import Context

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
        media = media_type_of(scope)
        if media is None and not _may_want_graphiql(scope):
            await send_errors(send, 406, JSON, [_not_acceptable()])
            return
        if scope["method"] in _WITH_BODY:
            try:
                body = await read_body(scope, receive, self.max_body_bytes)
            except BodyTooLarge as exc:
                log.info("graphql_body_too_large", limit=exc.limit)
                await send_errors(send, 413, media, [_too_large(exc.limit)])
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
                await send_errors(
                    send,
                    503,
                    media,
                    [unavailable_error()],
                    headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
                )
                return
            log.exception("graphql_request_failed")
            await send_errors(send, 500, media, [_internal()])


def _may_want_graphiql(scope: Scope) -> bool:
    """A browser asking for a page (``Accept: text/html``): GraphiQL, not a 406."""
    return scope["method"] == "GET" and b"text/html" in accept_header(scope)


def _not_acceptable() -> dict[str, Any]:
    return {
        "message": f"this endpoint answers in {GRAPHQL_RESPONSE} or {JSON}: "
        "the Accept header admits neither",
        "extensions": {"code": "NOT_ACCEPTABLE"},
    }


def _too_large(limit: int) -> dict[str, Any]:
    return {
        "message": f"the request body is larger than {limit} bytes",
        "extensions": {
            "code": "PAYLOAD_TOO_LARGE",
            "maxBytes": limit,
            "requestId": current_request_id(),
        },
    }


def _internal() -> dict[str, Any]:
    return {
        "message": "Internal error",
        "extensions": {"code": "INTERNAL", "requestId": current_request_id()},
    }


async def send_errors(
    send: Send,
    status: int,
    media: str | None,
    errors: list[dict[str, Any]],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer a request that failed before execution, as GraphQL JSON in ``media``."""
    encoded = orjson.dumps(error_body(media, errors))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type(media).encode()),
                (b"content-length", str(len(encoded)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": encoded})


#: Operation types each method may run: subscriptions are refused over HTTP by the schema
#: (``SubscriptionsOverWebsockets``, 400) so that a websocket-only operation says so.
_ALLOWED_OPERATIONS: Final = {
    "GET": frozenset({OperationType.QUERY, OperationType.SUBSCRIPTION}),
    "POST": frozenset({OperationType.QUERY, OperationType.MUTATION, OperationType.SUBSCRIPTION}),
}
#: ``extensions.code`` of the refusals Strawberry's view raises as HTTP errors.
_HTTP_ERROR_CODES: Final = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


class MethodNotAllowed(HTTPException):
    def __init__(self, reason: str, allow: str) -> None:
        super().__init__(405, reason)
        self.allow = allow


class GraphQLOverHttpView(GraphQL[Context, None]):
    """Strawberry's ASGI view (0.341) with GraphQL over HTTP's media types and status codes.

    Only public hooks of the view are overridden: ``get_sub_response`` carries the negotiated
    media type to ``create_response``, which sees the result before it is serialized;
    ``execute_single`` is the place where the view turns the schema's refusals into HTTP
    errors (our copy refuses a mutation over GET with 405), and ``__call__`` where it answers
    them. On the hot path (a POST answered in ``application/json``) this adds the ``Accept``
    check, decided once per request (well under a microsecond), and nothing else.

    ``execute_single`` restates Strawberry 0.341's own: tests check that the signature still
    matches the base view's and that a mutation over GET gets its 405.
    """

    # Strawberry's own adapter, restated: mypy then takes subclasses' adapters against this
    # class, not against the base view's generic callable (which no adapter class matches).
    websocket_adapter_class = ASGIWebSocketAdapter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # As Strawberry's own __call__, but refusals get the spec's answers.
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as exc:
            response = _refusal(exc, media_type_of(scope))
        await response(scope, receive, send)

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        # Set after the headers were made, so it adds no Content-Type of its own.
        sub_response.media_type = media_type_of(request.scope)
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        if sub_response.media_type != GRAPHQL_RESPONSE or isinstance(response_data, list):
            return super().create_response(response_data, sub_response)
        body: dict[str, Any] = response_data  # type: ignore[assignment]
        status = graphql_response_status(body, sub_response.status_code)
        response = Response(
            self.encode_json(body), status_code=status, media_type=content_type(GRAPHQL_RESPONSE)
        )
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        method = request_adapter.method
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=_ALLOWED_OPERATIONS[method],
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            if method == "GET" and exc.operation_type is OperationType.MUTATION:
                raise MethodNotAllowed(
                    "mutations are not allowed over GET: send them with POST", allow="POST"
                ) from exc
            raise HTTPException(400, exc.as_http_error_reason(method)) from exc
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc


def _refusal(exc: HTTPException, media: str | None) -> Response:
    """The answer to a request the view refused before execution.

    In ``application/graphql-response+json``, and for a mutation over GET, a GraphQL response
    with ``extensions.code``; otherwise the plain text ``application/json`` clients always had.
    """
    headers = {}
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = exc.allow
    elif exc.status_code == 405:
        headers["Allow"] = "GET, POST"
    if media != GRAPHQL_RESPONSE and not isinstance(exc, MethodNotAllowed):
        return PlainTextResponse(exc.reason, status_code=exc.status_code, headers=headers)
    code = _HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
    body = error_body(media, [{"message": exc.reason, "extensions": {"code": code}}])
    return Response(
        orjson.dumps(body),
        status_code=exc.status_code,
        headers=headers,
        media_type=content_type(media),
    )
