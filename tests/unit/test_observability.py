"""Tests for gateway.observability: request ids, logging, HTTP and GraphQL metrics."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import strawberry
import structlog
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Lifespan, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from gateway.observability import (
    REGISTRY,
    GraphQLMetricsExtension,
    MetricsMiddleware,
    RequestIdMiddleware,
    configure_logging,
    current_request_id,
    metrics_endpoint,
    redact_secrets,
    set_status_counts_provider,
)
from gateway.observability.logging import ROUTED_STDLIB_LOGGERS
from gateway.observability.request_id import is_sane_request_id

with warnings.catch_warnings():
    # Starlette 1.x warns at import when the test client falls back to httpx (not httpx2).
    warnings.filterwarnings(
        "ignore",
        message=r"Using `httpx` with `starlette.testclient`",
        category=StarletteDeprecationWarning,
    )
    from starlette.testclient import TestClient

HEX32 = re.compile(r"[0-9a-f]{32}")


# --------------------------------------------------------------------------- test app


def _context_snapshot(request_state_id: str | None) -> dict[str, Any]:
    return {
        "state": request_state_id,
        "current": current_request_id(),
        "structlog": structlog.contextvars.get_contextvars().get("request_id"),
    }


async def whoami(request: Request) -> Response:
    log = structlog.get_logger("test.route")
    log.debug("not at info level")
    log.info(
        "handled",
        password="hunter2",
        headers={"Authorization": "Bearer abc.def", "accept": "*/*"},
        note="client sent Bearer s3cr3t-token in a header",
    )
    logging.getLogger("uvicorn.error").info("stdlib says hi", extra={"api_key": "k-123"})
    try:
        raise ValueError("upstream rejected Bearer leaked-token")
    except ValueError:
        log.exception("upstream failed")
    return JSONResponse(_context_snapshot(request.state.request_id))


async def item(request: Request) -> Response:
    return PlainTextResponse(str(request.path_params["item_id"]))


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(_context_snapshot(websocket.state.request_id))
    await websocket.close()


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "hi"

    @strawberry.field
    def fail(self) -> str:
        raise ValueError("resolver failed")


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self, count: int = 2) -> AsyncGenerator[int, None]:
        for i in range(count):
            yield i


SCHEMA = strawberry.Schema(
    query=Query, subscription=Subscription, extensions=[GraphQLMetricsExtension]
)


def build_app(
    lifespan: Lifespan[Starlette] | None = None, *, with_middleware: bool = True
) -> Starlette:
    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/whoami", whoami),
            Route("/items/{item_id:int}", item),
            Route("/boom", boom),
            Route("/metrics", metrics_endpoint),
            Route("/graphql", GraphQL(SCHEMA)),
            WebSocketRoute("/ws", ws_endpoint),
        ],
        middleware=(
            [Middleware(RequestIdMiddleware), Middleware(MetricsMiddleware)]
            if with_middleware
            else []
        ),
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved_named = {
        name: (list(lg.handlers), lg.propagate, lg.level)
        for name in ROUTED_STDLIB_LOGGERS
        for lg in [logging.getLogger(name)]
    }
    yield
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, (handlers, propagate, level) in saved_named.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def reset_status_provider() -> Iterator[None]:
    yield
    set_status_counts_provider(None)


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def json_lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


# --------------------------------------------------------------------------- request id


async def test_request_id_generated_and_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami")
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert HEX32.fullmatch(request_id)
    body = response.json()
    assert body == {"state": request_id, "current": request_id, "structlog": request_id}


async def test_each_request_gets_its_own_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/whoami")
    second = await client.get("/whoami")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("incoming", ["abc-123.X_y", "x" * 128])
async def test_incoming_request_id_honoured(client: httpx.AsyncClient, incoming: str) -> None:
    response = await client.get("/whoami", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming
    assert response.json()["current"] == incoming


@pytest.mark.parametrize("incoming", ["has space", "x" * 129, "a/b", "", "<script>", "id;drop"])
async def test_bad_incoming_request_id_replaced(client: httpx.AsyncClient, incoming: str) -> None:
    response = await client.get("/whoami", headers={"X-Request-ID": incoming})
    echoed = response.headers["x-request-id"]
    assert echoed != incoming
    assert HEX32.fullmatch(echoed)
    assert response.json()["current"] == echoed


def test_request_id_sanity_check_rejects_trailing_newline() -> None:
    assert is_sane_request_id("abc")
    assert not is_sane_request_id("abc\n")


async def test_context_cleared_after_request_even_on_exception(
    client: httpx.AsyncClient,
) -> None:
    # httpx.ASGITransport runs the app in this task's context: leaks would be visible here.
    structlog.contextvars.clear_contextvars()
    await client.get("/whoami")
    assert current_request_id() is None
    assert "request_id" not in structlog.contextvars.get_contextvars()

    response = await client.get("/boom")
    assert response.status_code == 500
    assert current_request_id() is None
    assert "request_id" not in structlog.contextvars.get_contextvars()


async def test_outer_request_id_restored_after_nested_binding(client: httpx.AsyncClient) -> None:
    structlog.contextvars.bind_contextvars(request_id="outer")
    try:
        await client.get("/whoami")
        assert structlog.contextvars.get_contextvars()["request_id"] == "outer"
    finally:
        structlog.contextvars.unbind_contextvars("request_id")


async def test_request_id_creates_missing_state_and_keeps_existing_state() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    middleware = RequestIdMiddleware(app)
    await middleware({"type": "http", "headers": []}, receive, send)
    assert HEX32.fullmatch(seen[0]["state"]["request_id"])

    state = {"db": "pool"}
    await middleware({"type": "http", "headers": [], "state": state}, receive, send)
    assert seen[1]["state"] is state
    assert state["db"] == "pool"
    assert state["request_id"] == dict(sent[2]["headers"])[b"x-request-id"].decode()


async def test_lifespan_scope_passes_through_untouched() -> None:
    calls: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append((scope, receive, send))

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    scope: Scope = {"type": "lifespan"}
    await RequestIdMiddleware(MetricsMiddleware(app))(scope, receive, send)
    assert calls == [(scope, receive, send)]
    assert scope == {"type": "lifespan"}


def test_websocket_binds_request_id_and_lifespan_runs() -> None:
    started: list[bool] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = build_app(lifespan)
    with TestClient(app) as tc:
        assert started == [True]
        with tc.websocket_connect("/ws") as ws:
            data = ws.receive_json()
            accept_headers: dict[bytes, bytes] = dict(ws.extra_headers or [])
        with tc.websocket_connect("/ws", headers={"X-Request-ID": "ws-given.1"}) as ws:
            given = ws.receive_json()

    assert HEX32.fullmatch(data["current"])
    assert data == {
        "state": data["current"],
        "current": data["current"],
        "structlog": data["current"],
    }
    assert accept_headers[b"x-request-id"].decode() == data["current"]
    assert given["current"] == "ws-given.1"
    # MetricsMiddleware only counts http scopes.
    ws_samples = [
        s for metric in REGISTRY.collect() for s in metric.samples if s.labels.get("route") == "/ws"
    ]
    assert ws_samples == []


# --------------------------------------------------------------------------- logging


async def test_log_lines_are_json_and_carry_request_id(
    client: httpx.AsyncClient, restore_logging: None
) -> None:
    buf = io.StringIO()
    configure_logging(level="INFO", json=True, stream=buf)
    configure_logging(level="INFO", json=True, stream=buf)  # idempotent: one handler only

    response = await client.get("/whoami")
    request_id = response.headers["x-request-id"]
    lines = json_lines(buf)  # every line must parse as JSON

    handled = [line for line in lines if line["event"] == "handled"]
    assert len(handled) == 1
    assert handled[0]["request_id"] == request_id
    assert handled[0]["level"] == "info"
    assert handled[0]["logger"] == "test.route"
    assert handled[0]["timestamp"].endswith("Z")

    stdlib = [line for line in lines if line["event"] == "stdlib says hi"]
    assert len(stdlib) == 1
    assert stdlib[0]["request_id"] == request_id
    assert stdlib[0]["logger"] == "uvicorn.error"
    assert stdlib[0]["level"] == "info"

    assert not [line for line in lines if line["event"] == "not at info level"]

    failed = [line for line in lines if line["event"] == "upstream failed"]
    assert len(failed) == 1
    assert "Traceback" in failed[0]["exception"]
    assert "ValueError" in failed[0]["exception"]


async def test_secrets_are_redacted_in_log_lines(
    client: httpx.AsyncClient, restore_logging: None
) -> None:
    buf = io.StringIO()
    configure_logging(level="DEBUG", json=True, stream=buf)
    await client.get("/whoami")
    output = buf.getvalue()
    for secret in ("hunter2", "abc.def", "s3cr3t-token", "k-123", "leaked-token"):
        assert secret not in output

    lines = json_lines(buf)
    handled = next(line for line in lines if line["event"] == "handled")
    assert handled["password"] == "[redacted]"
    assert handled["headers"] == {"Authorization": "[redacted]", "accept": "*/*"}
    assert handled["note"] == "client sent Bearer [redacted] in a header"
    stdlib = next(line for line in lines if line["event"] == "stdlib says hi")
    assert stdlib["api_key"] == "[redacted]"
    assert any(line["event"] == "not at info level" for line in lines)  # DEBUG honoured


def test_redact_secrets_processor() -> None:
    event = {
        "event": "calling with Authorization: Bearer tok.en-1, then bearer other",
        "Authorization": "Basic abc",
        "X-API-KEY": "k",
        "apikey": "k",
        "api_key": "k",
        "db_password": "p",
        "client_secret": "s",
        "refresh_token": "t",
        "count": 3,
        "items": [{"token": "t"}, "Bearer zzz"],
    }
    out = redact_secrets(None, "info", dict(event))
    assert out["event"] == "calling with Authorization: Bearer [redacted], then bearer [redacted]"
    for key in ("Authorization", "X-API-KEY", "apikey", "api_key", "db_password"):
        assert out[key] == "[redacted]"
    assert out["client_secret"] == "[redacted]"
    assert out["refresh_token"] == "[redacted]"
    assert out["count"] == 3
    assert out["items"] == [{"token": "[redacted]"}, "Bearer [redacted]"]
    assert event["items"] == [{"token": "t"}, "Bearer zzz"]  # input not mutated


async def test_console_renderer_and_reconfiguration(
    client: httpx.AsyncClient, restore_logging: None
) -> None:
    json_buf = io.StringIO()
    configure_logging(level="INFO", json=True, stream=json_buf)
    console_buf = io.StringIO()
    configure_logging(level="INFO", json=False, stream=console_buf)

    await client.get("/whoami")
    assert json_buf.getvalue() == ""  # the first handler was replaced, not duplicated
    text = console_buf.getvalue()
    assert "handled" in text
    assert "hunter2" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_configure_logging_rejects_unknown_level(restore_logging: None) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(level="LOUD")


def test_configure_logging_routes_uvicorn_loggers(restore_logging: None) -> None:
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.NullHandler())
    access.propagate = False
    buf = io.StringIO()
    configure_logging(stream=buf)
    assert access.handlers == []
    assert access.propagate is True
    access.info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:1",
        "GET",
        "/x",
        "1.1",
        200,
        extra={"color_message": "\x1b[1mGET\x1b[0m"},
    )
    # Only uvicorn's line: another test's connection may still be logging as it closes.
    (line,) = [entry for entry in json_lines(buf) if entry.get("logger") == "uvicorn.access"]
    assert "color_message" not in line
    assert line["event"] == '127.0.0.1:1 - "GET /x HTTP/1.1" 200'


# --------------------------------------------------------------------------- HTTP metrics


async def test_http_metrics_use_route_template(client: httpx.AsyncClient) -> None:
    labels = {"method": "GET", "route": "/items/{item_id:int}"}
    before = sample("gateway_http_requests_total", status="200", **labels)
    before_latency = sample("gateway_http_request_duration_seconds_count", **labels)

    assert (await client.get("/items/1")).status_code == 200
    assert (await client.get("/items/2")).status_code == 200

    assert sample("gateway_http_requests_total", status="200", **labels) == before + 2
    assert sample("gateway_http_request_duration_seconds_count", **labels) == before_latency + 2

    body = (await client.get("/metrics")).text
    assert (
        'gateway_http_requests_total{method="GET",route="/items/{item_id:int}",status="200"}'
        in (body)
    )
    assert "/items/1" not in body


async def test_http_metrics_unmatched_and_errors(client: httpx.AsyncClient) -> None:
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    failed = {"method": "GET", "route": "/boom", "status": "500"}
    before_unmatched = sample("gateway_http_requests_total", **unmatched)
    before_failed = sample("gateway_http_requests_total", **failed)

    assert (await client.get("/no/such/path-42")).status_code == 404
    assert (await client.get("/boom")).status_code == 500

    assert sample("gateway_http_requests_total", **unmatched) == before_unmatched + 1
    assert sample("gateway_http_requests_total", **failed) == before_failed + 1
    assert "path-42" not in (await client.get("/metrics")).text


async def test_http_metrics_known_path_fallback_without_router() -> None:
    async def bare(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    transport = httpx.ASGITransport(app=MetricsMiddleware(bare))
    known = {"method": "GET", "route": "/healthz", "status": "200"}
    other = {"method": "GET", "route": "unmatched", "status": "200"}
    before_known = sample("gateway_http_requests_total", **known)
    before_other = sample("gateway_http_requests_total", **other)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        await c.get("/healthz")
        await c.get("/random/123")
    assert sample("gateway_http_requests_total", **known) == before_known + 1
    assert sample("gateway_http_requests_total", **other) == before_other + 1


async def test_http_metrics_when_wrapping_the_whole_app() -> None:
    app = RequestIdMiddleware(MetricsMiddleware(build_app(with_middleware=False)))
    labels = {"method": "GET", "route": "/items/{item_id:int}", "status": "200"}
    before = sample("gateway_http_requests_total", **labels)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/items/7")
        failed = await c.get("/boom")
    assert HEX32.fullmatch(response.headers["x-request-id"])
    assert sample("gateway_http_requests_total", **labels) == before + 1
    # Outermost, the middleware also tags the 500 produced by Starlette's ServerErrorMiddleware.
    assert failed.status_code == 500
    assert HEX32.fullmatch(failed.headers["x-request-id"])


async def test_building_apps_repeatedly_does_not_reregister_metrics() -> None:
    for _ in range(3):
        build_app()
        Starlette(middleware=[Middleware(MetricsMiddleware)])


# --------------------------------------------------------------------------- /metrics


async def test_metrics_endpoint_calls_status_provider(client: httpx.AsyncClient) -> None:
    calls: list[int] = []
    counts = {"queued": 3, "sent": 5}

    async def provider() -> dict[str, int]:
        calls.append(1)
        return dict(counts)

    set_status_counts_provider(provider)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert calls == [1]
    assert 'gateway_messages_by_status{status="queued"} 3.0' in response.text
    assert 'gateway_messages_by_status{status="sent"} 5.0' in response.text
    for name in (
        "gateway_messages_accepted_total",
        "gateway_delivery_attempts_total",
        "gateway_events_published_total",
        "gateway_subscriptions_active",
    ):
        assert name in response.text

    counts.pop("queued")
    response = await client.get("/metrics")
    assert calls == [1, 1]
    assert 'status="queued"' not in response.text  # vanished statuses are not kept stale


async def test_metrics_endpoint_survives_failing_provider(client: httpx.AsyncClient) -> None:
    async def good() -> dict[str, int]:
        return {"failed": 1}

    async def bad() -> dict[str, int]:
        raise RuntimeError("database down")

    set_status_counts_provider(good)
    assert 'gateway_messages_by_status{status="failed"} 1.0' in (await client.get("/metrics")).text

    set_status_counts_provider(bad)
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "gateway_messages_by_status{" not in response.text
    assert [e["event"] for e in logs] == ["metrics.status_counts_failed"]
    assert logs[0]["log_level"] == "error"


async def test_metrics_endpoint_times_out_slow_provider(client: httpx.AsyncClient) -> None:
    async def slow() -> dict[str, int]:
        await asyncio.sleep(30)
        return {"queued": 1}

    set_status_counts_provider(slow, timeout=0.05)
    started = time.perf_counter()
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/metrics")
    assert time.perf_counter() - started < 5
    assert response.status_code == 200
    assert [e["event"] for e in logs] == ["metrics.status_counts_timeout"]


# --------------------------------------------------------------------------- GraphQL metrics


def gql_count(operation_type: str, root_field: str, outcome: str) -> float:
    return sample(
        "gateway_graphql_operations_total",
        operation_type=operation_type,
        root_field=root_field,
        outcome=outcome,
    )


def gql_latency_count(operation_type: str, root_field: str) -> float:
    return sample(
        "gateway_graphql_operation_duration_seconds_count",
        operation_type=operation_type,
        root_field=root_field,
    )


async def test_graphql_extension_counts_ok_query() -> None:
    before = gql_count("query", "hello", "ok")
    before_latency = gql_latency_count("query", "hello")
    result = await SCHEMA.execute("{ greeting: hello }")
    assert result.errors is None
    assert gql_count("query", "hello", "ok") == before + 1
    assert gql_latency_count("query", "hello") == before_latency + 1


async def test_graphql_extension_counts_resolver_error() -> None:
    before_ok = gql_count("query", "fail", "ok")
    before_error = gql_count("query", "fail", "error")
    result = await SCHEMA.execute("{ fail }")
    assert result.errors
    assert gql_count("query", "fail", "error") == before_error + 1
    assert gql_count("query", "fail", "ok") == before_ok


async def test_graphql_extension_validation_and_parse_errors() -> None:
    before_invalid = gql_count("query", "unknown", "error")
    result = await SCHEMA.execute("{ doesNotExist }")
    assert result.errors
    assert gql_count("query", "unknown", "error") == before_invalid + 1
    assert 'root_field="doesNotExist"' not in (
        await _metrics_text()
    )  # no label values from invalid documents

    before_parse = gql_count("unknown", "unknown", "error")
    result = await SCHEMA.execute("{ hello")
    assert result.errors
    assert gql_count("unknown", "unknown", "error") == before_parse + 1


async def test_graphql_extension_uses_selected_operation_and_fragments() -> None:
    before = gql_count("query", "hello", "ok")
    await SCHEMA.execute(
        "query A { fail } query B { ...F } fragment F on Query { hello }", operation_name="B"
    )
    assert gql_count("query", "hello", "ok") == before + 1


async def test_graphql_extension_counts_subscription_start_only() -> None:
    before = gql_count("subscription", "ticks", "ok")
    before_latency = gql_latency_count("subscription", "ticks")
    stream = await SCHEMA.subscribe("subscription { ticks(count: 3) }")
    values = []
    async for result in stream:
        assert result.errors is None
        assert result.data is not None
        values.append(result.data["ticks"])
        assert gql_count("subscription", "ticks", "ok") == before + 1
    assert values == [0, 1, 2]
    assert gql_count("subscription", "ticks", "ok") == before + 1
    assert gql_latency_count("subscription", "ticks") == before_latency


async def test_graphql_extension_counts_invalid_subscription_as_error() -> None:
    before = gql_count("subscription", "ticks", "error")
    before_latency = gql_latency_count("subscription", "ticks")
    stream = await SCHEMA.subscribe('subscription { ticks(count: "many") }')
    results = [result async for result in stream]
    assert len(results) == 1
    assert results[0].errors
    assert gql_count("subscription", "ticks", "error") == before + 1
    assert gql_latency_count("subscription", "ticks") == before_latency


async def test_graphql_over_http_is_counted_in_both_layers(client: httpx.AsyncClient) -> None:
    http_labels = {"method": "POST", "route": "/graphql", "status": "200"}
    before_http = sample("gateway_http_requests_total", **http_labels)
    before_gql = gql_count("query", "hello", "ok")
    response = await client.post("/graphql", json={"query": "{ hello }"})
    assert response.json() == {"data": {"hello": "hi"}}
    assert sample("gateway_http_requests_total", **http_labels) == before_http + 1
    assert gql_count("query", "hello", "ok") == before_gql + 1


async def _metrics_text() -> str:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return (await c.get("/metrics")).text


def test_generated_request_ids_are_distinct_and_a_forked_child_gets_its_own() -> None:
    from gateway.observability.request_id import new_request_id

    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(HEX32.fullmatch(i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = new_request_id()
    assert HEX32.fullmatch(child)
    assert child[:16] != parent[:16]
