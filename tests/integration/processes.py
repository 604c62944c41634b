"""A production-shaped pipeline of REAL processes for the integration tests.

Two API processes (``messaging-gateway serve``) and two delivery workers (``messaging-gateway
worker``) share one fresh PostgreSQL database and one Redis database; a standalone sandbox
(``create_sandbox_app`` under uvicorn, in the test process) stands in for Twilio and SendGrid
and sends its callbacks to the API processes. Everything listens on loopback; every process
writes its own log file, whose tail is attached to assertion messages
(``Pipeline.diagnostics()``).

The sandbox runs in the test process rather than as ``messaging-gateway sandbox`` so that the
tests read what it received and sent (``Pipeline.sandbox``) directly. Its callbacks go through
its own client, which lets them wait for a free connection rather than fail after a burst.

Only processes started here are ever signalled, always by their own PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.domain.statuses import TERMINAL, MessageStatus, rank
from gateway.settings import Settings
from providers.sandbox_app import Sandbox, SandboxConfig, create_sandbox_app
from providers.signatures import generate_sendgrid_keypair
from tests.conftest import run_uvicorn
from tests.servers import PostgresServer, RedisServer, free_port
from workers.liveness import WORKERS
from workers.redis_broker import GROUP, STREAM

CLI = str(Path(sys.executable).parent / "messaging-gateway")
#: Redis database of the pipeline: the stream and group names are fixed, other tests use 0.
REDIS_DB = 5
STOP_TIMEOUT = 20.0
START_TIMEOUT = 60.0

#: Settings from the brief: everything fast, but every mechanism (retries, reclaim, stale
#: recovery, sweeper grace) still in play.
FAST_SETTINGS = {
    "SWEEP_INTERVAL": "0.2",
    "RETRY_BASE_DELAY": "0.05",
    "RETRY_MAX_DELAY": "0.5",
    "MAX_ATTEMPTS": "8",
    "PROVIDER_READ_TIMEOUT": "1.0",
    "PROVIDER_CONNECT_TIMEOUT": "1.0",
    "RECLAIM_IDLE_MS": "2000",
    "STALE_SENDING_SECONDS": "3",
    "SWEEP_GRACE_SECONDS": "1",
    # The breaker stays on, but an open circuit must not stall a test for 30 s.
    "BREAKER_COOLDOWN_SECONDS": "0.5",
    "API_KEY_CACHE_SECONDS": "5",
    "LOG_JSON": "true",
    # INFO logs every HTTP request: on two cores that CPU is better spent delivering.
    "LOG_LEVEL": "WARNING",
}
#: Callbacks retried for ~25 s instead of ~1.4 s: a slow moment of the APIs on a busy
#: two-core machine must not lose a delivery receipt (real providers retry for hours).
SANDBOX_CALLBACK_ATTEMPTS = 8

SEND_ONE = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) {
    __typename
    ... on MessageAccepted { message { id } }
    ... on InvalidInput { problems { field problem } }
  }
}
"""
SEND_MANY = """
mutation Many($inputs: [SendMessageInput!]!) {
  sendMessages(inputs: $inputs) {
    __typename
    ... on MessageAccepted { message { id } }
    ... on InvalidInput { problems { field problem } }
  }
}
"""
EVENTS_SUBSCRIPTION = """
subscription Events($after: String) {
  messageEvents(after: $after) { cursor kind status messageId }
}
"""

AMBIGUOUS_KINDS = frozenset({"retry_scheduled", "dead_lettered"})
#: The only ways back from SENDING to QUEUED.
REQUEUE_KINDS = frozenset({"retry_scheduled", "attempt_abandoned", "deferred"})


def uuid_of(public_id: str) -> uuid.UUID:
    """``msg_<hex>`` (GraphQL) or ``<hex>`` (sandbox records) -> UUID."""
    return uuid.UUID(hex=public_id.removeprefix("msg_"))


def tail(path: Path, lines: int = 12, width: int = 400) -> str:
    """The last lines of a log, each cut to ``width`` characters (tracebacks are long)."""
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    cut = [line if len(line) <= width else line[:width] + " [...]" for line in content[-lines:]]
    return "\n".join(cut) or "<empty>"


