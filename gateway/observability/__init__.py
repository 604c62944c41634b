"""Observability: request ids, structured logging, Prometheus metrics.

Wiring into a Starlette app::

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from gateway.observability import (
        GraphQLMetricsExtension, MetricsMiddleware, RequestIdMiddleware,
        configure_logging, metrics_endpoint, set_status_counts_provider,
    )

    configure_logging(level="INFO", json=True)
    app = Starlette(
        routes=[Route("/metrics", metrics_endpoint), ...],
        middleware=[Middleware(RequestIdMiddleware), Middleware(MetricsMiddleware)],
    )
    schema = strawberry.Schema(query=Query, extensions=[..., GraphQLMetricsExtension])
    set_status_counts_provider(repository.count_by_status)
    uvicorn.run(app, log_config=None)  # keep uvicorn from installing its own handlers

Listed as ``middleware=[...]`` they sit inside Starlette's ServerErrorMiddleware, so the 500
page it renders for an unhandled exception carries no ``X-Request-ID`` (and that access-log
line has no request_id). Wrapping the whole app instead,
``RequestIdMiddleware(MetricsMiddleware(Starlette(...)))``, covers those too; route labels
still work because Starlette records the matched route in the shared scope.
"""

from gateway.observability.graphql_metrics import GraphQLMetricsExtension
from gateway.observability.logging import configure_logging
from gateway.observability.metrics import (
    DELIVERY_ATTEMPTS,
    EVENTS_PUBLISHED,
    GRAPHQL_LATENCY,
    GRAPHQL_OPERATIONS,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    MESSAGES_ACCEPTED,
    MESSAGES_BY_STATUS,
    REGISTRY,
    SUBSCRIPTIONS_ACTIVE,
    MetricsMiddleware,
    StatusCountsProvider,
    metrics_endpoint,
    refresh_status_counts,
    set_status_counts_provider,
)
from gateway.observability.redaction import redact_secrets
from gateway.observability.request_id import (
    REQUEST_ID_HEADER,
    RequestIdMiddleware,
    current_request_id,
)

__all__ = [
    "DELIVERY_ATTEMPTS",
    "EVENTS_PUBLISHED",
    "GRAPHQL_LATENCY",
    "GRAPHQL_OPERATIONS",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "MESSAGES_ACCEPTED",
    "MESSAGES_BY_STATUS",
    "REGISTRY",
    "REQUEST_ID_HEADER",
    "SUBSCRIPTIONS_ACTIVE",
    "GraphQLMetricsExtension",
    "MetricsMiddleware",
    "RequestIdMiddleware",
    "StatusCountsProvider",
    "configure_logging",
    "current_request_id",
    "metrics_endpoint",
    "redact_secrets",
    "refresh_status_counts",
    "set_status_counts_provider",
]
