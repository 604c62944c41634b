"""PostgreSQL stopped under a real ``messaging-gateway serve``: every answer says so, in JSON.

A throwaway PostgreSQL of this test's own is stopped and started again. While it is down,
every ``/graphql`` request that needs it is answered 503 with ``Retry-After``, code
``UNAVAILABLE`` and the request id, whether the failure comes from the API-key lookup (outside
any GraphQL handling) or from a resolver; a websocket whose ``connection_init`` needs the
lookup is closed with 1013 (try again later). The server logs warnings, not errors. Once
PostgreSQL is back the same requests succeed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from harness.http import loopback_client
from harness.processes import CLI, Process, scrubbed_env, serve_process
from harness.servers import PostgresServer

KEY = re.compile(r"mgw_[A-Za-z0-9_-]{20,}")
SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) { __typename ... on MessageAccepted { message { id } } }
}
"""
CONVERSATIONS = "{ conversations { edges { node { id } } } }"
EVENTS = 'subscription { messageEvents(after: "0") { cursor status } }'
#: A guard against hanging, not a performance assertion.
RECOVERY_TIMEOUT = 60.0


def sms(tag: str) -> dict[str, Any]:
    return {"channel": "SMS", "from": "+14155550100", "to": "+14155550199", "body": tag}


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer.start(tmp_path / "postgres")
    try:
        yield server
    finally:
        server.stop()


def gateway_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return scrubbed_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(tmp_path),
        LOG_JSON="true",
        # Nothing delivers: only the API's own use of the database is under test.
        EMBEDDED_WORKER="false",
        # A key, once checked, is trusted throughout the outage: its requests then fail in
        # the resolvers, the others in the key lookup.
        API_KEY_CACHE_SECONDS="3600",
    )


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def new_key(env: dict[str, str]) -> str:
    out = cli(env, "create-api-key", "--account", "acct-" + uuid.uuid4().hex[:8])
    [key] = KEY.findall(out)
    return key


async def post(
    http: httpx.AsyncClient, url: str, key: str, query: str, variables: dict[str, Any] | None = None
) -> tuple[httpx.Response, str]:
    request_id = "outage-" + uuid.uuid4().hex
    response = await http.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": request_id},
    )
    return response, request_id


def assert_unavailable(response: httpx.Response, request_id: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert response.headers["retry-after"] == "5"
    assert response.headers["x-request-id"] == request_id
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "UNAVAILABLE", "retryAfter": 5, "requestId": request_id}
    assert "unavailable" in error["message"]


async def connection_init(url: str, key: str) -> dict[str, Any] | ConnectionClosed:
    """The server's answer to connection_init: its message, or how it closed the socket."""
    ws_url = url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        )
        try:
            answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
        except ConnectionClosed as closed:
            return closed
        return answer


async def replay_error(url: str, key: str) -> dict[str, Any]:
    """The first error of a subscription whose replay needs the database."""
    ws_url = url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": EVENTS}}
        await ws.send(json.dumps(subscribe))
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert message["type"] == "next" and "errors" in message["payload"], message
        error: dict[str, Any] = message["payload"]["errors"][0]
        return error


def log_lines(proc: Process, request_ids: set[str]) -> list[dict[str, Any]]:
    lines = []
    for line in proc.log_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("request_id") in request_ids:
                lines.append(entry)
    return lines


async def test_requests_during_a_database_outage_answer_503_unavailable_and_recover(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    own_postgres.create_database("gateway")
    env = gateway_env(tmp_path, own_postgres.url("gateway"))
    cli(env, "migrate")
    warm, cold = new_key(env), new_key(env)

    async with (
        serve_process(env, tmp_path / "api.log") as (proc, url),
        loopback_client(timeout=30) as http,
    ):
        response, _ = await post(http, url, warm, SEND, {"input": sms("before")})
        assert response.status_code == 200, response.text

        await asyncio.to_thread(own_postgres.stop_process)

        answered: set[str] = set()
        # The key lookup fails (cold key), or the resolver does (warm key, cached).
        for key, query, variables in [
            (cold, SEND, {"input": sms("lookup")}),
            (cold, CONVERSATIONS, None),
            (warm, SEND, {"input": sms("resolver")}),
            (warm, CONVERSATIONS, None),
        ]:
            for _ in range(3):
                response, request_id = await post(http, url, key, query, variables)
                assert_unavailable(response, request_id)
                answered.add(request_id)

        closed = await connection_init(url, cold)
        assert isinstance(closed, ConnectionClosed), closed
        assert closed.rcvd is not None and closed.rcvd.code == 1013, closed
        error = await replay_error(url, warm)
        assert error["extensions"]["code"] == "UNAVAILABLE", error

        logged = log_lines(proc, answered)
        assert {e["request_id"] for e in logged} == answered, proc.tail(40)
        assert {e["event"] for e in logged if e["level"] in ("warning", "warn")} == {
            "backing_service_unavailable"
        }
        assert not [e for e in logged if e["level"] in ("error", "critical")], logged
        assert "Traceback" not in proc.log_text()

        await asyncio.to_thread(own_postgres.restart)

        # Pooled connections died with the server: the first requests may still meet one.
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while True:
            response, request_id = await post(http, url, cold, SEND, {"input": sms("after")})
            if response.status_code == 200:
                break
            assert_unavailable(response, request_id)
            assert time.monotonic() < deadline, proc.tail(40)
            await asyncio.sleep(0.2)
        assert response.json()["data"]["sendMessage"]["__typename"] == "MessageAccepted"
        for key in (warm, cold):
            response, _ = await post(http, url, key, CONVERSATIONS)
            assert response.status_code == 200 and "errors" not in response.json(), response.text
        ack = await connection_init(url, cold)
        assert isinstance(ack, dict) and ack["type"] == "connection_ack", ack
