"""The embedded mode's conveniences stay on this machine; the image's default shape is production.

- The development key is written into the GraphiQL page only for a client on loopback.
- The sandbox's control API answers loopback clients, or a request with the control token.
- The mounted sandbox exists only while a channel's provider points at it.
- The embedded mode binds a non-loopback address only when told to, and says so in its log.
- ``REQUIRE_PRODUCTION`` (set by the container image) refuses to start without
  ``DATABASE_URL`` and ``REDIS_URL``.

Every test server here is reached through 127.0.0.1, so the real servers always see a loopback
peer: a client beyond a proxy on this machine is simulated with the proxy's forwarding headers
(the servers' real decision), and a client on another machine by running the app in-process
with a crafted peer address (``httpx.ASGITransport(client=...)``), since this machine has no
other address that tests may use.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.entry.app import GatewayApp, create_app
from gateway.entry.bootstrap.shared import uses_mounted_sandbox
from gateway.settings import Settings
from harness.processes import sandbox_serving, serving
from tests.integration.test_cli import KEY_PATTERN, cli_env, dev_key_of, run_cli

REMOTE = ("203.0.113.9", 40000)  # TEST-NET-3: never routed, only written into a scope
LOCAL = ("127.0.0.1", 40000)
HTML = {"Accept": "text/html"}
TOKEN_HEADER = "X-Sandbox-Control-Token"
RELAYED = [
    {"X-Forwarded-For": "203.0.113.9"},
    {"X-Forwarded-For": "127.0.0.1"},
    {"Forwarded": "for=203.0.113.9;proto=https"},
    {"X-Real-IP": "203.0.113.9"},
]


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


# ------------------------------------------------------- in-process, crafted peer address


@dataclass
class InProcess:
    app: GatewayApp
    key: str
    remote: httpx.AsyncClient  # a client on another machine
    local: httpx.AsyncClient  # a client on this one


def client_from(app: GatewayApp, peer: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


@contextlib.asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[InProcess]:
    """The embedded app with its lifespan run (migrations, development key, worker)."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        client_from(app, REMOTE) as remote,
        client_from(app, LOCAL) as local,
    ):
        yield InProcess(app, app.state.dev_key, remote, local)


def embedded_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path, log_json=True, **overrides)


async def test_remote_client_gets_graphiql_without_the_key(tmp_path: Path) -> None:
    async with in_process(embedded_settings(tmp_path)) as gw:
        assert KEY_PATTERN.fullmatch(gw.key)
        page = await gw.remote.get("/graphql", headers=HTML)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "graphiql" in page.text.lower()
        assert gw.key not in page.text
        assert KEY_PATTERN.search(page.text) is None
        assert "Bearer" not in page.text, "no key field is pre-filled"
        # The same page, on loopback, is pre-filled: the difference is the peer only.
        mine = await gw.local.get("/graphql", headers=HTML)
        assert f"Bearer {gw.key}" in mine.text
        # The key itself still works from anywhere: it is an API key like any other.
        answer = await gw.remote.post(
            "/graphql",
            json={"query": "{ conversations { edges { cursor } } }"},
            headers={"Authorization": f"Bearer {gw.key}"},
        )
        assert answer.status_code == 200, answer.text


async def test_mounted_sandbox_control_needs_loopback_or_the_token(tmp_path: Path) -> None:
    token = "control-" + "x" * 24
    async with in_process(embedded_settings(tmp_path, sandbox_control_token=token)) as gw:
        for method, path, body in (
            ("GET", "/sandbox/control/config", None),
            ("GET", "/sandbox/control/requests", None),
            ("POST", "/sandbox/control/config", {"outage": True}),
            ("POST", "/sandbox/control/reset", None),
        ):
            refused = await gw.remote.request(method, path, json=body)
            assert refused.status_code == 403, (path, refused.text)
            assert TOKEN_HEADER in refused.json()["error"]
            wrong = await gw.remote.request(method, path, json=body, headers={TOKEN_HEADER: "x"})
            assert wrong.status_code == 403, (path, wrong.text)
        assert (await gw.local.get("/sandbox/control/config")).json()["outage"] is False
        allowed = await gw.remote.post(
            "/sandbox/control/config", json={"rate_500": 0.5}, headers={TOKEN_HEADER: token}
        )
        assert allowed.status_code == 200, allowed.text
        assert (await gw.local.get("/sandbox/control/config")).json()["rate_500"] == 0.5
        # The vendor APIs are not the control API: they check the vendor credentials.
        sid = gw.app.state.api.settings.twilio_account_sid
        vendor = await gw.remote.get(f"/sandbox/2010-04-01/Accounts/{sid}/Messages.json")
        assert vendor.status_code == 401, vendor.text


