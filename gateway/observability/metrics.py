"""Prometheus metrics on a dedicated registry, the HTTP metrics middleware and ``/metrics``.

All metrics live on :data:`REGISTRY` (not the prometheus-client global registry), so apps can
be built any number of times in one process without duplicate-registration errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NAMESPACE: Final = "gateway"
UNMATCHED_ROUTE: Final = "unmatched"

REGISTRY: Final = CollectorRegistry()


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """A counter of the gateway's namespace on :data:`REGISTRY`."""
    return Counter(name, documentation, labels, namespace=NAMESPACE, registry=REGISTRY)


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    """A gauge of the gateway's namespace on :data:`REGISTRY`."""
    return Gauge(name, documentation, labels, namespace=NAMESPACE, registry=REGISTRY)


def histogram(name: str, documentation: str, labels: Sequence[str] = ()) -> Histogram:
    """A histogram (default buckets) of the gateway's namespace on :data:`REGISTRY`."""
    return Histogram(name, documentation, labels, namespace=NAMESPACE, registry=REGISTRY)


HTTP_REQUESTS: Final = counter(
    "http_requests",
    "HTTP requests handled, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY: Final = histogram(
    "http_request_duration_seconds",
    "HTTP request handling time in seconds, by method and route template.",
    ["method", "route"],
)
GRAPHQL_OPERATIONS: Final = counter(
    "graphql_operations",
    "GraphQL operations, by operation type, first root field and outcome (ok|error).",
    ["operation_type", "root_field", "outcome"],
)
GRAPHQL_LATENCY: Final = histogram(
    "graphql_operation_duration_seconds",
    "GraphQL operation time in seconds (queries and mutations; not subscriptions).",
    ["operation_type", "root_field"],
)
MESSAGES_BY_STATUS: Final = gauge(
    "messages_by_status",
    "Stored messages by delivery status, refreshed on each scrape.",
    ["status"],
)
MESSAGES_ACCEPTED: Final = counter(
    "messages_accepted",
    "Messages accepted for delivery, by channel.",
    ["channel"],
)
DELIVERY_ATTEMPTS: Final = counter(
    "delivery_attempts",
    "Delivery calls to providers, by provider and outcome (sent, transient_error, "
    "rate_limited, ambiguous, permanent_error, crashed).",
    ["provider", "outcome"],
)
EVENTS_PUBLISHED: Final = counter(
    "events_published",
    "Events published to subscribers.",
)
SUBSCRIPTIONS_ACTIVE: Final = gauge(
    "subscriptions_active",
    "GraphQL subscriptions currently active in this process.",
)

_log = structlog.get_logger(__name__)

# --------------------------------------------------------------------------- HTTP middleware

#: Paths used verbatim as the route label when no Starlette route matched (e.g. apps that
#: are mounted without a router). Anything else becomes "unmatched".
DEFAULT_KNOWN_PATHS: Final = frozenset(
    {"/", "/graphql", "/metrics", "/health", "/healthz", "/livez", "/readyz"}
)
_MAX_CHILDREN: Final = 1024
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def route_label(scope: Scope, known_paths: frozenset[str] = DEFAULT_KNOWN_PATHS) -> str:
    """The matched route's path template, a known raw path, or ``"unmatched"``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path or "/"
    raw_path = scope.get("path")
    if isinstance(raw_path, str) and raw_path in known_paths:
        return raw_path
    return UNMATCHED_ROUTE


def method_label(scope: Scope) -> str:
    method = str(scope.get("method", "")).upper()
    return method if method in _KNOWN_METHODS else "OTHER"


class MetricsMiddleware:
    """Count and time ``http`` requests (other scope types pass through untouched)."""

    def __init__(self, app: ASGIApp, known_paths: Iterable[str] = DEFAULT_KNOWN_PATHS) -> None:
        self.app = app
        self.known_paths = frozenset(known_paths)
        self._children: dict[tuple[Any, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        status_code = 500  # if the app fails before starting a response
        start = time.perf_counter()

        async def send_capturing_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_capturing_status)
        finally:
            elapsed = time.perf_counter() - start
            key = (scope.get("method"), route_label(scope, self.known_paths), status_code)
            children = self._children.get(key)
            if children is None:
                children = self._children_of(key)
            children[0].inc()
            children[1].observe(elapsed)

    def _children_of(self, key: tuple[Any, str, int]) -> tuple[Any, Any]:
        # Looking a labelled child up in prometheus-client validates and locks every time;
        # the label sets are few (methods x routes x statuses), so keep each pair once.
        method = method_label({"method": key[0]})
        route, status = key[1], str(key[2])
        children = (
            HTTP_REQUESTS.labels(method=method, route=route, status=status),
            HTTP_LATENCY.labels(method=method, route=route),
        )
        if len(self._children) < _MAX_CHILDREN:
            self._children[key] = children
        return children


# --------------------------------------------------------------------------- /metrics

StatusCountsProvider = Callable[[], Awaitable[dict[str, int]]]

DEFAULT_PROVIDER_TIMEOUT: Final = 2.0

_status_provider: StatusCountsProvider | None = None
_status_provider_timeout: float = DEFAULT_PROVIDER_TIMEOUT


def set_status_counts_provider(
    fn: StatusCountsProvider | None, *, timeout: float = DEFAULT_PROVIDER_TIMEOUT
) -> None:
    """Register the coroutine function that returns ``{status: count}`` for each scrape.

    ``None`` unregisters it. ``timeout`` (seconds) bounds how long a scrape waits for it.
    """
    global _status_provider, _status_provider_timeout
    _status_provider = fn
    _status_provider_timeout = timeout


async def refresh_status_counts() -> None:
    """Refresh :data:`MESSAGES_BY_STATUS` from the provider; on failure log and clear it.

    The gauge is cleared before being refilled so that statuses which disappeared (or a
    failed provider) do not leave stale values behind.
    """
    provider = _status_provider
    if provider is None:
        return
    try:
        async with asyncio.timeout(_status_provider_timeout):
            counts = await provider()
    except TimeoutError:
        MESSAGES_BY_STATUS.clear()
        _log.warning("metrics.status_counts_timeout", timeout_s=_status_provider_timeout)
        return
    except Exception:
        MESSAGES_BY_STATUS.clear()
        _log.exception("metrics.status_counts_failed")
        return
    MESSAGES_BY_STATUS.clear()
    for status, count in counts.items():
        MESSAGES_BY_STATUS.labels(status=str(status)).set(count)


async def metrics_endpoint(request: Request) -> Response:
    """Starlette endpoint serving :data:`REGISTRY` in the Prometheus text format."""
    await refresh_status_counts()
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
