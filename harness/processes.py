"""Gateway processes (``messaging-gateway serve`` / ``worker`` / ``sandbox``) as children.

Each child writes its output to a log file of its own (its stderr to a second one when a test
reads the two apart), whose tail goes into every error about it; it is signalled only by its
own PID. Readiness is what the product offers for it: a 200 from a health endpoint
(``/ready``, ``/health``, the sandbox's ``/control/config``) or, for a worker, its heartbeat in
Redis. Every wait has a deadline; a child that dies or never becomes ready raises
:class:`ProcessError` with the tail of its log.

The waits are coroutines, for the tests and the bench that run an event loop; synchronous
tests use the blocking forms (:func:`wait_http_blocking`, :func:`started`, :func:`serving`,
:func:`sandbox_serving`), which run the same waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

import httpx
from redis.asyncio import Redis

from gateway.settings import Settings
from harness.http import loopback_client
from harness.servers import LOOPBACK, HarnessError, PostgresServer, free_port
from workers.liveness import WORKERS

__all__ = [
    "CLI",
    "SETTINGS_VARIABLES",
    "Process",
    "ProcessError",
    "Served",
    "dedicated_postgres",
    "embedded_serve",
    "sandbox_command",
    "sandbox_serving",
    "scrubbed_env",
    "serve_command",
    "serve_process",
    "serving",
    "started",
    "tail",
    "wait_heartbeats",
    "wait_http",
    "wait_http_blocking",
    "worker_command",
]

#: The console script of the environment running us (the one the tests and the bench install).
CLI = str(Path(sys.executable).parent / "messaging-gateway")
START_TIMEOUT = 60.0  # a guard against hanging, not a performance bound
STOP_TIMEOUT = 20.0
#: Environment variables the gateway reads as settings.
SETTINGS_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)


def serve_command(
    port: int, *options: str, host: str = LOOPBACK, cli: Path | str = CLI
) -> list[str]:
    """``messaging-gateway serve`` on ``port`` of ``host`` (loopback unless a test says
    otherwise); ``cli`` is another installation's console script."""
    return [str(cli), "serve", "--host", host, "--port", str(port), *options]


def worker_command(cli: Path | str = CLI) -> list[str]:
    return [str(cli), "worker"]


def sandbox_command(port: int, cli: Path | str = CLI) -> list[str]:
    """The standalone sandbox on loopback ``port``."""
    return [str(cli), "sandbox", "--host", LOOPBACK, "--port", str(port)]


class ProcessError(HarnessError):
    """A child process exited, or did not become ready in time."""


def tail(path: Path, lines: int = 12, width: int = 400) -> str:
    """The last lines of a log, each cut to ``width`` characters (tracebacks are long)."""
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    cut = [line if len(line) <= width else line[:width] + " [...]" for line in content[-lines:]]
    return "\n".join(cut) or "<empty>"


#: Default sender rates as high as a rate may be: for runs that measure or exercise everything
#: but pacing, whose senders would otherwise go at a long code's one segment a second.
HIGH_SENDER_RATES = {
    "SENDER_RATE_LONG_CODE": "10000",
    "SENDER_RATE_TOLL_FREE": "10000",
    "SENDER_RATE_SHORT_CODE": "10000",
    "EMAIL_DOMAIN_RATE": "10000",
}


