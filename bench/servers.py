"""Process orchestration for the benchmark suite.

``Infra`` lives for the whole run: a throwaway PostgreSQL and Redis (``tests.servers``) and a
standalone sandbox (``messaging-gateway sandbox``). ``Stack`` is one gateway deployment on a
fresh database: ``migrate``, ``create-api-key``, N API processes (``serve``) and M workers
(``worker``); every benchmark round gets a new one, so no round sees another's backlog.
``PlainApp`` is the floor: a plain Starlette JSON endpoint under the same uvicorn options.

Everything listens on 127.0.0.1. Every wait has a deadline; a process that dies or never
becomes ready raises :class:`BenchError` with the tail of its log.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from providers.signatures import generate_sendgrid_keypair
from tests.servers import PostgresServer, RedisServer, free_port
from workers.liveness import WORKERS

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
GATEWAY = str(BIN / "messaging-gateway")
ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
ACCOUNT = "bench"
T = TypeVar("T")


class BenchError(RuntimeError):
    """The benchmark could not run (a process failed, a check did not pass)."""


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty log>"


class Proc:
    """A child process with its output in a log file; stopped by its own pid only."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"=== {name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches us; we stop the children in order
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise BenchError(
                f"{self.name} (pid {self.pid}) exited with code {self.popen.returncode}; "
                f"log {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)


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


def wait_http_ok(proc: Proc, port: int, path: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        proc.check()
        try:
            status, body = http_request("GET", LOOPBACK, port, path, timeout=2.0)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:300]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise BenchError(
        f"{proc.name} (pid {proc.pid}) not ready on {LOOPBACK}:{port}{path} within "
        f"{timeout:.0f}s ({last}); log {proc.log_path}:\n{log_tail(proc.log_path)}"
    )


def run_cli(
    args: Sequence[str], env: Mapping[str, str], log_path: Path, timeout: float = 120.0
) -> str:
    """Run one ``messaging-gateway`` command to completion; return its stdout."""
    try:
        done = subprocess.run(
            [GATEWAY, *args],
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
    sandbox: Proc | None = None
    sandbox_port: int = 0
    signing_key: str = field(default="", repr=False)
    public_key: str = ""
    stacks: int = 0

    @classmethod
    def start(cls, workdir: Path, api_processes: int) -> Infra:
        workdir.mkdir(parents=True, exist_ok=True)
        infra = cls(workdir=workdir, api_ports=[free_port() for _ in range(api_processes)])
        try:
            # Durable (fsync on): the accept figures claim full durability.
            infra.pg = PostgresServer.start(workdir / "postgres", durable=True)
            infra.redis_server = RedisServer.start(workdir / "redis")
            infra.signing_key, infra.public_key = generate_sendgrid_keypair()
            infra._start_sandbox()
        except BaseException:
            infra.stop()
            raise
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
        self.sandbox = Proc(
            "sandbox",
            [GATEWAY, "sandbox", "--host", LOOPBACK, "--port", str(self.sandbox_port)],
            env,
            self.workdir / "logs" / "sandbox.log",
        )
        wait_http_ok(self.sandbox, self.sandbox_port, "/control/config")

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
        """The postmaster / redis-server pid (tests.servers keeps them private)."""
        if which == "postgres" and self.pg is not None:
            pid = self.pg._postmaster_pid()
            if pid is None and self.pg._proc is not None:
                pid = self.pg._proc.pid
            return [pid] if pid is not None else []
        if which == "redis" and self.redis_server is not None:
            proc = self.redis_server._proc
            return [proc.pid] if proc is not None else []
        return []

    def stop(self) -> None:
        if self.sandbox is not None:
            self.sandbox.stop()
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
        self.key = ""
        self.apis: list[Proc] = []
        self.workers: list[Proc] = []
        self.logdir = infra.workdir / "logs" / f"{infra.stacks:02d}-{name}"

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_ports[0]}"

    @property
    def processes(self) -> list[Proc]:
        return [*self.apis, *self.workers]

    def start(self) -> Stack:
        infra = self.infra
        assert infra.pg is not None
        self.logdir.mkdir(parents=True, exist_ok=True)
        try:
            infra.pg.create_database(self.dbname)
            env = infra.gateway_env(infra.pg.url(self.dbname))
            cli_log = self.logdir / "cli.log"
            run_cli(["migrate"], env, cli_log)
            out = run_cli(["create-api-key", "--account", ACCOUNT], env, cli_log)
            keys = [line.strip() for line in out.splitlines() if line.strip().startswith("mgw_")]
            if not keys:
                raise BenchError(f"create-api-key printed no key:\n{out}")
            self.key = keys[-1]
            with infra.redis_client() as client:
                client.flushall()
            infra.reset_sandbox()
            if self.shared_port:
                port = self.api_ports[0]
                self.api_ports = [port]
                command = [GATEWAY, "serve", "--host", LOOPBACK, "--port", str(port)]
                command += ["--workers", str(self.api_process_count)]
                self.apis.append(Proc("api", command, env, self.logdir / "api.log"))
            for index, port in enumerate([] if self.shared_port else self.api_ports):
                self.apis.append(
                    Proc(
                        f"api{index}",
                        [GATEWAY, "serve", "--host", LOOPBACK, "--port", str(port)],
                        env,
                        self.logdir / f"api{index}.log",
                    )
                )
            for index in range(self.worker_count):
                self.workers.append(
                    Proc(f"worker{index}", [GATEWAY, "worker"], env, self.logdir / f"w{index}.log")
                )
            for proc, port in zip(self.apis, self.api_ports, strict=True):
                wait_http_ok(proc, port, "/ready")
            self._wait_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_workers(self) -> None:
        if not self.workers:
            return
        deadline = time.monotonic() + READY_TIMEOUT
        seen = 0
        with self.infra.redis_client() as client:
            while time.monotonic() < deadline:
                for proc in self.workers:
                    proc.check()
                # Each worker beats once its consumer group exists, before it reads (see
                # workers/liveness.py); a stopped worker takes its heartbeat away.
                seconds, micros = client.time()
                seen = client.zcount(WORKERS, seconds + micros / 1e6 - 5, "+inf")
                if seen >= len(self.workers):
                    return
                time.sleep(0.1)
        raise BenchError(
            f"only {seen} of {len(self.workers)} workers joined the consumer group within "
            f"{READY_TIMEOUT:.0f}s; log {self.workers[0].log_path}:\n"
            f"{log_tail(self.workers[0].log_path)}"
        )

    def check(self) -> None:
        for proc in self.processes:
            proc.check()

    def stop(self) -> None:
        for proc in [*self.workers, *self.apis]:
            proc.stop()
        self.workers, self.apis = [], []
        if self.infra.pg is not None and self.infra.pg.running:
            with contextlib.suppress(Exception):
                self.infra.pg.drop_database(self.dbname)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PlainApp:
    """The floor app (bench/plain_app.py) as a process on its own port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.proc = Proc(
            "plain-app",
            [sys.executable, "-m", "bench.plain_app", "--host", LOOPBACK, "--port", str(self.port)],
            dict(os.environ) | {"PYTHONUNBUFFERED": "1"},
            workdir / "logs" / "plain_app.log",
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> PlainApp:
        try:
            wait_http_ok(self.proc, self.port, "/ready")
        except BaseException:
            self.proc.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop()


# --------------------------------------------------------------------------------------
# CPU accounting: where the machine's CPU went during a measurement
# --------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own utime+stime, reaped children's cutime+cstime) in seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    own = (int(fields[11]) + int(fields[12])) / _TICK
    reaped = (int(fields[13]) + int(fields[14])) / _TICK
    return int(fields[1]), own, reaped


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                children.setdefault(found[0], []).append(int(entry.name))
    return children


def _machine_busy() -> float:
    """CPU seconds the whole machine spent not idle since boot (/proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def tree_cpu(root: int, children: dict[int, list[int]]) -> float:
    """CPU seconds of a process, its live descendants and the children it has reaped."""
    total = 0.0
    stack, seen = [root], set[int]()
    while stack and len(seen) < 10_000:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found = _stat(pid)
        if found is None:
            continue
        total += found[1] + found[2]
        stack.extend(children.get(pid, ()))
    return total


class CpuMeter:
    """CPU seconds per named group of process trees between ``start()`` and ``stop()``.

    ``self`` is this process (the Python client of e2e / fan-out); ``wrk`` the reaped child
    processes (wrk runs) of this process.
    """

    def __init__(self, groups: Mapping[str, Sequence[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items() if pids}
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.used: dict[str, float] = {}

    def run(self, work: Callable[[], T]) -> T:
        self.start()
        try:
            return work()
        finally:
            self.stop()

    def _sample(self) -> dict[str, float]:
        children = _children_map()
        sample = {
            name: sum(tree_cpu(pid, children) for pid in pids) for name, pids in self.groups.items()
        }
        me = os.times()
        sample["client"] = me.user + me.system
        sample["wrk"] = me.children_user + me.children_system
        sample["machine"] = _machine_busy()
        return sample

    def start(self) -> None:
        self._wall = time.monotonic()
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        wall = time.monotonic() - self._wall
        used = {k: round(end[k] - self._start.get(k, 0.0), 2) for k in end}
        machine = used.pop("machine")
        ours = sum(used.values())
        # Everything else that ran meanwhile: other tenants of a shared machine, the kernel.
        used["others"] = round(max(0.0, machine - ours), 2)
        used["wall_seconds"] = round(wall, 2)
        used["machine_busy_share"] = round(machine / (wall * (os.cpu_count() or 1)), 3)
        self.used = used
        return used


def per_message(used: Mapping[str, float], count: float) -> dict[str, float]:
    """CPU milliseconds per message (or per delivery) of each group."""
    if not count:
        return {}
    skip = {"wall_seconds", "machine_busy_share"}
    return {k: round(v * 1000 / count, 3) for k, v in used.items() if k not in skip and v}
