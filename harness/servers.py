"""Throwaway real PostgreSQL and Redis servers, for the tests and the benchmarks.

Plain classes (no pytest dependency), driven from session-scoped fixtures or a benchmark run::

    pg = PostgresServer.start(tmp_path_factory.mktemp("pg"))
    pg.create_database("gateway_test")
    url = pg.url("gateway_test")  # postgresql+asyncpg://gateway:...@127.0.0.1:PORT/gateway_test
    ...
    pg.stop()

Both servers listen on 127.0.0.1 on a free random port, keep their data in a private
temporary directory (removed by ``stop()``) and write their log to ``base_dir``. ``stop()``
is idempotent. Nothing is registered globally (no atexit hooks, no signal handlers).

PostgreSQL refuses to run as root: when the tests run as root, initdb/postgres are started
as the ``postgres`` system user (created with ``useradd --system`` if missing) through
``setpriv`` (or ``runuser``), with the data directory in a fresh directory under /tmp that
the user owns -- pytest's ``tmp_path`` lives under a 0700 root-owned directory the
``postgres`` user could not traverse.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypedDict, TypeVar, Unpack
from urllib.parse import quote

__all__ = [
    "LOOPBACK",
    "HarnessError",
    "PostgresServer",
    "RedisServer",
    "ServerStartError",
    "free_port",
    "redis_ping",
    "stopped_on_failure",
]

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_START_ATTEMPTS = 3  # retried with a new port if another process grabbed ours meanwhile


class HarnessError(RuntimeError):
    """Something the harness started failed: a server, a gateway process, a readiness wait."""


class ServerStartError(HarnessError):
    """A throwaway server could not be started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty log>"


def _short_tmp_root() -> str:
    # Short (unix socket paths are limited to ~107 bytes) and world-traversable.
    return "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()


