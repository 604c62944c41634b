"""Schema extensions: authentication gate and error masking."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.types.graphql import OperationType

from gateway.observability import current_request_id
from gateway.outages import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_MESSAGE,
    is_unavailable,
    unavailable_extensions,
)


class RequireAccount(SchemaExtension):
    """Refuse every operation without a valid API key, before anything runs.

    Done in ``on_validate`` (not by raising in ``on_operation``) so HTTP and websocket clients
    both get a proper GraphQL error; over HTTP the answer is also a 401.
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context.context
        if getattr(context, "account", None) is None:
            self.execution_context.pre_execution_errors = [
                GraphQLError(
                    "a valid API key is required (Authorization: Bearer <key>)",
                    extensions={"code": "UNAUTHENTICATED"},
                )
            ]
            response = getattr(context, "response", None)
            if response is not None and hasattr(response, "status_code"):
                response.status_code = 401
                response.headers["WWW-Authenticate"] = "Bearer"
        yield


class SubscriptionsOverWebsockets(SchemaExtension):
    """A subscription sent over HTTP cannot stream: say so (400) instead of failing inside."""

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        if not ec.pre_execution_errors and ec.graphql_document is not None:
            try:
                is_subscription = ec.operation_type == OperationType.SUBSCRIPTION
            except RuntimeError:  # no such operation: validation reports it
                is_subscription = False
            request = getattr(ec.context, "request", None)
            if is_subscription and not isinstance(request, WebSocket):
                ec.pre_execution_errors = [
                    GraphQLError(
                        "subscriptions run over websockets (graphql-transport-ws) on /graphql",
                        extensions={"code": "BAD_USER_INPUT"},
                    )
                ]
                response = getattr(ec.context, "response", None)
                if response is not None and hasattr(response, "status_code"):
                    response.status_code = 400
        yield


def _unexpected(error: GraphQLError) -> bool:
    """Mask only errors that did not come from a deliberate GraphQLError."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class MaskInternalErrors(MaskErrors):
    """Unexpected errors become ``INTERNAL`` with the request id; those saying a backing
    service is down become ``UNAVAILABLE`` (over HTTP also 503 with ``Retry-After``): not a
    bug to look for in the log, but an answer telling the client to try again later."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_unexpected, error_message="Internal error")

    def _process_result(self, result: object) -> None:
        # The base class tests the result against a runtime-checkable Protocol, which is slow
        # on the hot path; reading the attribute is the same test.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if is_unavailable(error.original_error):
            self._answer_unavailable()
            return GraphQLError(
                UNAVAILABLE_MESSAGE,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions=unavailable_extensions(),
            )
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL", "requestId": current_request_id()}
        return masked

    def _answer_unavailable(self) -> None:
        response = getattr(self.execution_context.context, "response", None)
        if response is not None and hasattr(response, "status_code"):
            response.status_code = 503
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