class Process:
    """One child process with its own log file; signalled only by its own PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        with log_path.open("ab") as log:
            log.write(f"=== {name}: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=env.get("DATA_DIR"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 12) -> str:
        state = "running" if self.alive else f"exited {self.proc.returncode}"
        head = f"--- {self.name} (pid {self.pid}, {state}) {self.log_path}"
        return f"{head}\n{tail(self.log_path, lines)}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_exit(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self, within: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after ``within`` seconds; reaped either way."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if not await self.wait_exit(within):
                await self.kill()
        self.proc.wait()

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, no graceful drain."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        await self.wait_exit(10)
        self.proc.wait()


@dataclass
class Account:
    name: str
    key: str
    id: uuid.UUID


@dataclass
class Sent:
    """A message the API accepted, and through which API process."""

    id: uuid.UUID
    api: int
    channel: str


@dataclass
class Pipeline:
    tmp: Path
    database_url: str
    redis_server: RedisServer
    api_ports: list[int]
    sandbox_port: int
    signing_key: str
    public_key: str
    http: httpx.AsyncClient
    engine: AsyncEngine
    apis: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    retired: list[Process] = field(default_factory=list)
    sandbox: Sandbox | None = None
    _counter: int = 0

    # --- addresses -----------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_server.host}:{self.redis_server.port}/{REDIS_DB}"

    def api_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.api_ports[index]}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)

    def base_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            # Nothing from the caller's environment may redirect the pipeline.
            if not k.startswith(("SANDBOX_", "TWILIO_", "SENDGRID_", "PG"))
        }
        env.update(FAST_SETTINGS)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "DATA_DIR": str(self.tmp),
                "TWILIO_BASE_URL": self.sandbox_url,
                "SENDGRID_BASE_URL": self.sandbox_url,
                "SENDGRID_WEBHOOK_PUBLIC_KEY": self.public_key,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    # --- processes -----------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def sandbox_config(self) -> SandboxConfig:
        """Callbacks go to API 1: SendGrid events to its webhook, Twilio status callbacks to
        whatever StatusCallback the worker sent (its PUBLIC_BASE_URL)."""
        config = SandboxConfig.from_settings(
            Settings(
                public_base_url=self.api_url(0),
                sandbox_event_webhook_url=self.api_url(0) + "/webhooks/sendgrid/events",
                sandbox_sendgrid_signing_key=self.signing_key,
                sandbox_callback_delay=0.05,
                sandbox_timeout_seconds=2.0,
            )
        )
        config.callback_attempts = SANDBOX_CALLBACK_ATTEMPTS
        return config

    def start_api(self, index: int) -> Process:
        env = self.base_env() | {"PUBLIC_BASE_URL": self.api_url(index)}
        proc = Process(
            f"api{index + 1}",
            [CLI, "serve", "--host", "127.0.0.1", "--port", str(self.api_ports[index])],
            env,
            self._log(f"api{index + 1}"),
        )
        self.apis.append(proc)
        return proc

    def start_worker(self, **overrides: str) -> Process:
        """A worker whose StatusCallbacks go to API 1 or API 2, alternately."""
        self._counter += 1
        env = self.base_env() | {"PUBLIC_BASE_URL": self.api_url(self._counter % 2)}
        env |= overrides
        proc = Process(
            f"worker{self._counter}", [CLI, "worker"], env, self._log(f"worker{self._counter}")
        )
        self.workers.append(proc)
        return proc

    async def wait_workers_ready(self, workers: Iterable[Process]) -> None:
        """A worker is ready once its heartbeat is in Redis (it beats before it reads)."""
        host = socket.gethostname()
        pending = list(workers)
        deadline = time.monotonic() + START_TIMEOUT
        redis = self.redis()
        try:
            while pending:
                for proc in list(pending):
                    assert proc.alive, f"worker died on start\n{proc.tail()}"
                    with contextlib.suppress(Exception):
                        if await redis.zscore(WORKERS, f"{host}-{proc.pid}") is not None:
                            pending.remove(proc)
                if pending:
                    assert time.monotonic() < deadline, "workers not ready\n" + "\n".join(
                        p.tail() for p in pending
                    )
                    await asyncio.sleep(0.1)
        finally:
            await redis.aclose()

    async def wait_http(self, proc: Process, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.alive, f"{proc.name} died on start\n{proc.tail()}"
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get(url, timeout=2)).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{proc.name} not ready\n{proc.tail()}"
            await asyncio.sleep(0.1)

    def supervise(self) -> list[Process]:
        """Replace workers that exited on their own, as a process supervisor would (without
        waiting for the new ones); returns the ones that had exited."""
        dead = [w for w in self.workers if not w.alive]
        for worker in dead:
            self.workers.remove(worker)
            self.retired.append(worker)
            overrides = {k: v for k, v in worker.env.items() if k == "MAX_DELIVERIES"}
            self.start_worker(**overrides)
        return dead

    async def ensure(self, **overrides: str) -> None:
        """Redis up, both APIs alive, and exactly two live workers started with exactly
        these setting overrides (kept if they are, topped up or replaced)."""
        if not self.redis_server.running:
            await asyncio.to_thread(self.redis_server.restart)
        for proc in self.apis:
            assert proc.alive, self.diagnostics()

        keys = {"MAX_DELIVERIES", *overrides}

        def fits(worker: Process) -> bool:
            return worker.alive and all(worker.env.get(k) == overrides.get(k) for k in keys)

        misfits = [w for w in self.workers if not fits(w)]
        for worker in misfits:
            self.workers.remove(worker)
            self.retired.append(worker)
        await asyncio.gather(*(w.stop() for w in misfits))
        started = [self.start_worker(**overrides) for _ in range(2 - len(self.workers))]
        await self.wait_workers_ready(started)

    async def close(self) -> None:
        procs = [*self.workers, *self.apis]
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)

    def all_processes(self) -> list[Process]:
        return [*self.apis, *self.workers, *self.retired]

    def diagnostics(self, lines: int = 12) -> str:
        return "\n" + "\n".join(
            [self.sandbox_summary(), *(p.tail(lines) for p in self.all_processes())]
        )

    def sandbox_summary(self) -> str:
        if self.sandbox is None:
            return "--- sandbox: not started"
        failed = [c for c in self.sandbox.callbacks if c.get("error")]
        outcomes: dict[str, int] = {}
        for request in self.sandbox.requests:
            outcomes[request["outcome"]] = outcomes.get(request["outcome"], 0) + 1
        return (
            f"--- sandbox: requests {outcomes}; {len(self.sandbox.callbacks)} callbacks, "
            f"{len(failed)} failing, last: {failed[-3:]}"
        )

    def worker_logs(self) -> str:
        return "\n".join(p.log_text() for p in [*self.workers, *self.retired])

    def api_logs(self) -> str:
        return "\n".join(p.log_text() for p in self.apis)

    # --- command line --------------------------------------------------------------------

    async def cli(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            CLI,
            *args,
            env=self.base_env() | {"LOG_JSON": "false"},
            cwd=str(self.tmp),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        text_out = out.decode(errors="replace")
        assert proc.returncode == 0, f"messaging-gateway {' '.join(args)}: {text_out}"
        return text_out

    async def new_account(self) -> Account:
        name = "acct-" + uuid.uuid4().hex[:10]
        out = await self.cli("create-api-key", "--account", name)
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        marker = next(i for i, line in enumerate(lines) if line.startswith("API key for account"))
        key = lines[marker + 1]
        async with self.engine.connect() as conn:
            account_id = (
                await conn.execute(text("SELECT id FROM accounts WHERE name = :n"), {"n": name})
            ).scalar_one()
        return Account(name, key, account_id)

    # --- GraphQL -------------------------------------------------------------------------

    async def graphql(
        self, api: int, account: Account, query: str, variables: dict[str, Any]
    ) -> httpx.Response:
        return await self.http.post(
            self.api_url(api) + "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {account.key}"},
        )

    async def send_one(self, api: int, account: Account, message: dict[str, Any]) -> Sent:
        response = await self.graphql(api, account, SEND_ONE, {"input": message})
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, (api, body)
        result = body["data"]["sendMessage"]
        assert result["__typename"] == "MessageAccepted", result
        return Sent(uuid_of(result["message"]["id"]), api, message["channel"])

    async def send_many(
        self, api: int, account: Account, messages: list[dict[str, Any]]
    ) -> list[Sent]:
        response = await self.graphql(api, account, SEND_MANY, {"inputs": messages})
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, (api, body)
        results = body["data"]["sendMessages"]
        assert [r["__typename"] for r in results] == ["MessageAccepted"] * len(messages), results
        return [
            Sent(uuid_of(r["message"]["id"]), api, m["channel"])
            for r, m in zip(results, messages, strict=True)
        ]

    # --- sandbox -------------------------------------------------------------------------

    async def sandbox_reset(self) -> None:
        response = await self.http.post(self.sandbox_url + "/control/reset")
        assert response.status_code == 200, response.text

    async def sandbox_configure(self, **changes: Any) -> None:
        response = await self.http.post(self.sandbox_url + "/control/config", json=changes)
        assert response.status_code == 200, response.text

    async def accepted_calls(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Provider calls the sandbox accepted, per message (by StatusCallback mid or
        SendGrid custom_args message_id)."""
        wanted = set(ids)
        counts: dict[uuid.UUID, int] = dict.fromkeys(wanted, 0)
        assert self.sandbox is not None
        for request in list(self.sandbox.requests):
            mid = request.get("message_id")
            if not mid or request.get("outcome") != "accepted":
                continue
            message_id = uuid_of(mid)
            if message_id in wanted:
                counts[message_id] += 1
        return counts

    # --- database ------------------------------------------------------------------------

    async def statuses(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id, status FROM messages WHERE id = ANY(:ids)"), {"ids": list(ids)}
            )
        return {r[0]: r[1] for r in rows}

    async def trails(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Every audit trail, oldest first."""
        out: dict[uuid.UUID, list[dict[str, Any]]] = {i: [] for i in ids}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT message_id, id, status, kind, detail FROM message_events "
                    "WHERE message_id = ANY(:ids) ORDER BY message_id, id"
                ),
                {"ids": list(out)},
            )
        for message_id, event_id, status, kind, detail in rows:
            if isinstance(detail, str):
                detail = json.loads(detail)
            out[message_id].append(
                {"id": event_id, "status": status, "kind": kind, "detail": detail or {}}
            )
        return out

    async def wait_until(
        self,
        ids: Iterable[uuid.UUID],
        done: Callable[[str], bool],
        *,
        within: float,
        what: str,
        alongside: Callable[[], Awaitable[None]] | None = None,
    ) -> dict[uuid.UUID, str]:
        """Poll the database until ``done(status)`` holds for every message."""
        wanted = list(ids)
        deadline = time.monotonic() + within
        while True:
            current = await self.statuses(wanted)
            left = [i for i in wanted if not done(current.get(i, "MISSING"))]
            if not left:
                return current
            if alongside is not None:
                await alongside()
            if time.monotonic() > deadline:
                counts: dict[str, int] = {}
                for i in left:
                    counts[current.get(i, "MISSING")] = counts.get(current.get(i, "MISSING"), 0) + 1
                trails = await self.trails(left[:3])
                raise AssertionError(
                    f"{len(left)} of {len(wanted)} messages not {what} after {within:.0f}s: "
                    f"{counts}; first trails: {trails}; pending: {await self.pending()}"
                    f"{self.diagnostics()}"
                )
            await asyncio.sleep(0.25)

    async def wait_terminal(self, ids: Iterable[uuid.UUID], within: float) -> dict[uuid.UUID, str]:
        terminal = {s.value for s in TERMINAL}
        return await self.wait_until(ids, terminal.__contains__, within=within, what="terminal")

    async def wait_delivered(
        self,
        ids: Iterable[uuid.UUID],
        within: float,
        alongside: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        await self.wait_until(
            ids, "DELIVERED".__eq__, within=within, what="DELIVERED", alongside=alongside
        )

    # --- Redis ---------------------------------------------------------------------------

    async def pending(self) -> int | str:
        redis = self.redis()
        try:
            summary = await redis.xpending(STREAM, GROUP)
            return int(summary["pending"])
        except Exception as exc:  # no stream/group yet, or Redis down: say so in messages
            return f"<{type(exc).__name__}: {exc}>"
        finally:
            await redis.aclose()

    async def pending_by_consumer(self) -> dict[str, int]:
        redis = self.redis()
        try:
            summary = await redis.xpending(STREAM, GROUP)
        finally:
            await redis.aclose()
        consumers = summary.get("consumers") or []
        return {
            (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): int(c["pending"])
            for c in consumers
        }

    async def wait_pending_drained(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while (pending := await self.pending()) != 0:
            assert time.monotonic() < deadline, (
                f"stream entries still pending after {within:.0f}s: {pending}{self.diagnostics()}"
            )
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def embedded_serve(tmp: Path, **settings: str) -> AsyncIterator[tuple[Process, str, str]]:
    """A real embedded ``messaging-gateway serve`` (no DATABASE_URL, no REDIS_URL) on a free
    loopback port, ready: the process, its base URL and its development key. ``settings`` are
    environment variables; none is inherited from the caller's environment."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(DATA_DIR=str(tmp), LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Process(
        "api", [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp / "api.log"
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(trust_env=False) as http:
            while True:
                assert proc.alive, proc.tail()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/ready", timeout=2)).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"serve did not become ready\n{proc.tail()}"
                await asyncio.sleep(0.1)
        yield proc, url, (tmp / "dev-api-key").read_text().strip()
    finally:
        await proc.stop()


@contextlib.asynccontextmanager
async def dedicated_postgres(base: Path, database: str) -> AsyncIterator[PostgresServer]:
    """A PostgreSQL server of one's own, with ``database`` created: for tests that stop it."""
    server = await asyncio.to_thread(PostgresServer.start, base)
    try:
        await asyncio.to_thread(server.create_database, database)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def start_pipeline(
    tmp: Path, database_url: str, redis_server: RedisServer, *, workers: int = 2
) -> AsyncIterator[Pipeline]:
    """The pipeline, ready; ``workers=0`` for tests of the API processes alone."""
    signing_key, public_key = generate_sendgrid_keypair()
    engine = create_async_engine(database_url, pool_size=4)
    async with contextlib.AsyncExitStack() as stack:
        # Idle connections expire before uvicorn's 5 s keep-alive does: reusing one the
        # server is closing at that moment fails a POST with ReadError (not retried).
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                timeout=30, trust_env=False, limits=httpx.Limits(keepalive_expiry=2.0)
            )
        )
        pipeline = Pipeline(
            tmp=tmp,
            database_url=database_url,
            redis_server=redis_server,
            api_ports=[free_port(), free_port()],
            sandbox_port=free_port(),
            signing_key=signing_key,
            public_key=public_key,
            http=http,
            engine=engine,
        )
        stack.push_async_callback(engine.dispose)
        redis = pipeline.redis()
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()
        await pipeline.cli("migrate")
        app = create_sandbox_app(pipeline.sandbox_config())
        pipeline.sandbox = app.state.sandbox
        await stack.enter_async_context(run_uvicorn(app, pipeline.sandbox_port))
        stack.push_async_callback(pipeline.close)  # processes stop before the sandbox does
        for index in range(2):
            pipeline.start_api(index)
        started = [pipeline.start_worker() for _ in range(workers)]
        for index, api in enumerate(pipeline.apis):
            await pipeline.wait_http(api, pipeline.api_url(index) + "/ready")
        await pipeline.wait_workers_ready(started)
        yield pipeline