def _terminate(proc: subprocess.Popen[bytes], sig: int, pid: int | None = None) -> None:
    """Send ``sig`` to ``pid`` (default: the child), wait, escalate to SIGKILL; reap."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid if pid is not None else proc.pid, sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                if pid is not None and pid != proc.pid:
                    os.kill(pid, signal.SIGKILL)
                proc.kill()
    proc.wait()


def _port_in_use(log: Path) -> bool:
    text = _log_tail(log, 200)
    return "Address already in use" in text or "could not bind" in text


class _Stoppable(Protocol):
    def stop(self) -> None: ...


_S = TypeVar("_S", bound=_Stoppable)


@contextlib.contextmanager
def stopped_on_failure(resource: _S) -> Iterator[_S]:
    """``resource``, stopped if the block fails or is interrupted: a half-started resource
    leaves nothing running behind the error."""
    try:
        yield resource
    except BaseException:
        resource.stop()
        raise


class _Throwaway:
    """What both servers share: a private directory, removed by ``stop()``, a log in
    ``base_dir``, and a first start on a free port (another one if that was taken meanwhile)."""

    base_dir: Path
    log_path: Path
    port: int
    workdir: Path | None
    _proc: subprocess.Popen[bytes] | None
    host: str = LOOPBACK
    #: The server's name in its log and errors, what it does once it is ready, and how often
    #: ``_ready()`` is asked until it is.
    _name: str
    _readiness: str
    _poll_seconds: float

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @contextlib.contextmanager
    def _starting(self) -> Iterator[None]:
        """Around a first start: ``base_dir`` exists, and a failed start leaves nothing."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with stopped_on_failure(self):
            yield

    def _launch(self) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _spawn(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        """Run ``cmd`` in the work directory, its output appended to the log; return once the
        server is ready, raise ``ServerStartError`` if it exits or is not ready in time."""
        with self.log_path.open("ab") as log:
            log.write(f"\n=== starting {self._name} on port {self.port}: {cmd}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ServerStartError(
                    f"{self._name} exited with code {code} during startup; log "
                    f"{self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self._stop_process()
                raise ServerStartError(
                    f"{self._name} did not {self._readiness} on {self.host}:{self.port} within "
                    f"{START_TIMEOUT:.0f}s; log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(self._poll_seconds)

    def _launch_with_retries(self, *, keep_port: bool) -> None:
        for attempt in range(_START_ATTEMPTS):
            if not keep_port or not self.port:
                self.port = free_port()
            try:
                self._launch()
                return
            except ServerStartError:
                if keep_port or attempt == _START_ATTEMPTS - 1 or not _port_in_use(self.log_path):
                    raise

    def _stop_process(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and delete its data. Safe to call more than once."""
        self._stop_process()
        workdir, self.workdir = self.workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin/postgres
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))


def find_postgres_bindir() -> Path:
    """Directory with ``initdb``/``postgres``/``psql``: highest /usr/lib/postgresql/*/bin,
    else the directory of ``postgres`` on PATH. ``GATEWAY_TEST_PG_BINDIR`` overrides."""
    override = os.environ.get("GATEWAY_TEST_PG_BINDIR")
    if override:
        return Path(override)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=_version_key)
    candidates = [c for c in candidates if os.access(c, os.X_OK)]
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    raise ServerStartError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "install the 'postgresql' package or run scripts/test.sh"
    )


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _drop_privileges_prefix(user: pwd.struct_passwd) -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv:
        # exec()s the command, so the Popen pid is the postmaster itself.
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"]
    raise ServerStartError("running as root but neither setpriv nor runuser is available")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)
    return env


class _PostgresOptions(TypedDict, total=False):
    user: str
    password: str
    durable: bool


class PostgresServer(_Throwaway):
    """A private PostgreSQL cluster (superuser ``gateway``) on 127.0.0.1:``port``.

    TCP connections authenticate with ``user``/``password`` (scram-sha-256); connections
    over the private unix socket are trusted.
    """

    system_user: str = "postgres"
    _name = "postgres"
    _readiness = "accept connections"
    _poll_seconds = 0.1

    def __init__(
        self,
        base_dir: Path,
        *,
        user: str = "gateway",
        password: str = "gateway",
        durable: bool = False,
    ) -> None:
        # Tests trade durability for speed; benchmarks claim "full durability" and keep it.
        self.durable = durable
        self.base_dir = Path(base_dir)
        self.user = user
        self.password = password
        self.port = 0
        self.bindir = find_postgres_bindir()
        self.workdir: Path | None = None  # holds data/ and the unix socket; removed by stop()
        self.log_path = self.base_dir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._prefix: list[str] = []
        self._owner: pwd.struct_passwd | None = None

    # -- public API ---------------------------------------------------------------------

    @classmethod
    def start(cls, base_dir: Path, **options: Unpack[_PostgresOptions]) -> Self:
        """initdb + start a fresh cluster; returns once it accepts connections."""
        server = cls(base_dir, **options)
        with server._starting():
            server._init_cluster()
            server._launch_with_retries(keep_port=False)
        return server

    @property
    def data_dir(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("PostgresServer is not initialised")
        return self.workdir / "data"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs (for CPU accounting), else None."""
        if self._proc is None:
            return None
        return self._postmaster_pid() or self._proc.pid

    def url(self, dbname: str, driver: str = "postgresql+asyncpg") -> str:
        user, password = quote(self.user, safe=""), quote(self.password, safe="")
        return f"{driver}://{user}:{password}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> None:
        """CREATE DATABASE ``name`` unless it already exists."""
        self.psql(
            "SELECT format('CREATE DATABASE %I', :'dbname') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dbname')\\gexec\n",
            variables={"dbname": name},
        )

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` (if it exists), disconnecting its sessions."""
        self.psql(
            "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'dbname')\\gexec\n",
            variables={"dbname": name},
        )

    def psql(
        self, script: str, *, dbname: str = "postgres", variables: dict[str, str] | None = None
    ) -> str:
        """Run a psql script (stdin) over TCP as the superuser; return its stdout."""
        args = [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            dbname,
        ]
        for key, value in (variables or {}).items():
            args += ["-v", f"{key}={value}"]
        env = _clean_env() | {"PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"}
        proc = subprocess.run(
            args, input=script.encode(), env=env, capture_output=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"psql failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')}"
            )
        return proc.stdout.decode()

    def restart(self) -> None:
        """Stop the postmaster (fast shutdown) and start it again on the same port and data.
        Also brings the server back after ``stop_process()``."""
        self.stop_process()
        self._launch_with_retries(keep_port=True)

    def stop_process(self, mode: str = "fast") -> None:
        """Stop the postmaster but keep the data (see ``restart``). ``mode``: smart, fast
        or immediate, as for ``pg_ctl stop -m``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        _terminate(proc, sig, self._postmaster_pid() or proc.pid)

    def _stop_process(self) -> None:
        self.stop_process(mode="immediate")

    def __repr__(self) -> str:
        return f"<PostgresServer {self.host}:{self.port} running={self.running}>"

    # -- internals ----------------------------------------------------------------------

    def _run_as_owner(self, args: Sequence[str]) -> list[str]:
        return [*self._prefix, *args]

    def _init_cluster(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="gw-pg-", dir=_short_tmp_root()))
        if os.geteuid() == 0:
            self._owner = _ensure_system_user(self.system_user)
            self._prefix = _drop_privileges_prefix(self._owner)
            os.chmod(self.workdir, 0o755)
            os.chown(self.workdir, self._owner.pw_uid, self._owner.pw_gid)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._owner is not None:
            os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
        os.chmod(pwfile, 0o600)
        cmd = self._run_as_owner(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        try:
            proc = subprocess.run(
                cmd, cwd=self.workdir, env=_clean_env(), capture_output=True, check=False
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).decode(errors="replace")
            raise ServerStartError(f"initdb failed (exit {proc.returncode}):\n{output}")

    def _launch(self) -> None:
        assert self.workdir is not None
        cmd = self._run_as_owner(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                f"unix_socket_directories={self.workdir}",
                *(
                    []
                    if self.durable
                    else [
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ]
                ),
                "-c",
                "max_connections=200",
            ]
        )
        self._spawn(cmd, _clean_env())

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                pass
        except OSError:
            return False
        try:
            return self.psql("SELECT 1").strip() == "1"
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def _postmaster_pid(self) -> int | None:
        if self.workdir is None:
            return None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None


# --------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------


def find_redis_server() -> str:
    found = os.environ.get("GATEWAY_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if not found and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    if not found:
        raise ServerStartError(
            "redis-server not found; install the 'redis-server' package or run scripts/test.sh"
        )
    return found


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a Redis server answers PING with +PONG (raw socket; no redis-py needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(_Throwaway):
    """A private, non-persistent ``redis-server`` on 127.0.0.1:``port``."""

    _name = "redis-server"
    _readiness = "answer PING"
    _poll_seconds = 0.05

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self.port = 0
        self.executable = find_redis_server()
        self.workdir: Path | None = None
        self.log_path = self.base_dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, base_dir: Path) -> Self:
        server = cls(base_dir)
        with server._starting():
            server._launch_with_retries(keep_port=False)
        return server

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs, else None."""
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """SIGKILL, as a crash would: the data is gone (it never was on disk), and
        ``restart()`` starts an empty server on the same port, as a supervisor would."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self) -> None:
        """Stop the server (if running) and start an empty one on the same port.
        Also works after ``stop()``, e.g. to end a simulated outage."""
        self._stop_process()
        self._launch()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} running={self.running}>"

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, signal.SIGTERM)

    def _launch(self) -> None:
        if self.workdir is None or not self.workdir.is_dir():
            self.workdir = Path(tempfile.mkdtemp(prefix="gw-redis-", dir=_short_tmp_root()))
        cmd = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]
        self._spawn(cmd)

    def _ready(self) -> bool:
        return redis_ping(self.host, self.port)