def scrubbed_env(**settings: str) -> dict[str, str]:
    """This process's environment without any gateway setting, plus ``settings``: nothing
    from a developer's shell may redirect a child. Senders go unpaced (``HIGH_SENDER_RATES``)
    unless ``settings`` say otherwise."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(HIGH_SENDER_RATES)
    env.update(settings)
    return env


class Process:
    """One child process with its own log file; signalled only by its own PID.

    ``cwd`` defaults to the child's ``DATA_DIR``. ``new_session`` puts the child in a session
    of its own, so that a Ctrl-C reaches only the parent, which then stops its children in
    order. ``stderr_path`` keeps the child's stderr apart from its stdout (``log_path``), for a
    test that reads the two apart; both files then hold the child's output alone (no header
    line of ours).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        cwd: Path | str | None = None,
        new_session: bool = False,
        stderr_path: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.stderr_path = stderr_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as files:
            if stderr_path is None:
                log = files.enter_context(log_path.open("ab"))
                log.write(f"=== {name}: {' '.join(self.argv)}\n".encode())
                log.flush()
                errors: int | IO[bytes] = subprocess.STDOUT
            else:
                log = files.enter_context(log_path.open("wb"))
                errors = files.enter_context(stderr_path.open("wb"))
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=cwd if cwd is not None else self.env.get("DATA_DIR"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=errors,
                start_new_session=new_session,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once reaped (negative: killed by that signal); None while running."""
        return self.proc.returncode

    def tail(self, lines: int = 12) -> str:
        state = "running" if self.alive else f"exited {self.proc.returncode}"
        head = f"--- {self.name} (pid {self.pid}, {state}) {self.log_path}"
        text = f"{head}\n{tail(self.log_path, lines)}"
        if self.stderr_path is not None:
            text += f"\n--- stderr {self.stderr_path}\n{tail(self.stderr_path, lines)}"
        return text

    def log_text(self) -> str:
        """The log: the child's stdout, and its stderr too unless kept apart."""
        return self.log_path.read_text(errors="replace")

    def stderr_text(self) -> str:
        """The child's stderr when kept apart (``stderr_path``), else empty (it is in the log)."""
        if self.stderr_path is None:
            return ""
        return self.stderr_path.read_text(errors="replace")

    def all_text(self) -> str:
        """Everything the child wrote: its stdout, then its stderr if kept apart."""
        return self.log_text() + self.stderr_text()

    def output(self) -> str:
        """Everything the child wrote, for a failure message."""
        if self.stderr_path is None:
            return self.log_text()
        return f"stdout:\n{self.log_text()}\nstderr:\n{self.stderr_text()}"

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (``LOG_JSON``) the child wrote so far, from both streams."""
        lines = self.all_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def check(self) -> None:
        """Raise :class:`ProcessError` if the process has exited."""
        if not self.alive:
            raise ProcessError(f"{self.name} exited\n{self.tail(40)}")

    def terminate(self, within: float = STOP_TIMEOUT) -> bool:
        """SIGTERM, then SIGKILL after ``within`` seconds; reaped either way. False when it
        had to be killed (it ignored SIGTERM)."""
        graceful = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=within)
            except subprocess.TimeoutExpired:
                graceful = False
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()
        return graceful

    async def wait_exit(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self, within: float = STOP_TIMEOUT) -> bool:
        """:meth:`terminate` without blocking the event loop."""
        return await asyncio.to_thread(self.terminate, within)

    def kill_blocking(self) -> None:
        """SIGKILL, and reaped: no cleanup, no acknowledgement, no graceful drain."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()

    async def kill(self) -> None:
        """:meth:`kill_blocking` without blocking the event loop."""
        await asyncio.to_thread(self.kill_blocking)


async def wait_http(
    proc: Process,
    url: str,
    *,
    within: float = START_TIMEOUT,
    http: httpx.AsyncClient | None = None,
    lines: int = 12,
) -> None:
    """Until ``url`` answers 200 while ``proc`` stays alive."""
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(loopback_client())
        deadline = time.monotonic() + within
        last = "no answer"
        while True:
            if not proc.alive:
                raise ProcessError(f"{proc.name} died on start\n{proc.tail(lines)}")
            try:
                response = await http.get(url, timeout=2)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{proc.name} not ready at {url} within {within:.0f}s ({last})\n"
                    f"{proc.tail(lines)}"
                )
            await asyncio.sleep(0.1)


def wait_http_blocking(
    proc: Process, url: str, *, within: float = START_TIMEOUT, lines: int = 12
) -> None:
    """:func:`wait_http` for code that runs no event loop (synchronous tests and fixtures).

    The wait runs in a private event loop that is never made the thread's current one, so a
    test framework's own loop is left as it was."""
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        runner.run(wait_http(proc, url, within=within, lines=lines))


@contextlib.contextmanager
def started(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    ready: str | None = None,
    cwd: Path | str | None = None,
    stderr_path: Path | None = None,
) -> Iterator[Process]:
    """A child (see :class:`Process`), ready once ``ready`` (a URL) answers 200 if given;
    stopped on the way out (SIGTERM, then SIGKILL). Its exit code is read after the block."""
    proc = Process(name, argv, env, log_path, cwd=cwd, stderr_path=stderr_path)
    try:
        if ready is not None:
            wait_http_blocking(proc, ready, lines=40)
        yield proc
    finally:
        proc.terminate()


