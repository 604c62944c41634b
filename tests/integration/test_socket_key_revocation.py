"""A revoked API key stops working on the websockets already open with it.

Real processes only: two ``messaging-gateway serve`` on PostgreSQL + Redis, with the sockets
on the second and the key revoked by ``messaging-gateway revoke-api-key`` (which no API process
hears of); and one ``messaging-gateway serve`` in the embedded mode (SQLite, in-process
broker), the key revoked by the same command on its database file.

An account has two keys, and a socket with each subscribes to the account's events; messages
keep being sent (over HTTP, with the key that stays) while one key is revoked. Its socket must
then be closed with 4403 and the reason "API key revoked", having been sent nothing but the
events of its subscription, and its subscription must end on the server; the other socket
keeps receiving. The deadlines only tell "closed" from "never closed": nothing here is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from harness.http import loopback_client
from harness.pipeline import Pipeline
from harness.processes import CLI, scrubbed_env, serve_process

PROTOCOL = Subprotocol("graphql-transport-ws")
KEY = re.compile(r"mgw_[A-Za-z0-9_-]{20,}")
PREFIX_LENGTH = 12  # gateway.services.auth.PREFIX_LENGTH: what revoke-api-key takes
#: Generous: a guard against waiting forever, never a measure of how fast anything is.
DEADLINE = 60.0

EVENTS = 'subscription Events { messageEvents(after: "0") { cursor kind messageId } }'
SEND = """
mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) { __typename ... on MessageAccepted { message { id } } }
}
"""

Cli = Callable[..., Awaitable[str]]


@dataclass
class Gateway:
    http: httpx.AsyncClient
    #: Where messages are sent over HTTP.
    http_url: str
    #: Where the sockets are opened.
    socket_url: str
    #: ``messaging-gateway`` with the gateway's settings: its output.
    cli: Cli
    #: The log of the process holding the sockets.
    socket_log: Callable[[], str]


async def run_cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        env=env,
        cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), DEADLINE)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"messaging-gateway {' '.join(args)}: {text}"
    return text


async def new_key(gw: Gateway, account: str) -> str:
    [key] = KEY.findall(await gw.cli("create-api-key", "--account", account))
    return key


def sms(body: str) -> dict[str, str]:
    return {"channel": "SMS", "from": "+14155550100", "to": "+14155550199", "body": body}


async def send_sms(gw: Gateway, key: str, body: str) -> str:
    response = await gw.http.post(
        gw.http_url + "/graphql",
        json={
            "query": SEND,
            "variables": {"input": sms(body)},
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    result = response.json()["data"]["sendMessage"]
    assert result["__typename"] == "MessageAccepted", result
    message_id: str = result["message"]["id"]
    return message_id


async def frame(ws: ClientConnection, within: float = DEADLINE) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    return message


@contextlib.asynccontextmanager
async def subscribed(base_url: str, key: str) -> AsyncIterator[ClientConnection]:
    """A socket with ``key``, acknowledged, subscribed to every event of the key's account
    (from the start, so that no event sent after this is missed)."""
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url, subprotocols=[PROTOCOL], open_timeout=DEADLINE, ping_interval=None
    ) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        )
        ack = await frame(ws)
        assert ack["type"] == "connection_ack", ack
        await ws.send(
            json.dumps({"id": "events", "type": "subscribe", "payload": {"query": EVENTS}})
        )
        yield ws


def assert_event(message: dict[str, Any]) -> str:
    """``message`` is an event of the subscription; its message id."""
    assert message["type"] == "next" and message["id"] == "events", message
    assert "errors" not in message["payload"], message
    message_id: str = message["payload"]["data"]["messageEvents"]["messageId"]
    return message_id


async def event_of(ws: ClientConnection, message_id: str) -> None:
    """Read the subscription's events up to one of ``message_id``."""
    while assert_event(await frame(ws)) != message_id:
        pass


async def subscriptions_active(gw: Gateway) -> float:
    response = await gw.http.get(gw.socket_url + "/metrics")
    found = re.search(r"^gateway_subscriptions_active (\S+)$", response.text, flags=re.MULTILINE)
    assert found is not None, response.text
    return float(found.group(1))


