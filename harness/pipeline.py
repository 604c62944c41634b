"""A production-shaped pipeline of REAL processes, for the integration and fault tests.

Two API processes (``messaging-gateway serve``) and two delivery workers (``messaging-gateway
worker``) share one fresh PostgreSQL database and one Redis database; a standalone sandbox
(``create_sandbox_app`` under uvicorn, in the caller's process) stands in for Twilio and SendGrid
and sends its callbacks to the API processes. Everything listens on loopback; every process
writes its own log file, whose tail is attached to assertion messages
(``Pipeline.diagnostics()``).

The sandbox runs in the caller's process rather than as ``messaging-gateway sandbox`` so that the
tests read what it received and sent (``Pipeline.sandbox``) directly. Its callbacks go through
its own client, which lets them wait for a free connection rather than fail after a burst.

Only processes started here are ever signalled, always by their own PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.domain.statuses import TERMINAL
from gateway.settings import Settings
from harness.asgi import run_uvicorn
from harness.http import loopback_client
from harness.processes import (
    CLI,
    HIGH_SENDER_RATES,
    Process,
    serve_command,
    wait_heartbeats,
    wait_http,
    worker_command,
)
from harness.servers import RedisServer, free_port
from providers.sandbox_app import Sandbox, SandboxConfig, create_sandbox_app
from providers.signatures import generate_sendgrid_keypair, generate_telnyx_keypair
from workers.lanes import Lanes
from workers.redis_broker import GROUP, STREAM

#: Redis database of the pipeline: the stream and group names are fixed, other tests use 0.
REDIS_DB = 5

#: Settings from the brief: everything fast, but every mechanism (retries, reclaim, stale
#: recovery, sweeper grace) still in play.
FAST_SETTINGS = {
    "SWEEP_INTERVAL": "0.2",
    "RETRY_BASE_DELAY": "0.05",
    "AMBIGUOUS_GRACE_SECONDS": "0.2",
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
    # Per-key limits are tested on their own (test_rate_limits.py); here they would only
    # refuse the load that the delivery tests need.
    "RATE_LIMITS": "",
    # Senders are not paced unless a test gives them a rate (add-address --rate).
    **HIGH_SENDER_RATES,
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


def uuid_of(public_id: str) -> uuid.UUID:
    """``msg_<hex>`` (GraphQL) or ``<hex>`` (sandbox records) -> UUID."""
    return uuid.UUID(hex=public_id.removeprefix("msg_"))


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
    #: The Ed25519 key pair the sandbox signs Telnyx webhooks with (private, public).
    telnyx_keys: tuple[str, str] = field(default_factory=generate_telnyx_keypair)
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
            if not k.startswith(("SANDBOX_", "TWILIO_", "SENDGRID_", "TELNYX_", "PG"))
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
                "TELNYX_BASE_URL": self.sandbox_url,
                "TELNYX_PUBLIC_KEY": self.telnyx_keys[1],
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    # --- processes -----------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def sandbox_config(self) -> SandboxConfig:
        """Callbacks go to API 1: SendGrid events to its webhook, Twilio status callbacks and
        Telnyx events to whatever StatusCallback or webhook_url the worker sent (its
        PUBLIC_BASE_URL)."""
        config = SandboxConfig.from_settings(
            Settings(
                public_base_url=self.api_url(0),
                sandbox_event_webhook_url=self.api_url(0) + "/webhooks/sendgrid/events",
                sandbox_sendgrid_signing_key=self.signing_key,
                sandbox_telnyx_signing_key=self.telnyx_keys[0],
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
            serve_command(self.api_ports[index]),
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
            f"worker{self._counter}", worker_command(), env, self._log(f"worker{self._counter}")
        )
        self.workers.append(proc)
        return proc

    async def wait_workers_ready(self, workers: Iterable[Process]) -> None:
        """A worker is ready once its heartbeat is in Redis (it beats before it reads)."""
        await wait_heartbeats(self.redis_url, workers)

    async def wait_http(self, proc: Process, url: str) -> None:
        await wait_http(proc, url, http=self.http)

    def retire(self, proc: Process) -> Process:
        """Take a process out of the running set; its log stays in the diagnostics."""
        for running in (self.apis, self.workers):
            if proc in running:
                running.remove(proc)
        self.retired.append(proc)
        return proc

    async def restart_apis(self) -> None:
        """Stop both API processes and start them again on the same ports, ready."""
        old = [self.retire(p) for p in list(self.apis)]
        await asyncio.gather(*(p.stop(within=10) for p in old))
        for index in range(len(self.api_ports)):
            self.start_api(index)
        for index, api in enumerate(self.apis):
            await self.wait_http(api, self.api_url(index) + "/ready")

    async def restart_workers(self, envs: Sequence[Mapping[str, str]]) -> list[Process]:
        """Stop every worker (a jammed one is killed after a few seconds) and start one per
        env, ready."""
        old = [self.retire(p) for p in list(self.workers)]
        await asyncio.gather(*(p.stop(within=5) for p in old))
        started = [self.start_worker(**dict(env)) for env in envs]
        await self.wait_workers_ready(started)
        return started

    def supervise(self) -> list[Process]:
        """Replace workers that exited on their own, as a process supervisor would (without
        waiting for the new ones); returns the ones that had exited."""
        dead = [self.retire(w) for w in list(self.workers) if not w.alive]
        for worker in dead:
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

        misfits = [self.retire(w) for w in list(self.workers) if not fits(w)]
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

    def provider_calls(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Every request the sandbox received for these messages (by StatusCallback mid or
        SendGrid custom_args message_id), oldest first."""
        wanted = set(ids)
        calls: dict[uuid.UUID, list[dict[str, Any]]] = {i: [] for i in wanted}
        assert self.sandbox is not None
        for request in list(self.sandbox.requests):
            mid = request.get("message_id")
            if mid and (message_id := uuid_of(mid)) in wanted:
                calls[message_id].append(request)
        for found in calls.values():
            found.sort(key=lambda r: r["received_at"])
        return calls

    async def accepted_calls(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Provider calls the sandbox accepted, per message."""
        return {
            message_id: sum(1 for r in calls if r.get("outcome") == "accepted")
            for message_id, calls in self.provider_calls(ids).items()
        }

    # --- database ------------------------------------------------------------------------

    async def statuses(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id, status FROM messages WHERE id = ANY(:ids)"), {"ids": list(ids)}
            )
        return {r[0]: r[1] for r in rows}

    async def trails(
        self, ids: Iterable[uuid.UUID], *, timed: bool = False
    ) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Every audit trail, oldest first; ``timed`` adds each event's time as ``at`` (wall
        clock, seconds)."""
        out: dict[uuid.UUID, list[dict[str, Any]]] = {i: [] for i in ids}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT message_id, id, status, kind, detail, occurred_at FROM message_events "
                    "WHERE message_id = ANY(:ids) ORDER BY message_id, id"
                ),
                {"ids": list(out)},
            )
        for message_id, event_id, status, kind, detail, occurred_at in rows:
            if isinstance(detail, str):
                detail = json.loads(detail)
            event = {"id": event_id, "status": status, "kind": kind, "detail": detail or {}}
            if timed:
                event["at"] = occurred_at.timestamp()
            out[message_id].append(event)
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

    def lanes(self, redis: Redis) -> Lanes:
        return Lanes(redis, STREAM, GROUP)

    async def pending(self) -> int | str:
        """Stream entries read and not yet acknowledged, over every delivery lane."""
        redis = self.redis()
        try:
            return await self.lanes(redis).pending()
        except Exception as exc:  # Redis down (or a lane gone mid-count): say so in messages
            return f"<{type(exc).__name__}: {exc}>"
        finally:
            await redis.aclose()

    async def pending_by_consumer(self) -> dict[str, int]:
        redis = self.redis()
        counts: dict[str, int] = {}
        try:
            for lane in await self.lanes(redis).members():
                try:
                    summary = await redis.xpending(lane, GROUP)
                except ResponseError:
                    continue  # emptied and dropped since it was listed
                for c in summary.get("consumers") or []:
                    name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
                    counts[name] = counts.get(name, 0) + int(c["pending"])
        finally:
            await redis.aclose()
        return counts

    async def wait_pending_drained(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while (pending := await self.pending()) != 0:
            assert time.monotonic() < deadline, (
                f"stream entries still pending after {within:.0f}s: {pending}{self.diagnostics()}"
            )
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def start_pipeline(
    tmp: Path, database_url: str, redis_server: RedisServer, *, workers: int = 2
) -> AsyncIterator[Pipeline]:
    """The pipeline, ready; ``workers=0`` for tests of the API processes alone."""
    signing_key, public_key = generate_sendgrid_keypair()
    engine = create_async_engine(database_url, pool_size=4)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(loopback_client(timeout=30))
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
