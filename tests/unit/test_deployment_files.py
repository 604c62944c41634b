"""Dockerfile and docker-compose.yml cannot be run here (no Docker engine): check them against
the CLI and the settings instead, so they cannot silently drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.entry.cli import build_parser
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def cli_commands() -> set[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return set(subparsers.choices)  # type: ignore[arg-type]


def gateway_services() -> dict[str, Any]:
    return {name: s for name, s in SERVICES.items() if s.get("build")}


def test_compose_runs_the_production_shape() -> None:
    assert {"postgres", "redis", "migrate", "worker"} <= set(SERVICES)
    apis = [n for n, s in gateway_services().items() if s["command"][1] == "serve"]
    assert len(apis) >= 2, "two API replicas"
    ports = {p for n in apis for p in SERVICES[n]["ports"]}
    assert len(ports) == len(apis), "each API replica on its own host port"
    assert SERVICES["worker"]["command"][:2] == ["messaging-gateway", "worker"]
    assert SERVICES["migrate"]["command"] == ["messaging-gateway", "migrate"]
    assert SERVICES["migrate"]["restart"] == "no"


def test_every_gateway_command_exists_in_the_cli() -> None:
    commands = cli_commands()
    for name, service in gateway_services().items():
        command = service["command"]
        assert command[0] == "messaging-gateway", name
        assert command[1] in commands, f"{name}: unknown command {command[1]}"
        if command[1] == "serve":
            # The options must parse with the real CLI parser.
            args = build_parser().parse_args(command[1:])
            assert args.host == "0.0.0.0" and args.port == 8080


def test_environment_names_real_settings_and_points_at_the_compose_services() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    for name, service in gateway_services().items():
        env = service["environment"]
        unknown = set(env) - settings
        assert not unknown, f"{name}: unknown settings {unknown}"
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379")


def test_services_wait_for_what_they_need_and_have_health_checks() -> None:
    for name in ("postgres", "redis"):
        assert "healthcheck" in SERVICES[name], name
    for name, service in gateway_services().items():
        if name == "migrate":
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
            continue
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in service or "HEALTHCHECK" in (ROOT / "Dockerfile").read_text()
    api = next(s for s in gateway_services().values() if s["command"][1] == "serve")
    assert "/ready" in " ".join(api["healthcheck"]["test"])


def dockerfile_stages() -> list[str]:
    """The Dockerfile's build stages, each from its FROM line on."""
    text = (ROOT / "Dockerfile").read_text()
    return ["FROM" + part for part in re.split(r"^FROM", text, flags=re.MULTILINE)[1:]]


def dockerfile_env(stage: str) -> dict[str, str]:
    """ENV NAME=value pairs of one stage (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", stage)
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", joined, flags=re.MULTILINE):
        env.update(pair.split("=", 1) for pair in line.split())
    return env


def test_dockerfile_builds_the_wheel_and_installs_it_not_the_checkout() -> None:
    build, final = dockerfile_stages()
    for stage in (build, final):
        assert re.match(r"FROM python:3\.1[1-9]", stage), stage.splitlines()[0]
    assert re.match(r"FROM \S+ AS build\b", build)
    # What tests/integration/test_wheel_install.py does: the locked dependencies, hash-checked,
    # and the project as wheels; then the project from those wheels alone.
    assert "COPY requirements.lock ./" in build
    assert "pip wheel --require-hashes --wheel-dir /wheels -r requirements.lock" in build
    assert "pip wheel --no-deps --wheel-dir /wheels ." in build
    # Every package the wheel is made of is copied into the build stage.
    for package in ("gateway", "schema", "resolvers", "persistence", "providers", "workers"):
        assert f"COPY {package} {package}" in build, package
    assert "COPY --from=build /wheels" in final
    assert "pip install --no-index --find-links /tmp/wheels messaging-gateway" in final
    assert "pip install -e" not in build + final, "the image must run the wheel, not a checkout"
    assert not re.search(r"^COPY \. ", final, flags=re.MULTILINE), "no sources in the image"
    assert re.search(r"^USER \w+", final, flags=re.MULTILINE), "not run as root"


def test_dockerfile_runs_the_production_shape_by_default() -> None:
    final = dockerfile_stages()[-1]
    env = dockerfile_env(final)
    settings = {name.upper() for name in Settings.model_fields}
    assert env["REQUIRE_PRODUCTION"] == "true"
    assert {"REQUIRE_PRODUCTION", "ALLOW_EMBEDDED_ON_NETWORK"} <= settings
    assert "ALLOW_EMBEDDED_ON_NETWORK" not in env, "the image must not opt in to embedded"
    cmd = re.search(r"^CMD (\[.*\])$", final, flags=re.MULTILINE)
    assert cmd is not None
    command = yaml.safe_load(cmd.group(1))
    assert command[0] == "messaging-gateway" and command[1] == "serve"
    args = build_parser().parse_args(command[1:])
    assert args.host == "0.0.0.0" and args.port == 8080
    assert "HEALTHCHECK" in final and "/health" in final


def test_readme_says_how_to_run_it() -> None:
    assert "docker compose up" in (ROOT / "README.md").read_text()
