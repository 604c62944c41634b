"""Event webhooks with real worker processes (PostgreSQL + Redis): a worker killed in the
middle of a delivery loses nothing; once its claim has run out another worker delivers the
same event, under the same ``webhook-id``.

The endpoint is made through the service on the pipeline's database: the API processes keep
the default URL rules, which refuse the loopback receiver; the workers are started with
``WEBHOOK_ALLOW_PRIVATE_URLS``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.services.webhook_endpoints import (
    EndpointChange,
    UrlGuard,
    WebhookEndpointService,
    WithSecret,
)
from harness.asgi import run_uvicorn
from harness.pipeline import Pipeline
from persistence.sealed import SecretBox
from persistence.webhook_endpoints import DELIVERIES, WebhookEndpointRepository
from providers.signatures import verify_standard_webhook

#: Workers that may call the loopback receiver, and wait for it long enough that the kill
#: surely comes first.
WORKERS = {
    "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
    "WEBHOOK_TIMEOUT_SECONDS": "5",
    "WEBHOOK_POLL_INTERVAL": "0.1",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.1",
}


class NoLookups:
    async def resolve(self, host: str) -> list[Any]:
        raise AssertionError("private URLs are allowed here: nothing is looked up")


class HangingFirst:
    """Holds the first request open until released; answers every later one 200."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.release = asyncio.Event()

    async def handle(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        if len(self.received) == 1:
            await self.release.wait()
        return Response("ok")


async def until(check: Any, what: str, pipe: Pipeline, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}{pipe.diagnostics()}")


async def test_a_worker_killed_mid_delivery_loses_nothing(apis: Pipeline) -> None:
    receiver = HangingFirst()
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with run_uvicorn(app) as base_url:
        try:
            await killed_mid_delivery(apis, receiver, base_url + "/hook")
        finally:
            receiver.release.set()


async def killed_mid_delivery(pipe: Pipeline, receiver: HangingFirst, url: str) -> None:
    account = await pipe.new_account()
    service = WebhookEndpointService(
        WebhookEndpointRepository(pipe.engine, SecretBox(None)),
        UrlGuard(NoLookups(), allow_private=True),
    )
    made = await service.create(account.id, EndpointChange(url=url, kinds=["accepted"]))
    assert isinstance(made, WithSecret), made
    secret = made.secret
    first = await pipe.restart_workers([WORKERS, WORKERS])

    await pipe.send_one(
        0,
        account,
        {"channel": "SMS", "from": "+14155550100", "to": "+14155550186", "body": "kill"},
    )

    async def arrived(count: int) -> bool:
        return len(receiver.received) >= count

    await until(lambda: arrived(1), "the first try never arrived", pipe)
    # Both workers die while the try is open: whichever holds it never answers for it.
    await asyncio.gather(*(worker.kill() for worker in first))

    async def row() -> Any:
        async with pipe.engine.connect() as conn:
            return (
                await conn.execute(select(DELIVERIES).where(DELIVERIES.c.account_id == account.id))
            ).one()

    claimed = await row()
    # Claimed and counted as a try, never recorded: the delivery was in flight.
    assert claimed.state == "PENDING" and claimed.attempts == 1, claimed
    assert claimed.last_attempt_at is None and claimed.leased_until is not None

    await pipe.restart_workers([WORKERS])

    async def succeeded() -> Any:
        found = await row()
        return found if found.state == "SUCCEEDED" else None

    done = await until(succeeded, "the delivery was not tried again", pipe)
    assert done.attempts == 2 and done.last_status_code == 200
    assert len(receiver.received) == 2
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert ids == {f"evt_{done.event_id}"}
    for headers, body in receiver.received:
        assert verify_standard_webhook(secret, headers, body, now=time.time())
