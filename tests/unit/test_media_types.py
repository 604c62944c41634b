"""The response media type of /graphql from ``Accept``, the spec's status codes for
``application/graphql-response+json``, and the outer layers' answers in either type."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.web.graphql_http import GraphQLHttp
from gateway.web.media_types import (
    GRAPHQL_RESPONSE,
    JSON,
    graphql_response_status,
    media_type_of,
    negotiate,
)
from gateway.web.timeouts import ExecutionTimeout

NEW = "application/graphql-response+json"
NEW_CONTENT_TYPE = "application/graphql-response+json; charset=utf-8"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        # No preference: application/json, as every client has always had.
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        ("APPLICATION/JSON; charset=utf-8", JSON),
        # Asked for by name.
        (NEW, GRAPHQL_RESPONSE),
        (f"{NEW}; charset=utf-8", GRAPHQL_RESPONSE),
        # The spec's recommended client header, in either order: the preferred type.
        (f"{NEW}; charset=utf-8, application/json; charset=utf-8", GRAPHQL_RESPONSE),
        (f"application/json, {NEW}", GRAPHQL_RESPONSE),
        # q decides; then a type named outright beats one reached by a wildcard.
        (f"application/json, {NEW};q=0.9", JSON),
        (f"application/json;q=0.9, {NEW}", GRAPHQL_RESPONSE),
        (f"*/*, {NEW}", GRAPHQL_RESPONSE),
        ("application/json, */*", JSON),
        (f"*/*;q=0.5, {NEW};q=0.4", JSON),
        (f"*/*, {NEW};q=0", JSON),
        ("application/json;q=0, */*", GRAPHQL_RESPONSE),
        # A browser's navigation header reaches application/json through */*.
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
        # A malformed q counts as absent.
        ("application/json;q=high", JSON),
        # Neither type admitted.
        ("text/html", None),
        ("text/plain, application/xml", None),
        ("application/json;q=0", None),
        (f"{NEW};q=0, application/json;q=0", None),
    ],
)
def test_negotiation(accept: str, chosen: str | None) -> None:
    assert negotiate(accept.encode()) == chosen


def test_several_accept_headers_count_as_one_list_and_the_choice_is_kept_in_the_scope() -> None:
    scope: dict[str, Any] = {
        "headers": [(b"accept", b"text/html"), (b"host", b"x"), (b"accept", NEW.encode())]
    }
    assert media_type_of(scope) == GRAPHQL_RESPONSE
    scope["headers"] = []  # decided once per request
    assert media_type_of(scope) == GRAPHQL_RESPONSE
    assert media_type_of({"headers": []}) == JSON


PARSE_ERROR = {"message": "Syntax Error", "locations": [{"line": 1, "column": 2}]}
FIELD_ERROR = {"message": "boom", "path": ["message"], "extensions": {"code": "INTERNAL"}}


@pytest.mark.parametrize(
    ("body", "status", "expected_status", "expected_body"),
    [
        # Never executed: no data entry, 400 unless an extension chose its status.
        ({"data": None, "errors": [PARSE_ERROR]}, None, 400, {"errors": [PARSE_ERROR]}),
        ({"data": None, "errors": [PARSE_ERROR]}, 401, 401, {"errors": [PARSE_ERROR]}),
        ({"data": None, "errors": [PARSE_ERROR]}, 429, 429, {"errors": [PARSE_ERROR]}),
        (
            {"data": None, "errors": [{"message": "x", "extensions": {"code": "INTERNAL"}}]},
            None,
            500,
            {"errors": [{"message": "x", "extensions": {"code": "INTERNAL"}}]},
        ),
        # Executed: 200, data kept, even null, even when a resolver asked for a 503.
        ({"data": {"a": 1}}, None, 200, {"data": {"a": 1}}),
        ({"data": {"a": None}, "errors": [FIELD_ERROR]}, 503, 200, None),
        ({"data": None, "errors": [FIELD_ERROR]}, None, 200, None),
        ({"data": None, "errors": [FIELD_ERROR]}, 503, 200, None),
    ],
)
def test_graphql_response_status(
    body: dict[str, Any],
    status: int | None,
    expected_status: int,
    expected_body: dict[str, Any] | None,
) -> None:
    before = dict(body)
    assert graphql_response_status(body, status) == expected_status
    assert body == (expected_body if expected_body is not None else before)


# --- the outer layers, in front of stand-in apps --------------------------------------------


async def never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the request should have been answered before the view")


async def database_down(scope: Scope, receive: Receive, send: Send) -> None:
    raise ConnectionRefusedError("connection refused")


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug")


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(30)


async def call(app: Any, method: str, accept: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Accept": accept} if accept is not None else {}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        request = http.build_request(method, "/graphql", headers=headers, **kwargs)
        if accept is None:
            del request.headers["accept"]
        return await http.send(request)


def assert_shape(response: httpx.Response, accept: str | None, code: str) -> None:
    body = response.json()
    if accept == NEW:
        assert response.headers["content-type"] == NEW_CONTENT_TYPE
        assert "data" not in body, body
    else:
        assert response.headers["content-type"] == "application/json"
        assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", NEW])
async def test_oversized_bodies_outages_bugs_and_timeouts_answer_in_the_chosen_type(
    accept: str | None,
) -> None:
    too_large = await call(GraphQLHttp(never_called, 10), "POST", accept, content=b"x" * 11)
    assert too_large.status_code == 413
    assert_shape(too_large, accept, "PAYLOAD_TOO_LARGE")

    down = await call(GraphQLHttp(database_down, 100), "POST", accept, content=b"{}")
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert_shape(down, accept, "UNAVAILABLE")

    bug = await call(GraphQLHttp(broken, 100), "POST", accept, content=b"{}")
    assert bug.status_code == 500
    assert_shape(bug, accept, "INTERNAL")

    timeout = await call(ExecutionTimeout(GraphQLHttp(slow, 100), 0.05), "POST", accept)
    assert timeout.status_code == 504
    assert_shape(timeout, accept, "TIMEOUT")


@pytest.mark.parametrize("accept", ["text/plain", "application/xml", "application/json;q=0"])
async def test_an_accept_that_admits_neither_type_is_refused_406_before_anything_is_read(
    accept: str,
) -> None:
    for method in ("GET", "POST"):
        response = await call(GraphQLHttp(never_called, 10), method, accept, content=b"x" * 11)
        assert response.status_code == 406, response.text
        assert_shape(response, "application/json", "NOT_ACCEPTABLE")


async def test_a_browser_asking_for_html_still_reaches_the_view_for_graphiql() -> None:
    reached = []

    async def view(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["method"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"<html>"})

    response = await call(GraphQLHttp(view, 10), "GET", "text/html")
    assert response.status_code == 200 and reached == ["GET"]


def test_the_view_overrides_strawberrys_hooks_with_their_own_signatures() -> None:
    """``GraphQLOverHttpView`` replaces Strawberry's ``execute_single`` and overrides its
    response hooks: were Strawberry to change them, ours would no longer be called as written."""
    from strawberry.http.async_base_view import AsyncBaseHTTPView

    from gateway.web.graphql_http import GraphQLOverHttpView

    for hook in ("execute_single", "create_response", "get_sub_response"):
        base = inspect.signature(getattr(AsyncBaseHTTPView, hook))
        ours = inspect.signature(getattr(GraphQLOverHttpView, hook))
        assert list(ours.parameters) == list(base.parameters), hook
