"""The built wheel, installed into a fresh virtualenv, runs every role from any directory.

As the Dockerfile does: the locked dependencies become wheels (each file checked against its
hash in requirements.lock), the project's wheel is built from a copy of the packages and
pyproject.toml alone, and the project is installed from those wheels only (``--no-index``)
into a new virtualenv. Then ``migrate``, the embedded ``serve`` (``/ready``, and a message sent
to DELIVERED), ``sandbox`` and ``worker`` run from an empty temporary directory with no
``PYTHONPATH``: nothing can come from the source checkout, the migrations included.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from gateway.entry.migrations import alembic_config
from harness.processes import sandbox_serving, serving, started, worker_command
from harness.servers import LOOPBACK, PostgresServer, RedisServer, free_port
from tests.conftest import fresh_postgres_url
from tests.integration.test_cli import cli_env, dev_key_of, send_and_deliver

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 540  # a guard against hanging, not a performance assertion

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(600)]


@dataclass
class Installed:
    venv: Path

    @property
    def cli(self) -> Path:
        return self.venv / "bin" / "messaging-gateway"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def outside_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that could import the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def copy_sources(target: Path) -> None:
    """pyproject.toml, the README it names and the packages it includes: nothing else."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target.mkdir()
    for name in ("pyproject.toml", pyproject["project"]["readme"]):
        (target / name).write_bytes((ROOT / name).read_bytes())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert (ROOT / package / "__init__.py").is_file(), package
        for source in (ROOT / package).rglob("*"):
            if source.is_file() and "__pycache__" not in source.parts:
                copy = target / source.relative_to(ROOT)
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_bytes(source.read_bytes())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The Dockerfile's recipe: wheels of the locked dependencies (hash-checked) and of the
    project, then the project installed from those wheels alone into a new virtualenv."""
    base = tmp_path_factory.mktemp("wheel")
    copy_sources(base / "src")
    env = outside_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = [sys.executable, "-m", "pip"]
    wheels = base / "wheels"
    lock = ROOT / "requirements.lock"
    run([*pip, "wheel", "--require-hashes", "--wheel-dir", wheels, "-r", lock], cwd=base, env=env)
    # An absolute path: a bare name would be looked up on the index as a project.
    run([*pip, "wheel", "--no-deps", "--wheel-dir", wheels, base / "src"], cwd=base, env=env)
    assert len(list(wheels.glob("messaging_gateway-*.whl"))) == 1
    # No pip in the new virtualenv: this interpreter's pip installs into it. Only the wheels
    # above, and only what the project's metadata asks for (no development tools).
    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base, env=env)
    installed = Installed(venv)
    install = [*pip, "--python", installed.python, "install", "--no-compile", "--no-index"]
    run([*install, "--find-links", wheels, "messaging-gateway"], cwd=base, env=env)
    return installed


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory: the commands run here, far from the checkout."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    return empty


def wheel_env(**extra: str) -> dict[str, str]:
    """cli_env without DATA_DIR (the default, ``var`` under the working directory) and
    without PYTHONPATH."""
    env = cli_env(Path("unused"), **extra)
    del env["DATA_DIR"]
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def _head() -> str:
    """The head revision of the checkout's migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_the_packages_and_migrations_come_from_the_wheel(
    installed: Installed, workdir: Path
) -> None:
    script = (
        "import gateway, persistence, alembic.script, gateway.entry.migrations as m;"
        "d = alembic.script.ScriptDirectory.from_config(m.alembic_config());"
        "print(gateway.__file__); print(persistence.__file__); print(d.dir);"
        "print(d.get_current_head())"
    )
    out = run([installed.python, "-c", script], cwd=workdir, env=wheel_env()).split()
    for path in out[:3]:
        assert Path(path).is_relative_to(installed.venv / "lib"), out
    assert out[3] == _head(), "the wheel ships other migrations than the checkout"


def test_migrate_in_an_empty_directory(installed: Installed, workdir: Path) -> None:
    run([installed.cli, "migrate"], cwd=workdir, env=wheel_env())
    database = workdir / "var" / "gateway.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(_head(),)]


def test_migrate_postgres(installed: Installed, workdir: Path, postgres: PostgresServer) -> None:
    url = fresh_postgres_url(postgres)
    run([installed.cli, "migrate"], cwd=workdir, env=wheel_env(DATABASE_URL=url))
    name = url.rsplit("/", 1)[1]
    assert postgres.psql("SELECT version_num FROM alembic_version", dbname=name).split() == [
        _head()
    ]


def test_embedded_serve_is_ready_and_delivers(installed: Installed, workdir: Path) -> None:
    with (
        serving(wheel_env(), workdir, "serve", cli=installed.cli) as server,
        httpx.Client(timeout=30) as http,
    ):
        ready = http.get(f"{server.url}/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        key = dev_key_of(server)
        send_and_deliver(http, server.url, key, body="from the wheel")
        # GraphiQL's files are package data too: the page and everything it loads.
        page = http.get(f"{server.url}/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and f"Bearer {key}" in page.text
        files = re.findall(r'(?:src|href)="(graphiql/assets/[^"]+)"', page.text)
        assert files, page.text
        for path in files:
            response = http.get(f"{server.url}/{path}")
            assert response.status_code == 200, (path, response.status_code)
    assert (workdir / "var" / "gateway.sqlite3").is_file()


def test_sandbox_and_worker(
    installed: Installed, workdir: Path, postgres: PostgresServer, tmp_path: Path
) -> None:
    """The production roles: a worker on PostgreSQL and Redis, its providers pointed at a
    sandbox, both from the wheel."""
    database = fresh_postgres_url(postgres)
    redis = RedisServer.start(tmp_path / "redis")
    sandbox_port, health_port = free_port(), free_port()
    sandbox_url = f"http://{LOOPBACK}:{sandbox_port}"
    health_url = f"http://{LOOPBACK}:{health_port}/health"
    env = wheel_env(
        DATABASE_URL=database,
        REDIS_URL=redis.url,
        TWILIO_BASE_URL=sandbox_url,
        SENDGRID_BASE_URL=sandbox_url,
        WORKER_HEALTH_HOST=LOOPBACK,
        WORKER_HEALTH_PORT=str(health_port),
    )
    try:
        run([installed.cli, "migrate"], cwd=workdir, env=env)
        worker_argv = worker_command(installed.cli)
        with (
            sandbox_serving(env, workdir, port=sandbox_port, cli=installed.cli) as (sandbox, _),
            started(
                "worker", worker_argv, env, workdir / "worker.log", ready=health_url, cwd=workdir
            ) as worker_process,
            httpx.Client(timeout=10) as http,
        ):
            config = http.get(f"{sandbox_url}/control/config").json()
            assert config["outage"] is False
            for proc in (sandbox, worker_process):
                assert proc.alive, proc.output()
        for proc in (sandbox, worker_process):
            assert proc.returncode == 0, (
                f"{proc.name} exited with {proc.returncode}\n{proc.output()}"
            )
    finally:
        redis.stop()
