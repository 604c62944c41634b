"""Shared fixtures: real PostgreSQL and Redis servers, and real gateways served by uvicorn.

The ``gateway`` fixture is parametrized over the two storage backends, so every API test runs
against PostgreSQL (production) and SQLite (embedded default). Tests isolate themselves by
account (``await gateway.new_client()`` makes a fresh account and key), not by database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.entry.app import create_app
from gateway.entry.bootstrap.api import Api
from gateway.entry.migrations import upgrade_to_head
from gateway.settings import Settings
from harness.asgi import run_uvicorn
from harness.http import loopback_client
from harness.pipeline import Pipeline, start_pipeline
from harness.processes import dedicated_postgres
from harness.servers import PostgresServer, RedisServer, free_port
from persistence.accounts import ACCOUNTS
from persistence.db import create_engine
from persistence.rows import MESSAGES

#: The one-message send, answering with the message's id and status or the input's problems.
SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) {
    __typename
    ... on MessageAccepted { message { id status } }
    ... on InvalidInput { problems { field problem } }
  }
}
"""


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer.start(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer.start(tmp_path_factory.mktemp("redis")) as server:
        yield server


#: The database on a module's own PostgreSQL server (the only one there).
OWN_DATABASE = "gateway"


@pytest.fixture(scope="module")
async def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PostgresServer]:
    """A PostgreSQL server of the module's own, for tests that stop it (the shared one must
    stay up for the others)."""
    async with dedicated_postgres(tmp_path_factory.mktemp("own-pg"), OWN_DATABASE) as server:
        yield server


@pytest.fixture(scope="module")
async def own_pipeline(
    own_postgres: PostgresServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pipeline]:
    """The production shape (two API processes, two workers, the sandbox) on the module's own
    PostgreSQL."""
    tmp = tmp_path_factory.mktemp("own-pipeline")
    async with start_pipeline(tmp, own_postgres.url(OWN_DATABASE), redis_server) as running:
        yield running


def pipeline_on_shared_servers(
    postgres: PostgresServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    workers: int = 2,
) -> contextlib.AbstractAsyncContextManager[Pipeline]:
    """``start_pipeline`` on a fresh database of the shared PostgreSQL and the shared Redis."""
    return start_pipeline(
        tmp_path_factory.mktemp(name), fresh_postgres_url(postgres), redis_server, workers=workers
    )


