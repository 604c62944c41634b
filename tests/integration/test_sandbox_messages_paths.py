"""The standalone sandbox answers the Twilio Messages resource ahead of its router; mounted in
the gateway it goes through Starlette. Both must answer the same: status, headers and bytes,
for every answer (created, refused, failures injected), record the same, and schedule the same
callbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from gateway.settings import Settings
from harness.asgi import run_uvicorn
from harness.http import loopback_client
from providers.sandbox_app import Sandbox, SandboxConfig, create_sandbox_app
from providers.sandbox_app.app import serving_app

FORM = "application/x-www-form-urlencoded"
#: Values that differ per request by design: the sid, the dates, the server's Date header.
VARYING = {"sid", "date_created", "date_updated", "uri", "subresource_uris"}


class Served:
    def __init__(self, sandbox: Sandbox, url: str) -> None:
        self.sandbox = sandbox
        self.url = url


@asynccontextmanager
async def serve(ahead: bool) -> AsyncIterator[Served]:
    config = SandboxConfig.from_settings(Settings())
    config.callback_delay = 3600  # about the answers here, not the callbacks
    config.invalid_recipients = {"+14155550666"}
    app = create_sandbox_app(config)
    async with run_uvicorn(serving_app(app) if ahead else app) as url:
        yield Served(app.state.sandbox, url)
    await app.state.sandbox.aclose()


def shape(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in ("date", "server")]
    body: Any = response.content
    if response.headers.get("content-type") == "application/json":
        body = orjson.loads(response.content)
        if isinstance(body, dict):
            body = {k: ("<varies>" if k in VARYING else v) for k, v in body.items()}
    return response.status_code, headers, body


async def exchange(served: Served, configure: dict[str, Any], **request: Any) -> Any:
    sandbox = served.sandbox
    sandbox.reset()
    sandbox.configure({"seed": 7, **configure})
    config = sandbox.config
    sid = request.pop("sid", config.twilio_account_sid)
    auth = request.pop("auth", (config.twilio_account_sid, config.twilio_auth_token))
    form = {
        "To": "+14155550101",
        "From": "+14155550100",
        "Body": "Grüße 👋 a+b=c",
        "StatusCallback": "http://127.0.0.1:1/webhooks/twilio/status?mid=" + "ab" * 16,
    } | request.pop("form", {})
    async with loopback_client(auth=auth, timeout=10) as client:
        response = await client.post(
            f"{served.url}/2010-04-01/Accounts/{sid}/Messages.json", data=form
        )
    record = dict(sandbox.requests[-1])
    record.pop("received_at")
    record["provider_id"] = record["provider_id"] and record["provider_id"][:2]
    return shape(response), record, len(sandbox._tasks)


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "created": ({}, {}),
    "created with media": (
        {},
        {"form": {"MediaUrl": ["https://e.com/a.jpg", "https://e.com/b.jpg"]}},
    ),
    "unauthorized": ({}, {"auth": ("AC0", "nope")}),
    "other account": ({}, {"sid": "AC" + "0" * 32}),
    "outage": ({"outage": True}, {}),
    "rate limited": ({"rate_429": 1.0, "retry_after": 2.5}, {}),
    "server error": ({"rate_500": 1.0}, {}),
    "no body": ({}, {"form": {"Body": ""}}),
    "no to": ({}, {"form": {"To": ""}}),
    "invalid recipient": ({}, {"form": {"To": "+14155550666"}}),
}

STATUS = {
    "created": 201,
    "created with media": 201,
    "unauthorized": 401,
    "other account": 404,
    "outage": 503,
    "rate limited": 429,
    "server error": 500,
}


@pytest.mark.parametrize("case", CASES)
async def test_both_paths_answer_alike(case: str) -> None:
    configure, call = CASES[case]
    async with serve(ahead=False) as router, serve(ahead=True) as ahead:
        through_router = await exchange(router, configure, **dict(call))
        answered_ahead = await exchange(ahead, configure, **dict(call))
    (status, headers, _), _, callbacks = answered_ahead
    assert status == STATUS.get(case, 400), answered_ahead
    assert ("content-type", "application/json") in headers
    assert callbacks == (1 if status == 201 else 0)
    if case == "rate limited":
        assert ("retry-after", "3") in headers
    assert answered_ahead == through_router