async def test_without_a_token_the_control_api_is_loopback_only(tmp_path: Path) -> None:
    async with in_process(embedded_settings(tmp_path)) as gw:
        response = await gw.remote.get("/sandbox/control/config", headers={TOKEN_HEADER: ""})
        assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    ("overrides", "mounted"),
    [
        ({}, True),
        (
            {"twilio_base_url": "http://127.0.0.1:9", "sendgrid_base_url": "http://127.0.0.1:9"},
            False,
        ),
        ({"twilio_base_url": "http://127.0.0.1:9"}, True),  # e-mail goes to sendgrid: unset
        ({"twilio_base_url": "http://127.0.0.1:9", "email_providers": "twilio"}, False),
        ({"sendgrid_base_url": "http://127.0.0.1:9", "sms_providers": "sendgrid"}, True),
        ({"redis_url": "redis://127.0.0.1:9/0"}, False),
    ],
)
async def test_sandbox_is_mounted_only_while_a_provider_points_at_it(
    tmp_path: Path, overrides: dict[str, str], mounted: bool
) -> None:
    settings = embedded_settings(tmp_path, **overrides)
    assert uses_mounted_sandbox(settings) is mounted
    if "redis_url" in overrides:
        return  # the app would need a Redis server; the decision above is what matters
    async with in_process(settings) as gw:
        response = await gw.local.get("/sandbox/control/config")
        assert response.status_code == (200 if mounted else 404), response.text
        assert (gw.app.state.api.sandbox is not None) is mounted


# ------------------------------------------------------------ real `messaging-gateway serve`


@pytest.fixture(scope="module")
def token_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """An embedded ``serve`` on 127.0.0.1 with a sandbox control token: (url, key, token)."""
    base = tmp_path_factory.mktemp("loopback-serve")
    token = "serve-token-" + "y" * 20
    env = cli_env(base / "data", SANDBOX_CONTROL_TOKEN=token)
    with serving(env, base, "serve") as server:
        yield server.url, dev_key_of(server), token


def test_real_serve_gives_the_key_to_loopback_only(token_serve: tuple[str, str, str]) -> None:
    base_url, key, _ = token_serve
    with httpx.Client(timeout=30) as http:
        page = http.get(f"{base_url}/graphql", headers=HTML)
        assert f"Bearer {key}" in page.text
        by_name = http.get(page.url, headers={**HTML, "Host": "localhost"})
        assert f"Bearer {key}" in by_name.text
        for relayed in RELAYED:
            proxied = http.get(f"{base_url}/graphql", headers={**HTML, **relayed})
            assert proxied.status_code == 200, proxied.text
            assert "graphiql" in proxied.text.lower()
            assert key not in proxied.text, relayed
            assert "Bearer" not in proxied.text, relayed
        rebound = http.get(f"{base_url}/graphql", headers={**HTML, "Host": "evil.example"})
        assert key not in rebound.text


def test_real_serve_sandbox_control_loopback_or_token(token_serve: tuple[str, str, str]) -> None:
    base_url, _, token = token_serve
    url = f"{base_url}/sandbox/control/config"
    with httpx.Client(timeout=30) as http:
        assert http.get(url).status_code == 200
        for relayed in RELAYED:
            assert http.get(url, headers=relayed).status_code == 403, relayed
            wrong = http.get(url, headers={**relayed, TOKEN_HEADER: token + "x"})
            assert wrong.status_code == 403
            right = http.get(url, headers={**relayed, TOKEN_HEADER: token})
            assert right.status_code == 200, right.text