class EventCollector:
    """A websocket subscriber (``messageEvents`` of one account) on one API process.

    Collects every event it is sent. When the server ends the subscription (an error, e.g.
    a subscriber that fell behind, or a closed socket) it resubscribes with ``after`` set to
    the last cursor seen, as the contract tells clients to; each restart is recorded.
    """

    def __init__(self, url: str, key: str) -> None:
        self.url = url.replace("http://", "ws://") + "/graphql"
        self.key = key
        self.events: list[dict[str, Any]] = []
        self.restarts: list[str] = []
        self.connected = asyncio.Event()
        self.last_cursor: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"collector {self.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
                reason = "completed by server"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
            self.restarts.append(reason)
            self.connected.clear()
            await asyncio.sleep(0.2)

    async def _session(self) -> None:
        async with websockets.connect(
            self.url,
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            open_timeout=10,
            ping_interval=None,
            max_size=None,
        ) as ws:
            await ws.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"authorization": f"Bearer {self.key}"}}
                )
            )
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no connection_ack: {ack}")
            variables = {"after": self.last_cursor} if self.last_cursor else {}
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": EVENTS_SUBSCRIPTION, "variables": variables},
                    }
                )
            )
            self.connected.set()
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "next":
                    payload = message["payload"]
                    if payload.get("errors"):
                        raise RuntimeError(f"subscription errors: {payload['errors']}")
                    event = payload["data"]["messageEvents"]
                    self.events.append(event)
                    self.last_cursor = event["cursor"]
                    self._changed.set()
                elif kind == "error":
                    raise RuntimeError(f"subscription error: {message.get('payload')}")
                elif kind == "complete":
                    return

    def message_ids(self) -> set[uuid.UUID]:
        return {uuid_of(e["messageId"]) for e in self.events}

    def cursors(self) -> set[str]:
        return {e["cursor"] for e in self.events}

    def delivered(self) -> set[uuid.UUID]:
        return {uuid_of(e["messageId"]) for e in self.events if e["status"] == "DELIVERED"}

    async def wait_for(
        self, predicate: Callable[[], bool], within: float, describe: Callable[[], str]
    ) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, describe()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))


