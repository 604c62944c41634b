"""The Starlette application: GraphQL (HTTP + websockets), health, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import orjson
import structlog
from cross_web import HTTPException
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from gateway.entry.bootstrap.api import Api, bootstrap_api
from gateway.entry.bootstrap.shared import SANDBOX_PATH
from gateway.entry.devkey import ensure_dev_key
from gateway.entry.migrations import upgrade_to_head
from gateway.fastpaths import FastPaths
from gateway.heap import freeze_startup_heap
from gateway.loopback import is_local_request
from gateway.observability import (
    MetricsMiddleware,
    RequestIdMiddleware,
    metrics_endpoint,
    set_status_counts_provider,
)
from gateway.services.auth import ApiKeys, bearer_token
from gateway.settings import Settings
from gateway.web.console import PAGE_HEADERS as CONSOLE_HEADERS
from gateway.web.console import console_html, console_routes
from gateway.web.frames import direct_frames
from gateway.web.graphiql import PAGE_HEADERS, graphiql_html, graphiql_routes
from gateway.web.graphql_http import GraphQLHttp, GraphQLOverHttpView
from gateway.web.responses import one_write_responses
from gateway.web.socket_keys import SocketKeyWatch
from gateway.web.timeouts import ExecutionTimeout
from gateway.web.webhooks import webhook_routes
from gateway.web.websocket import LiveTransportWSHandler, TextFrameAdapter
from resolvers.root import ROOTS
from schema.build import create_schema
from schema.context import Context, Services

log = structlog.get_logger(__name__)


class GatewayGraphQL(GraphQLOverHttpView):
    websocket_adapter_class = TextFrameAdapter
    graphql_transport_ws_handler_class = LiveTransportWSHandler

    def __init__(
        self,
        settings: Settings,
        services: Services,
        api_keys: ApiKeys,
        key_watch: SocketKeyWatch | None = None,
        fast_paths: FastPaths | None = None,
    ) -> None:
        self.services = services
        self.api_keys = api_keys
        #: Where acknowledged sockets have their key checked again (see gateway.web.socket_keys).
        self.key_watch = key_watch
        #: Which fast paths this view takes (the websocket handler reads it).
        self.fast_paths = fast_paths if fast_paths is not None else FastPaths(settings.fast_paths)
        super().__init__(
            create_schema(
                ROOTS,
                fast_paths=self.fast_paths,
                introspection=settings.introspection,
                max_depth=settings.max_query_depth,
                max_aliases=settings.max_aliases,
                max_tokens=settings.max_tokens,
            ),
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=10),
            # Enforced with an error code by LiveTransportWSHandler.handle_subscribe.
            max_subscriptions_per_connection=settings.ws_max_operations,
            allowed_origins=_origins(settings.ws_allowed_origins),
        )

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        context = Context(request=request, response=response, services=self.services)
        if isinstance(request, Request):
            token = bearer_token(request.headers.get("authorization"))
            found = await self.api_keys.identify(token)
            if found is not None:
                context.authenticate(*found, cache=True)
        return context

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        params = context.connection_params or {}
        raw = params.get("authorization") or params.get("Authorization")
        token = bearer_token(raw) if isinstance(raw, str) else None
        found = await self.api_keys.identify(token)
        if found is None:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED"})
        # The context lives as long as the socket: loaders batch but must not cache.
        context.authenticate(*found, cache=False)
        return None

    def decode_json(self, data: str | bytes) -> object:
        # orjson turns every malformed body (too deep, huge numbers, bad UTF-8, lone
        # surrogates) into a JSONDecodeError, which Strawberry answers with a 400; the
        # standard library raises other errors for some of them, which became 500s.
        return orjson.loads(data)

    def parse_json(self, data: str | bytes) -> Any:
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "the request body must be a JSON object")
        return parsed

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(graphiql_html(_page_key(request)), headers=PAGE_HEADERS)


def _page_key(request: Request) -> str | None:
    """The development key only for a client on this machine (see gateway.loopback); anyone
    else gets the same page with an empty key field."""
    if not is_local_request(request.scope):
        return None
    key: str | None = request.app.state.dev_key
    return key


async def console(request: Request) -> Response:
    return HTMLResponse(console_html(_page_key(request)), headers=CONSOLE_HEADERS)


class GatewayApp(Starlette):
    def __init__(self, *args: Any, fast_paths: FastPaths, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state.fast_paths = fast_paths

    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's ServerErrorMiddleware, whose `send` wrapper hides the server's
        # own `send` for HTTP (see gateway.web.responses).
        paths: FastPaths = self.state.fast_paths
        return one_write_responses(super().build_middleware_stack(), paths.one_write_responses)


def _origins(setting: str) -> list[str]:
    return [o.strip() for o in setting.split(",") if o.strip()]


async def health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    api: Api = request.app.state.api
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with api.storage.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        async with asyncio.timeout(2):
            ok = await api.queue.broker.ping()
        checks["broker"] = "ok" if ok else "unavailable"
    except Exception as exc:
        checks["broker"] = f"unavailable: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


def create_app(settings: Settings | None = None) -> GatewayApp:
    settings = settings or Settings()

    api = bootstrap_api(settings)
    fast_paths = FastPaths(settings.fast_paths)
    key_watch = SocketKeyWatch(api.api_keys.still_live, settings.api_key_cache_seconds)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if settings.is_sqlite:
            # Embedded default: the newcomer never runs `migrate` by hand.
            await upgrade_to_head(settings)
        app.state.api = api
        app.state.webhook_services = api.webhook_services
        app.state.dev_key = None
        if settings.embedded:
            app.state.dev_key, api.default_owner = await ensure_dev_key(
                settings.data_dir, api.api_keys
            )
        set_status_counts_provider(api.status_counts)
        await api.start()
        key_watch.start()
        freeze_startup_heap()
        log.info(
            "gateway_started",
            database="sqlite" if settings.is_sqlite else "postgresql",
            broker="memory" if settings.redis_url is None else "redis",
            embedded_worker=api.worker is not None,
            fast_paths=fast_paths.taken(),
        )
        try:
            yield {}
        finally:
            await key_watch.stop()
            await api.close()

    graphql = GatewayGraphQL(settings, api.graphql, api.api_keys, key_watch, fast_paths)
    routes: list[BaseRoute] = [
        Route(
            "/graphql",
            GraphQLHttp(graphql, max_body_bytes=settings.graphql_max_body_bytes),
            methods=["GET", "POST"],
        ),
        WebSocketRoute("/graphql", graphql),
        Route("/health", health),
        Route("/ready", ready),
        Route("/metrics", metrics_endpoint),
        *webhook_routes(),
        *(graphiql_routes() if settings.graphiql else []),
        Route("/console", console, methods=["GET"]),
        *console_routes(),
    ]
    if api.sandbox_app is not None:
        routes.append(Mount(SANDBOX_PATH, app=api.sandbox_app))
    return GatewayApp(
        routes=routes,
        middleware=[
            # First: it needs the server's own `send` (websockets only; see gateway.web.frames).
            Middleware(direct_frames, path=fast_paths.direct_frames),
            Middleware(RequestIdMiddleware),
            Middleware(MetricsMiddleware),
            *(
                [
                    Middleware(
                        CORSMiddleware,
                        allow_origins=_origins(settings.cors_origins),
                        allow_methods=["GET", "POST", "OPTIONS"],
                        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                        expose_headers=["X-Request-ID", "Retry-After"],
                        max_age=600,
                    )
                ]
                if settings.cors_origins.strip()
                else []
            ),
            Middleware(ExecutionTimeout, seconds=settings.execution_timeout_seconds),
        ],
        lifespan=lifespan,
        fast_paths=fast_paths,
    )