def test_real_sandbox_command_control_loopback_or_token(tmp_path: Path) -> None:
    """``messaging-gateway sandbox`` (standalone): the same rule on ``/control/*``."""
    token = "alone-token-" + "z" * 20
    env = cli_env(tmp_path / "data", SANDBOX_CONTROL_TOKEN=token)
    with sandbox_serving(env, tmp_path) as (_, base_url):
        url = f"{base_url}/control/config"
        relayed = {"X-Forwarded-For": "203.0.113.9"}
        with httpx.Client(timeout=30) as http:
            assert http.get(url).status_code == 200
            assert http.post(url, json={"outage": True}, headers=relayed).status_code == 403
            assert http.post(f"{base_url}/control/reset", headers=relayed).status_code == 403
            assert http.get(url).json()["outage"] is False
            changed = http.post(
                url, json={"outage": True}, headers={**relayed, TOKEN_HEADER: token}
            )
            assert changed.status_code == 200, changed.text
            assert http.get(url).json()["outage"] is True


def test_embedded_serve_refuses_a_network_address_without_the_opt_in(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    for host in ("0.0.0.0", "::"):
        # Refused before anything is bound (port 9 is never listened on).
        result = run_cli("serve", "--host", host, "--port", "9", env=env, cwd=tmp_path)
        assert result.returncode == 2, _describe(result)
        assert "ALLOW_EMBEDDED_ON_NETWORK" in result.stderr, _describe(result)
        assert len(result.stderr.strip().splitlines()) == 1, _describe(result)
        assert not (tmp_path / "data" / "dev-api-key").exists(), "started anyway"


def test_embedded_serve_on_the_network_with_the_opt_in_warns(tmp_path: Path) -> None:
    """Bound to every interface, reached through 127.0.0.1 only: loopback still gets the key,
    and the log says that nobody else does."""
    env = cli_env(tmp_path / "data", ALLOW_EMBEDDED_ON_NETWORK="true")
    with serving(env, tmp_path, "serve-any", host="0.0.0.0") as server:
        key = dev_key_of(server)
        with httpx.Client(timeout=30) as http:
            page = http.get(f"{server.url}/graphql", headers=HTML)
            assert f"Bearer {key}" in page.text
        records = server.process.log_records()
        warnings = [r for r in records if r.get("event") == "embedded_mode_on_network"]
        assert len(warnings) == 1, server.process.output()
        assert warnings[0]["level"] == "warning"
        assert warnings[0]["host"] == "0.0.0.0"
        assert "not exposed to non-loopback clients" in warnings[0]["detail"]


# ------------------------------------------------------------------- REQUIRE_PRODUCTION


@pytest.mark.parametrize(
    ("command", "database", "missing"),
    [
        (["serve", "--host", "0.0.0.0", "--port", "9"], False, ["DATABASE_URL", "REDIS_URL"]),
        (["serve", "--host", "0.0.0.0", "--port", "9"], True, ["REDIS_URL"]),
        (["worker"], True, ["REDIS_URL"]),
        (["migrate"], False, ["DATABASE_URL"]),
        (["create-api-key", "--account", "acme"], False, ["DATABASE_URL"]),
    ],
)
def test_require_production_refuses_to_start_without_its_services(
    tmp_path: Path, command: list[str], database: bool, missing: list[str]
) -> None:
    """The image's default command: one clear line and exit code 2, nothing created."""
    url = "postgresql+asyncpg://nobody:nothing@127.0.0.1:9/none" if database else None
    env = cli_env(tmp_path / "data", url, REQUIRE_PRODUCTION="true")
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2, _describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, _describe(result)
    assert lines[0].startswith("messaging-gateway: REQUIRE_PRODUCTION"), _describe(result)
    for name in missing:
        assert name in lines[0], _describe(result)
    for name in {"DATABASE_URL", "REDIS_URL"} - set(missing):
        assert name not in lines[0], _describe(result)
    assert not (tmp_path / "data").exists(), "the embedded mode started anyway"