async def revoked_key_closes_its_socket(gw: Gateway) -> None:
    account = "acct-" + uuid.uuid4().hex[:10]
    doomed_key = await new_key(gw, account)
    kept_key = await new_key(gw, account)
    async with (
        subscribed(gw.socket_url, doomed_key) as doomed,
        subscribed(gw.socket_url, kept_key) as kept,
    ):
        first = await send_sms(gw, kept_key, "before")
        await event_of(doomed, first)
        await event_of(kept, first)
        # Mutations run over the socket too, until the key is revoked.
        await doomed.send(
            json.dumps(
                {
                    "id": "send",
                    "type": "subscribe",
                    "payload": {
                        "query": SEND,
                        "variables": {"input": sms("over the socket")},
                    },
                }
            )
        )
        while (answer := await frame(doomed))["id"] != "send":
            assert_event(answer)
        assert answer["payload"]["data"]["sendMessage"]["__typename"] == "MessageAccepted", answer
        while (answer := await frame(doomed))["id"] != "send":
            assert_event(answer)
        assert answer == {"id": "send", "type": "complete"}
        assert await subscriptions_active(gw) == 2

        await gw.cli("revoke-api-key", doomed_key[:PREFIX_LENGTH])

        # The account's events keep coming (sent with the other key) until the socket closes.
        deadline = time.monotonic() + DEADLINE
        received: list[dict[str, Any]] = []
        closed: ConnectionClosed | None = None
        while closed is None:
            assert time.monotonic() < deadline, (
                f"the socket with the revoked key is still open, {len(received)} messages "
                f"since the revocation, the last: {received[-3:]}"
            )
            await send_sms(gw, kept_key, "meanwhile")
            try:
                async with asyncio.timeout(0.5):
                    while True:
                        received.append(json.loads(await doomed.recv()))
            except TimeoutError:
                pass
            except ConnectionClosed as exc:  # the server's close frame has arrived
                closed = exc

        assert closed.rcvd is not None, closed
        assert (closed.rcvd.code, closed.rcvd.reason) == (4403, "API key revoked"), closed
        for message in received:  # the last events before the check; no complete, no error
            assert_event(message)

        # The revoked key's subscription ended on the server; the other one goes on.
        last = await send_sms(gw, kept_key, "after")
        await event_of(kept, last)
        while await subscriptions_active(gw) != 1:
            assert time.monotonic() < deadline, "the revoked socket's subscription still runs"
            await asyncio.sleep(0.1)

    refused = await gw.http.post(
        gw.http_url + "/graphql",
        json={"query": "{ __typename }"},
        headers={"Authorization": f"Bearer {doomed_key}"},
    )
    assert refused.status_code == 401, refused.text
    assert "Traceback" not in gw.socket_log(), gw.socket_log()[-3000:]


# --------------------------------------------------------------- two API processes


async def test_revoked_key_closes_its_socket_on_every_api_process(apis: Pipeline) -> None:
    async with loopback_client(timeout=30) as http:
        await revoked_key_closes_its_socket(
            Gateway(
                http=http,
                http_url=apis.api_url(0),
                socket_url=apis.api_url(1),
                cli=apis.cli,
                socket_log=apis.apis[1].log_text,
            )
        )


# --------------------------------------------------------------- embedded mode


def embedded_env(data_dir: Path) -> dict[str, str]:
    return scrubbed_env(
        DATA_DIR=str(data_dir),
        LOG_JSON="true",
        API_KEY_CACHE_SECONDS="1",
        SANDBOX_CALLBACK_DELAY="0.05",
    )


async def test_revoked_key_closes_its_socket_in_the_embedded_mode(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    async with (
        serve_process(env, tmp_path / "serve.log", name="embedded", within=DEADLINE, lines=40) as (
            server,
            base_url,
        ),
        loopback_client(timeout=30) as http,
    ):

        async def cli(*args: str) -> str:
            return await run_cli(env | {"LOG_JSON": "false"}, tmp_path, *args)

        await revoked_key_closes_its_socket(
            Gateway(
                http=http,
                http_url=base_url,
                socket_url=base_url,
                cli=cli,
                socket_log=server.log_text,
            )
        )
