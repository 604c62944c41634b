"""The sandbox's callback delivery over real HTTP, with its own client and with a borrowed one.

A receiver stands in for the gateway's webhooks and answers per path: accepted, refused, or
failing once and then accepted. What is checked: the exact bytes and headers arrive, 5xx and
network errors are retried, refusals are not, and every attempt is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.settings import Settings
from harness.asgi import run_uvicorn
from harness.http import loopback_client
from harness.servers import free_port
from providers.http import ProviderSession
from providers.sandbox_app import Sandbox, SandboxConfig, create_sandbox_app

FORM = "application/x-www-form-urlencoded"


@dataclass
class Receiver:
    seen: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    failures_left: int = 1

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.seen.append((request.url.path, body, dict(request.headers)))
            kind = request.path_params["kind"]
            if kind == "refuse":
                return Response(status_code=403)
            if kind == "flaky" and self.failures_left > 0:
                self.failures_left -= 1
                return Response(status_code=503)
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook/{kind}", hook, methods=["POST"])])


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    target = Receiver()
    async with run_uvicorn(target.app()) as url:
        yield target, url


@pytest.fixture(params=["own", "borrowed"])
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    config = SandboxConfig.from_settings(Settings())
    config.callback_backoff = 0.01
    if request.param == "own":
        box = Sandbox(config)
        yield box
        await box.aclose()
        return
    client = ProviderSession(max_connections=8, connect_timeout=5, read_timeout=5)
    try:
        box = Sandbox(config, client)
        yield box
        await box.aclose()
    finally:
        await client.aclose()


async def deliver(sandbox: Sandbox, url: str, body: bytes = b"a=1&b=2") -> bool:
    headers = {"Content-Type": FORM, "X-Twilio-Signature": "c2lnbmVk"}
    return await sandbox.deliver("twilio", url, summary={"n": 1}, content=body, headers=headers)


def last_entry(sandbox: Sandbox) -> dict[str, Any]:
    entry: dict[str, Any] = sandbox.callbacks[-1]
    return entry


async def test_an_accepted_callback_arrives_byte_for_byte_once(
    sandbox: Sandbox, receiver: tuple[Receiver, str]
) -> None:
    target, url = receiver
    for index in range(3):  # kept-alive connections are reused: each arrives exactly once
        assert await deliver(sandbox, f"{url}/hook/ok?mid={index}", f"n={index}".encode())
    assert [(path, body) for path, body, _ in target.seen] == [
        ("/hook/ok", b"n=0"),
        ("/hook/ok", b"n=1"),
        ("/hook/ok", b"n=2"),
    ]
    headers = target.seen[0][2]
    assert headers["content-type"] == FORM
    assert headers["x-twilio-signature"] == "c2lnbmVk"
    entry = last_entry(sandbox)
    assert (entry["attempts"], entry["http_status"], entry["error"]) == (1, 204, None)
    assert entry["n"] == 1 and entry["vendor"] == "twilio"


async def test_a_failing_gateway_is_called_again(
    sandbox: Sandbox, receiver: tuple[Receiver, str]
) -> None:
    target, url = receiver
    assert await deliver(sandbox, f"{url}/hook/flaky")
    assert len(target.seen) == 2
    entry = last_entry(sandbox)
    assert (entry["attempts"], entry["http_status"], entry["error"]) == (2, 204, None)


async def test_a_refusal_is_not_repeated(sandbox: Sandbox, receiver: tuple[Receiver, str]) -> None:
    target, url = receiver
    assert not await deliver(sandbox, f"{url}/hook/refuse")
    assert len(target.seen) == 1
    entry = last_entry(sandbox)
    assert (entry["attempts"], entry["http_status"], entry["error"]) == (1, 403, "HTTP 403")


async def test_an_unreachable_gateway_is_retried_then_given_up(sandbox: Sandbox) -> None:
    sandbox.config.callback_attempts = 3
    assert not await deliver(sandbox, f"http://127.0.0.1:{free_port()}/hook/ok")
    entry = last_entry(sandbox)
    assert entry["attempts"] == 3
    assert entry["http_status"] is None
    assert entry["error"] and "HTTP" not in entry["error"]


async def test_the_messages_resource_decodes_utf8_forms_with_repeated_fields() -> None:
    config = SandboxConfig.from_settings(Settings())
    config.callback_delay = 3600  # this test is about the request, not its callbacks
    app = create_sandbox_app(config)
    sandbox: Sandbox = app.state.sandbox
    path = f"/2010-04-01/Accounts/{config.twilio_account_sid}/Messages.json"
    body = "Grüße 👋 a+b=c & more"
    form = {
        "To": "+14155550101",
        "From": "+14155550100",
        "Body": body,
        "MediaUrl": ["https://example.com/a.jpg", "https://example.com/b.jpg"],
        "StatusCallback": "http://127.0.0.1:1/webhooks/twilio/status?mid=" + "ab" * 16,
    }
    auth = (config.twilio_account_sid, config.twilio_auth_token)
    async with (
        run_uvicorn(app) as url,
        loopback_client(auth=auth) as client,
    ):
        response = await client.post(url + path, data=form)
    assert response.status_code == 201, response.text
    resource = response.json()
    assert resource["body"] == body
    assert resource["num_media"] == "2"
    record = sandbox.requests[-1]
    assert record["body"] == body
    assert record["media"] == ["https://example.com/a.jpg", "https://example.com/b.jpg"]
    assert record["message_id"] == "ab" * 16
    assert record["outcome"] == "accepted"
