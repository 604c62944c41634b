"""The deployments the benchmark suite measures, built on the shared process harness.

``Infra`` lives for the whole run: a throwaway PostgreSQL and Redis (``harness.servers``) and a
standalone sandbox (``messaging-gateway sandbox``). ``Stack`` is one gateway deployment on a
fresh database: ``migrate``, ``create-api-key``, N API processes (``serve``) and M workers
(``worker``); every benchmark round gets a new one, so no round sees another's backlog.
``PlainApp`` is the floor: a plain Starlette JSON endpoint under the same uvicorn options.

Everything listens on 127.0.0.1. Every wait has a deadline; a process that dies or never
becomes ready raises :class:`harness.processes.ProcessError` with the tail of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from harness.processes import (
    CLI,
    HIGH_SENDER_RATES,
    Process,
    sandbox_command,
    serve_command,
    wait_heartbeats,
    wait_http,
    worker_command,
)
from harness.servers import (
    LOOPBACK,
    HarnessError,
    PostgresServer,
    RedisServer,
    free_port,
    stopped_on_failure,
)
from providers.signatures import generate_sendgrid_keypair

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 90.0
ACCOUNT = "bench"


class BenchError(HarnessError):
    """The benchmark could not run (a process failed, a check did not pass)."""


def start(name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> Process:
    """A child in a session of its own: a Ctrl-C reaches us; we stop the children in order."""
    return Process(name, argv, env, log_path, cwd=ROOT, new_session=True)


def wait_ready(proc: Process, port: int, path: str) -> None:
    asyncio.run(wait_http(proc, f"http://{LOOPBACK}:{port}{path}", within=READY_TIMEOUT, lines=40))


def http_request(
    method: str,
    url_host: str,
    port: int,
    path: str,
    body: Any = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def run_cli(
    args: Sequence[str], env: Mapping[str, str], log_path: Path, timeout: float = 120.0
) -> str:
    """Run one ``messaging-gateway`` command to completion; return its stdout."""
    try:
        done = subprocess.run(
            [CLI, *args],
            cwd=ROOT,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"messaging-gateway {' '.join(args)} timed out after {timeout}s") from exc
    with log_path.open("a") as log:
        log.write(f"=== messaging-gateway {args[0]} (exit {done.returncode})\n")
        log.write(done.stderr)
    if done.returncode != 0:
        raise BenchError(
            f"messaging-gateway {' '.join(args)} failed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return done.stdout


@dataclass
class Infra:
    """PostgreSQL, Redis and the sandbox for the whole run; fixed loopback ports."""

    workdir: Path
    api_ports: list[int]
    pg: PostgresServer | None = None
    redis_server: RedisServer | None = None
    sandbox: Process | None = None
    sandbox_port: int = 0
    signing_key: str = field(default="", repr=False)
    public_key: str = ""
    stacks: int = 0

    @classmethod
    def start(cls, workdir: Path, api_processes: int) -> Infra:
        workdir.mkdir(parents=True, exist_ok=True)
        infra = cls(workdir=workdir, api_ports=[free_port() for _ in range(api_processes)])
        with stopped_on_failure(infra):
            # Durable (fsync on): the accept figures claim full durability.
            infra.pg = PostgresServer.start(workdir / "postgres", durable=True)
            infra.redis_server = RedisServer.start(workdir / "redis")
            infra.signing_key, infra.public_key = generate_sendgrid_keypair()
            infra._start_sandbox()
        return infra

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_ports[0]}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{LOOPBACK}:{self.sandbox_port}"

    @property
    def redis_url(self) -> str:
        assert self.redis_server is not None
        return self.redis_server.url

    def redis_client(self) -> redis.Redis:
        assert self.redis_server is not None
        return redis.Redis(host=LOOPBACK, port=self.redis_server.port, socket_timeout=10)

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "WARNING",
                "LOG_JSON": "true",
                "DATA_DIR": str(self.workdir / "data"),
                "PUBLIC_BASE_URL": self.api_url,
                "SANDBOX_CALLBACK_DELAY": "0",
            }
        )
        return env

    def gateway_env(self, database_url: str) -> dict[str, str]:
        return self.base_env() | gateway_settings(
            database_url=database_url,
            redis_url=self.redis_url,
            public_base_url=self.api_url,
            sandbox_url=self.sandbox_url,
            public_key=self.public_key,
        )

    def _start_sandbox(self) -> None:
        self.sandbox_port = free_port()
        env = self.base_env() | {"SANDBOX_SENDGRID_SIGNING_KEY": self.signing_key}
        self.sandbox = start(
            "sandbox",
            sandbox_command(self.sandbox_port),
            env,
            self.workdir / "logs" / "sandbox.log",
        )
        wait_ready(self.sandbox, self.sandbox_port, "/control/config")

    def configure_sandbox(self, **changes: Any) -> dict[str, Any]:
        assert self.sandbox is not None
        self.sandbox.check()
        status, body = http_request(
            "POST", LOOPBACK, self.sandbox_port, "/control/config", changes, timeout=10
        )
        if status != 200:
            raise BenchError(f"sandbox refused {changes}: HTTP {status} {body[:300]!r}")
        config: dict[str, Any] = json.loads(body)
        return config

    def reset_sandbox(self) -> None:
        assert self.sandbox is not None
        self.sandbox.check()
        http_request("POST", LOOPBACK, self.sandbox_port, "/control/reset", {}, timeout=10)
        self.configure_sandbox(
            callback_delay=0.0, event_webhook_url=f"{self.api_url}/webhooks/sendgrid/events"
        )

    def server_pids(self, which: str) -> list[int]:
        """The postmaster / redis-server pid."""
        server = {"postgres": self.pg, "redis": self.redis_server}.get(which)
        pid = server.pid if server is not None else None
        return [pid] if pid is not None else []

    def stop(self) -> None:
        if self.sandbox is not None:
            self.sandbox.terminate()
        if self.redis_server is not None:
            self.redis_server.stop()
        if self.pg is not None:
            self.pg.stop()


def gateway_settings(
    *,
    database_url: str,
    redis_url: str,
    public_base_url: str,
    sandbox_url: str,
    public_key: str,
) -> dict[str, str]:
    """The environment every gateway process of the benchmark gets (reported in the JSON)."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PUBLIC_BASE_URL": public_base_url,
        "TWILIO_BASE_URL": sandbox_url,
        "SENDGRID_BASE_URL": sandbox_url,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
        # Rate limits off: the benchmark measures capacity, not the per-key limits.
        "RATE_LIMITS": "",
        # Nor the pacing of its senders: every sender as fast as a rate may be.
        **HIGH_SENDER_RATES,
        "LOG_LEVEL": "WARNING",
        "SANDBOX_CALLBACK_DELAY": "0",
    }


