"""The sandbox as a Starlette app: the vendors' APIs plus a control API for tests.

The control API (``/control/*``) answers loopback clients only, or requests carrying
``SANDBOX_CONTROL_TOKEN`` in ``X-Sandbox-Control-Token``: it changes how the sandbox answers
and shows every message it received.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.loopback import is_local_request
from providers.http import ProviderSession
from providers.sandbox_app.config import SandboxConfig
from providers.sandbox_app.core import Sandbox
from providers.sandbox_app.mailgun_api import MailgunApi
from providers.sandbox_app.sendgrid_api import SendGridApi
from providers.sandbox_app.telnyx_api import TelnyxApi
from providers.sandbox_app.twilio_api import TwilioApi

__all__ = ["CONTROL_TOKEN_HEADER", "create_sandbox_app", "serving_app"]

#: The header that carries ``SANDBOX_CONTROL_TOKEN`` for a client that is not on loopback.
CONTROL_TOKEN_HEADER = "X-Sandbox-Control-Token"

Endpoint = Callable[[Request], Awaitable[Response]]


def control_allowed(request: Request, token: str | None) -> bool:
    """The control API changes how the sandbox answers and shows every message it received:
    loopback clients only (see gateway.loopback), or whoever sends the configured token."""
    if is_local_request(request.scope):
        return True
    sent = request.headers.get(CONTROL_TOKEN_HEADER)
    if not token or sent is None:
        return False
    return hmac.compare_digest(sent.encode(), token.encode())


def _guarded(endpoint: Endpoint, sandbox: Sandbox) -> Endpoint:
    async def guarded(request: Request) -> Response:
        if not control_allowed(request, sandbox.config.control_token):
            return JSONResponse(
                {
                    "error": "the sandbox's control API answers loopback clients only, or "
                    f"requests with the {CONTROL_TOKEN_HEADER} header set to "
                    "SANDBOX_CONTROL_TOKEN"
                },
                status_code=403,
            )
        return await endpoint(request)

    return guarded


def create_sandbox_app(config: SandboxConfig, client: ProviderSession | None = None) -> Starlette:
    """Routes are relative: serve the app alone, or mount it (the gateway uses ``/sandbox``).

    ``client`` sends the callbacks; without one the sandbox makes its own. The app's lifespan
    closes the sandbox, but a mounted app gets no lifespan of its own: whoever mounts it calls
    ``await app.state.sandbox.aclose()`` on shutdown.
    """
    sandbox = Sandbox(config, client)
    twilio = TwilioApi(sandbox)
    sendgrid = SendGridApi(sandbox)
    mailgun = MailgunApi(sandbox)
    telnyx = TelnyxApi(sandbox)

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
            Route("/v3/{domain}/messages", mailgun.send_message, methods=["POST"]),
            Route("/v3/{domain}/events", mailgun.list_events, methods=["GET"]),
            Route("/v2/messages", telnyx.create_message, methods=["POST"]),
            Route("/v2/messages/{message_id}", telnyx.fetch_message, methods=["GET"]),
            Route("/control/requests", _guarded(list_requests, sandbox), methods=["GET"]),
            Route("/control/config", _guarded(show_config, sandbox), methods=["GET"]),
            Route("/control/config", _guarded(change_config, sandbox), methods=["POST"]),
            Route("/control/reset", _guarded(reset, sandbox), methods=["POST"]),
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