@pytest.fixture(scope="module")
async def pipeline(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """The production shape (two API processes, two workers, the sandbox) of one module."""
    async with pipeline_on_shared_servers(
        postgres, redis_server, tmp_path_factory, "pipeline"
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def apis(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """Two API processes alone (no worker) on a fresh database and the shared Redis."""
    async with pipeline_on_shared_servers(
        postgres, redis_server, tmp_path_factory, "apis", workers=0
    ) as pipe:
        yield pipe


def fresh_postgres_url(postgres: PostgresServer) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    return postgres.url(name)


@dataclass
class GraphQLClient:
    """One account's view of a running gateway, over real HTTP and websockets."""

    base_url: str
    key: str
    account: str
    http: httpx.AsyncClient

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post(
            f"{self.base_url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.key}"},
        )

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST the operation; fail the test on any GraphQL error."""
        response = await self.post(query, variables)
        body = response.json()
        assert response.status_code == 200, body
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    @contextlib.asynccontextmanager
    async def subscription(
        self, query: str, variables: dict[str, Any] | None = None, *, key: str | None = None
    ) -> AsyncIterator[Subscription]:
        ws_url = self.base_url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(
                json.dumps(
                    {
                        "type": "connection_init",
                        "payload": {"authorization": f"Bearer {key or self.key}"},
                    }
                )
            )
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "connection_ack", ack
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": query, "variables": variables or {}},
                    }
                )
            )
            yield Subscription(ws)


@dataclass
class Subscription:
    ws: Any

    async def next(self, within: float = 10.0) -> dict[str, Any]:
        """The next ``next`` payload (pings answered, anything else is a test failure)."""
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), within))
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            assert message["type"] == "next", message
            payload: dict[str, Any] = message["payload"]
            return payload

    async def nothing_within(self, seconds: float) -> bool:
        try:
            message = await asyncio.wait_for(self.ws.recv(), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message: {message}")


class GatewayParts:
    """Test-only: what an API process was built with, by the names tests reach it by (the
    bootstrap groups them by who uses them)."""

    #: Where each part the tests use by a short name sits in the bootstrap's ``Api``.
    WHERE = {
        "engine": "storage.engine",
        "lifecycle": "storage.lifecycle",
        "webhook_repo": "storage.webhooks",
        "broker": "queue.broker",
        "sending": "graphql.sending",
        "events": "graphql.events",
        "queries": "graphql.queries",
        "rate_limiter": "graphql.rate_limiter",
        "sweeper": "deliveries.sweeper",
        "sender_rates": "storage.sender_rates",
    }

    def __init__(self, api: Api) -> None:
        self.api = api

    def __getattr__(self, name: str) -> Any:
        found: Any = self.api
        for step in self.WHERE.get(name, name).split("."):
            found = getattr(found, step)
        return found


async def stored_messages(container: GatewayParts, account: str) -> int:
    """Messages of the account in the database (whatever the API says)."""
    async with container.engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(MESSAGES.join(ACCOUNTS, ACCOUNTS.c.id == MESSAGES.c.account_id))
            .where(ACCOUNTS.c.name == account)
        )
    return int(count or 0)


@dataclass
class RunningGateway:
    backend: str
    base_url: str
    #: The API process's parts, for tests that reach past the API.
    container: GatewayParts
    http: httpx.AsyncClient
    clients: list[GraphQLClient] = field(default_factory=list)

    async def new_client(self, account: str | None = None) -> GraphQLClient:
        name = account or "acct-" + uuid.uuid4().hex[:10]
        _, key = await self.container.api_keys.create(name)
        return GraphQLClient(self.base_url, key, name, self.http)


def gateway_settings(backend: str, tmp: Path, postgres: PostgresServer | None) -> Settings:
    database_url = fresh_postgres_url(postgres) if postgres is not None else None
    return Settings(
        database_url=database_url,
        data_dir=tmp,
        sandbox_callback_delay=0.05,
        sweep_interval=0.1,
        retry_base_delay=0.05,
        retry_max_delay=0.2,
        ambiguous_grace_seconds=0.1,
        api_key_cache_seconds=0.5,
        log_json=True,
        # Senders are not paced unless a test gives them a rate (as HIGH_SENDER_RATES).
        sender_rate_long_code=10_000.0,
        sender_rate_toll_free=10_000.0,
        sender_rate_short_code=10_000.0,
        email_domain_rate=10_000.0,
    )


def backend_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> tuple[str, Settings]:
    """The storage backend a fixture is parametrized with, and fresh gateway settings on it."""
    backend: str = request.param
    postgres = request.getfixturevalue("postgres") if backend == "postgresql" else None
    return backend, gateway_settings(
        backend, tmp_path_factory.mktemp(f"{name}-{backend}"), postgres
    )


@contextlib.asynccontextmanager
async def migrated_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on ``settings``' database, upgraded to the newest schema first."""
    await upgrade_to_head(settings)
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def serve_on(settings: Settings, port: int) -> AsyncIterator[tuple[str, GatewayParts]]:
    """Run the real gateway app under uvicorn on ``port`` (loopback)."""
    if not settings.is_sqlite:
        await upgrade_to_head(settings)
    # Providers (and the mounted sandbox) call back where this server listens.
    settings.public_base_url = f"http://127.0.0.1:{port}"
    app = create_app(settings)
    async with run_uvicorn(app, port) as url:
        yield url, GatewayParts(app.state.api)


def serve(
    settings: Settings,
) -> contextlib.AbstractAsyncContextManager[tuple[str, GatewayParts]]:
    return serve_on(settings, free_port())


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
async def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    backend, settings = backend_settings(request, tmp_path_factory, "gw")
    async with (
        serve(settings) as (base_url, container),
        loopback_client(timeout=30) as http,
    ):
        yield RunningGateway(backend, base_url, container, http)


@pytest.fixture
async def client(gateway: RunningGateway) -> GraphQLClient:
    return await gateway.new_client()


SandboxRequests = Callable[..., list[Any]]
SandboxRefuses = Callable[[str], contextlib.AbstractContextManager[None]]


@pytest.fixture
def sandbox_requests(gateway: RunningGateway) -> SandboxRequests:
    """``sandbox_requests(recipient, accepted_only=False)``: what the gateway's sandbox
    provider received for ``recipient``.

    Reads both shapes of the sandbox: the in-process provider (``sent``: accepted sends only)
    and the HTTP stand-in (``requests``: every request, each with its ``outcome``).
    """

    def received(recipient: str, *, accepted_only: bool = False) -> list[Any]:
        sandbox: Any = gateway.container.sandbox
        assert sandbox is not None
        if hasattr(sandbox, "sent"):
            return [r for r in sandbox.sent if r.recipient == recipient]
        return [
            r
            for r in sandbox.requests
            if r.get("to") == recipient and (not accepted_only or r.get("outcome") == "accepted")
        ]

    return received


@pytest.fixture
def sandbox_refuses(gateway: RunningGateway) -> SandboxRefuses:
    """``with sandbox_refuses(recipient):`` the gateway's sandbox provider refuses every
    send to ``recipient`` as an invalid number (a permanent failure)."""

    @contextlib.contextmanager
    def refusing(recipient: str) -> Iterator[None]:
        sandbox: Any = gateway.container.sandbox
        assert sandbox is not None
        rules = sandbox.rules if hasattr(sandbox, "rules") else sandbox.config
        rules.invalid_recipients.add(recipient)
        try:
            yield
        finally:
            rules.invalid_recipients.discard(recipient)

    return refusing


@pytest.fixture(autouse=True, scope="module")
def _collect_garbage_after_each_module() -> Iterator[None]:
    """Leaked sockets and connections warn when collected: collect now, so the warning points
    at the module that leaked them rather than at whichever test runs when the collector does
    (per module, not per test: a full collection costs too much to run 900 times)."""
    yield
    gc.collect()