# --- invariants over audit trails ----------------------------------------------------------


def ambiguous_marker(trail: list[dict[str, Any]]) -> bool:
    """Did an attempt of this message end without knowing whether the provider took it?"""
    return any(
        e["kind"] == "attempt_abandoned"
        or (e["kind"] in AMBIGUOUS_KINDS and e["detail"].get("ambiguous") is True)
        for e in trail
    )


def trail_problems(trail: list[dict[str, Any]]) -> list[str]:
    """Everything wrong with one audit trail: statuses go forward in rank (SENDING -> QUEUED
    only through a requeue event) and a message reaches at most one terminal status."""
    problems: list[str] = []
    if not trail:
        return ["no events"]
    first = trail[0]
    if (first["kind"], first["status"]) != ("accepted", "QUEUED"):
        problems.append(f"first event {first['kind']}/{first['status']}")
    terminal = {e["status"] for e in trail if MessageStatus(e["status"]) in TERMINAL}
    if len(terminal) > 1:
        problems.append(f"several terminal statuses {sorted(terminal)}")
    for before, after in itertools.pairwise(trail):
        old, new = MessageStatus(before["status"]), MessageStatus(after["status"])
        if old in TERMINAL and new != old:
            problems.append(f"left terminal {old} -> {new} ({after['kind']})")
        elif rank(new) < rank(old) and not (
            old is MessageStatus.SENDING
            and new is MessageStatus.QUEUED
            and after["kind"] in REQUEUE_KINDS
        ):
            problems.append(f"backwards {old} -> {new} ({after['kind']})")
    return problems


def sms(i: int, tag: str = "load") -> dict[str, Any]:
    return {
        "channel": "SMS",
        "from": "+14155550100",
        "to": f"+1415555{1000 + i % 9000:04d}",
        "body": f"{tag} {i}",
    }


def email(i: int, tag: str = "load") -> dict[str, Any]:
    return {
        "channel": "EMAIL",
        "from": "noreply@example.com",
        "to": f"user{i}@example.com",
        "body": f"{tag} {i}",
        "metadata": {"subject": f"{tag} {i}"},
    }


def mixed(i: int, tag: str = "load") -> dict[str, Any]:
    return sms(i, tag) if i % 3 else email(i, tag)


_LOG_EVENT = re.compile(r'"event":\s*"([a-z_]+)"')


def log_events(text_: str) -> list[str]:
    """The ``event`` names of JSON log lines."""
    return _LOG_EVENT.findall(text_)
