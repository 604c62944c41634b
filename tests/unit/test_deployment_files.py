"""Dockerfile and docker-compose.yml cannot be run here (no Docker engine): check them against
the CLI and the settings instead, so they cannot silently drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.cli import build_parser
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


def test_dockerfile_installs_the_project_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, flags=re.MULTILINE)
    assert "pip install" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.MULTILINE)
    assert cmd is not None
    command = yaml.safe_load(cmd.group(1))
    assert command[0] == "messaging-gateway" and command[1] in cli_commands()
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile


def test_readme_says_how_to_run_it() -> None:
    assert "docker compose up" in (ROOT / "README.md").read_text()