class Served(NamedTuple):
    """A child answering HTTP (``serve``, ``sandbox``), and its base URL."""

    process: Process
    url: str


@contextlib.contextmanager
def serving(
    env: Mapping[str, str],
    cwd: Path,
    name: str = "serve",
    *,
    host: str = LOOPBACK,
    ready: str = "/health",
    cli: Path | str = CLI,
) -> Iterator[Served]:
    """``messaging-gateway serve`` on a free port bound to ``host`` (loopback unless a test
    says otherwise; it is always reached through loopback), ready (``ready`` answers 200).
    Its stdout and stderr are kept apart, in ``cwd``, as ``name.stdout`` and ``name.stderr``."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    argv = serve_command(port, host=host, cli=cli)
    stdout, stderr = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with started(name, argv, env, stdout, ready=url + ready, cwd=cwd, stderr_path=stderr) as proc:
        yield Served(proc, url)


@contextlib.contextmanager
def sandbox_serving(
    env: Mapping[str, str], cwd: Path, *, port: int | None = None, cli: Path | str = CLI
) -> Iterator[Served]:
    """The standalone ``messaging-gateway sandbox`` on a loopback port (a free one unless
    given), ready (its control API answers 200); its log is ``sandbox.log`` in ``cwd``."""
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    argv = sandbox_command(port, cli)
    ready = url + "/control/config"
    with started("sandbox", argv, env, cwd / "sandbox.log", ready=ready, cwd=cwd) as proc:
        yield Served(proc, url)


async def wait_heartbeats(
    redis_url: str, workers: Iterable[Process], *, within: float = START_TIMEOUT
) -> None:
    """Until every worker's heartbeat is in Redis: a worker beats once its consumer group
    exists, before it reads (see workers/liveness.py)."""
    host = socket.gethostname()
    pending = list(workers)
    deadline = time.monotonic() + within
    redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        while pending:
            for proc in list(pending):
                if not proc.alive:
                    raise ProcessError(f"{proc.name} died on start\n{proc.tail()}")
                with contextlib.suppress(Exception):
                    if await redis.zscore(WORKERS, f"{host}-{proc.pid}") is not None:
                        pending.remove(proc)
            if pending:
                if time.monotonic() > deadline:
                    raise ProcessError(
                        f"workers not ready within {within:.0f}s\n"
                        + "\n".join(p.tail() for p in pending)
                    )
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def serve_process(
    env: Mapping[str, str],
    log_path: Path,
    *,
    name: str = "api",
    ready: str = "/ready",
    within: float = START_TIMEOUT,
    lines: int = 12,
    port: int | None = None,
) -> AsyncIterator[Served]:
    """``messaging-gateway serve`` on a loopback port (a free one unless given), ready
    (``ready`` answers 200): the process and its base URL. Stopped (SIGTERM) on the way out."""
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    proc = Process(name, serve_command(port), env, log_path)
    try:
        await wait_http(proc, url + ready, within=within, lines=lines)
        yield Served(proc, url)
    finally:
        await proc.stop()


@contextlib.asynccontextmanager
async def embedded_serve(tmp: Path, **settings: str) -> AsyncIterator[tuple[Process, str, str]]:
    """A real embedded ``messaging-gateway serve`` (no DATABASE_URL, no REDIS_URL) on a free
    loopback port, ready: the process, its base URL and its development key. ``settings`` are
    environment variables; none is inherited from the caller's environment."""
    env = scrubbed_env(DATA_DIR=str(tmp), LOG_LEVEL="WARNING", **settings)
    async with serve_process(env, tmp / "api.log") as (proc, url):
        yield proc, url, (tmp / "dev-api-key").read_text().strip()


@contextlib.asynccontextmanager
async def dedicated_postgres(base: Path, database: str) -> AsyncIterator[PostgresServer]:
    """A PostgreSQL server of one's own, with ``database`` created: for tests that stop it."""
    server = await asyncio.to_thread(PostgresServer.start, base)
    try:
        await asyncio.to_thread(server.create_database, database)
        yield server
    finally:
        await asyncio.to_thread(server.stop)
