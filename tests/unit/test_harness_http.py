"""The suites' HTTP clients let idle connections go before the servers do (harness/http.py)."""

import ast
from pathlib import Path

import uvicorn

import gateway
from harness.http import KEEPALIVE_EXPIRY, loopback_client

ROOT = Path(gateway.__file__).parent.parent


def test_idle_connections_expire_before_uvicorns_keep_alive() -> None:
    assert uvicorn.Config(app=None).timeout_keep_alive > KEEPALIVE_EXPIRY


async def test_the_client_ignores_proxy_settings() -> None:
    async with loopback_client() as http:
        assert http.trust_env is False


def _raw_clients(path: Path) -> list[int]:
    """Lines of ``path`` that make an ``httpx.AsyncClient`` to a server over the network
    (one with an ASGI ``transport`` talks to no server)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AsyncClient"
            and not any(k.arg == "transport" for k in node.keywords)
        ):
            found.append(node.lineno)
    return found


def test_suites_reach_servers_through_the_harness_client_only() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for folder in ("tests", "harness", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "harness" / "http.py" and (lines := _raw_clients(path))
    }
    assert offenders == {}
