"""The sandbox as a Starlette app: Twilio's and SendGrid's APIs plus a control API for tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from providers.sandbox_app.config import SandboxConfig
from providers.sandbox_app.core import Sandbox
from providers.sandbox_app.sendgrid_api import SendGridApi
from providers.sandbox_app.twilio_api import TwilioApi

__all__ = ["create_sandbox_app", "serving_app"]


def create_sandbox_app(config: SandboxConfig, client: httpx.AsyncClient | None = None) -> Starlette:
    """Routes are relative: serve the app alone, or mount it (the gateway uses ``/sandbox``).

    ``client`` sends the callbacks; without one the sandbox makes its own. The app's lifespan
    closes the sandbox, but a mounted app gets no lifespan of its own: whoever mounts it calls
    ``await app.state.sandbox.aclose()`` on shutdown.
    """
    sandbox = Sandbox(config, client)
    twilio = TwilioApi(sandbox)
    sendgrid = SendGridApi(sandbox)

    async def list_requests(request: Request) -> Response:
        return JSONResponse(
            {"requests": list(sandbox.requests), "callbacks": list(sandbox.callbacks)}
        )

    async def show_config(request: Request) -> Response:
        return JSONResponse(sandbox.config.public_view())

    async def change_config(request: Request) -> Response:
        try:
            changes = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        if not isinstance(changes, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        try:
            sandbox.configure(changes)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(sandbox.config.public_view())

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return JSONResponse(sandbox.config.public_view())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sandbox.aclose()

    app = Starlette(
        routes=[
            Route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                twilio.create_message,
                methods=["POST"],
            ),
            Route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                twilio.list_messages,
                methods=["GET"],
            ),
            Route(
                "/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
                twilio.fetch_message,
                methods=["GET"],
            ),
            Route("/v3/mail/send", sendgrid.mail_send, methods=["POST"]),
            Route("/v3/messages", sendgrid.activity.list_messages, methods=["GET"]),
            Route("/v3/messages/{msg_id}", sendgrid.activity.fetch_message, methods=["GET"]),
            Route("/control/requests", list_requests, methods=["GET"]),
            Route("/control/config", show_config, methods=["GET"]),
            Route("/control/config", change_config, methods=["POST"]),
            Route("/control/reset", reset, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    app.state.twilio = twilio
    return app


def serving_app(app: Starlette) -> ASGIApp:
    """What a server of its own runs: ``app`` with the Twilio Messages resource's hot path
    answered ahead of the router (see :meth:`TwilioApi.asgi`)."""
    twilio: TwilioApi = app.state.twilio
    return twilio.asgi(app)