class Stack:
    """One gateway deployment on a fresh database (and an emptied Redis)."""

    def __init__(
        self,
        infra: Infra,
        name: str,
        *,
        api_processes: int,
        workers: int,
        shared_port: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if api_processes > len(infra.api_ports):
            raise ValueError("more API processes than ports reserved")
        infra.stacks += 1
        self.infra = infra
        self.name = name
        self.dbname = f"bench_{infra.stacks}_{name}"
        self.api_ports = infra.api_ports[:api_processes]
        # shared_port: one `serve --workers N` on one port, as deployed behind one address;
        # the kernel spreads connections (clients, the sandbox's callbacks) over the processes.
        self.shared_port = shared_port and api_processes > 1
        self.api_process_count = api_processes
        self.worker_count = workers
        #: Settings of this deployment on top of the benchmark's own.
        self.env = dict(env or {})
        self.key = ""
        self.apis: list[Process] = []
        self.workers: list[Process] = []
        self.logdir = infra.workdir / "logs" / f"{infra.stacks:02d}-{name}"

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_ports[0]}"

    @property
    def processes(self) -> list[Process]:
        return [*self.apis, *self.workers]

    def start(self) -> Stack:
        infra = self.infra
        assert infra.pg is not None
        self.logdir.mkdir(parents=True, exist_ok=True)
        with stopped_on_failure(self):
            infra.pg.create_database(self.dbname)
            env = infra.gateway_env(infra.pg.url(self.dbname)) | self.env
            run_cli(["migrate"], env, self.logdir / "cli.log")
            self.key = self.create_key(ACCOUNT)
            with infra.redis_client() as client:
                client.flushall()
            infra.reset_sandbox()
            if self.shared_port:
                port = self.api_ports[0]
                self.api_ports = [port]
                command = serve_command(port, "--workers", str(self.api_process_count))
                self.apis.append(start("api", command, env, self.logdir / "api.log"))
            for index, port in enumerate([] if self.shared_port else self.api_ports):
                self.apis.append(
                    start(
                        f"api{index}",
                        serve_command(port),
                        env,
                        self.logdir / f"api{index}.log",
                    )
                )
            for index in range(self.worker_count):
                self.workers.append(
                    start(f"worker{index}", worker_command(), env, self.logdir / f"w{index}.log")
                )
            for proc, port in zip(self.apis, self.api_ports, strict=True):
                wait_ready(proc, port, "/ready")
            self._wait_workers()
        return self

    def create_key(self, account: str) -> str:
        """A new API key of ``account`` (created if new) on this stack's database."""
        assert self.infra.pg is not None
        env = self.infra.gateway_env(self.infra.pg.url(self.dbname))
        out = run_cli(["create-api-key", "--account", account], env, self.logdir / "cli.log")
        keys = [line.strip() for line in out.splitlines() if line.strip().startswith("mgw_")]
        if not keys:
            raise BenchError(f"create-api-key printed no key:\n{out}")
        return keys[-1]

    def analyze(self) -> None:
        """ANALYZE this deployment's database, as autovacuum does within about a minute of
        real traffic. Until then PostgreSQL runs a fresh database's statements on plans made
        for empty tables, and keeps them: a lookup by id may scan the whole growing table. A
        measurement started after this call sees the plans a deployment runs on, not that
        first-minute transient (which also came and went with autovacuum's timing)."""
        assert self.infra.pg is not None
        self.infra.pg.psql("ANALYZE;\n", dbname=self.dbname)

    def _wait_workers(self) -> None:
        if self.workers:
            asyncio.run(wait_heartbeats(self.infra.redis_url, self.workers, within=READY_TIMEOUT))

    def check(self) -> None:
        for proc in self.processes:
            proc.check()

    def stop(self) -> None:
        for proc in [*self.workers, *self.apis]:
            proc.terminate()
        self.workers, self.apis = [], []
        if self.infra.pg is not None and self.infra.pg.running:
            with contextlib.suppress(Exception):
                self.infra.pg.drop_database(self.dbname)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PlainApp:
    """A helper app of the benchmark as a process on its own port, ready once its
    ``GET /ready`` answers: the floor app (bench/plain_app.py) unless ``module`` names another
    (which takes ``--host``, ``--port`` and ``args``)."""

    def __init__(
        self, workdir: Path, module: str = "bench.plain_app", args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        name = module.rsplit(".", 1)[-1]
        self.proc = start(
            name.replace("_", "-"),
            [sys.executable, "-m", module, "--host", LOOPBACK, "--port", str(self.port), *args],
            dict(os.environ) | {"PYTHONUNBUFFERED": "1"},
            workdir / "logs" / f"{name}.log",
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> PlainApp:
        try:
            wait_ready(self.proc, self.port, "/ready")
        except BaseException:
            self.proc.terminate()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
