"""REST webhooks: provider status callbacks and inbound messages.

The routes only route: each path has its vendor's adapter (``providers.webhooks``), which
verifies the request (401 when credentials are missing, 403 when wrong: no state change),
parses it (400 with a clear message) and says what the vendor is answered. Parsing and applying
is ``providers.webhooks.apply``, shared with the replay; duplicates are answered 2xx and
have no second effect.

A payload we fail to apply is kept raw in webhook_receipts. When the database cannot take it
either (it is down), a verified payload goes to the spool in Redis (Redis mode), the provider
is answered 2xx once Redis has it, and a worker applies it once the database is back. An
unverified payload is never kept anywhere. With nowhere to keep it, the provider gets a 503
with Retry-After and delivers it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.observability.metrics import counter
from gateway.outages import RETRY_AFTER_SECONDS, describe, is_unavailable
from gateway.services.webhooks import WebhookService
from gateway.web.bodies import BodyTooLarge, read_body
from providers.webhooks import (
    MAX_BODY,
    Answer,
    PayloadError,
    ReceivedWebhook,
    Refused,
    WebhookAdapter,
    WebhookRequest,
)
from providers.webhooks.apply import apply_received, keep_payload
from providers.webhooks.generic import EMAIL_ROUTE, SMS_ROUTE
from providers.webhooks.mailgun import EVENTS_ROUTE as MAILGUN_EVENTS
from providers.webhooks.mailgun import INBOUND_ROUTE as MAILGUN_INBOUND
from providers.webhooks.sendgrid import EVENTS_ROUTE, INBOUND_ROUTE
from providers.webhooks.telnyx import MESSAGING_ROUTE as TELNYX_ROUTE
from providers.webhooks.twilio import MESSAGES_ROUTE, STATUS_ROUTE
from workers.webhook_spool import RedisWebhookSpool

log = structlog.get_logger(__name__)

WEBHOOKS = counter(
    "webhooks",
    "Webhook deliveries by source and outcome.",
    ["source", "outcome"],
)


_COUNTERS: dict[tuple[str, str], Any] = {}


def _count(source: str, outcome: str) -> None:
    """``WEBHOOKS.labels(source, outcome).inc()``, keeping the labelled child: looking it up
    validates and locks every time, once per status callback."""
    child = _COUNTERS.get((source, outcome))
    if child is None:
        child = _COUNTERS[(source, outcome)] = WEBHOOKS.labels(source, outcome)
    child.inc()


@dataclass(frozen=True, slots=True)
class WebhookServices:
    """What the webhook routes use, handed over by the API's bootstrap (``app.state``)."""

    webhooks: WebhookService
    #: Each route's vendor adapter, by route name.
    adapters: Mapping[str, WebhookAdapter]
    #: Where verified payloads wait while the database is down (Redis mode only).
    spool: RedisWebhookSpool | None


def _services(request: Request) -> WebhookServices:
    services: WebhookServices = request.app.state.webhook_services
    return services


async def _body(request: Request, limit: int = MAX_BODY) -> bytes:
    # From the ASGI scope and receive: Starlette's Headers and stream generator cost more than
    # the rest of reading a status callback's few hundred bytes.
    try:
        return await read_body(request.scope, request.receive, limit)
    except BodyTooLarge:
        raise Refused(413, "payload too large") from None


def _answer(answer: Answer) -> Response:
    return Response(answer.body, answer.status, media_type=answer.media_type)


async def _handle(request: Request, route: str) -> Response:
    services = _services(request)
    adapter = services.adapters[route]
    body = b""
    received: ReceivedWebhook | None = None
    try:
        body = await _body(request, adapter.limit)
        # Read from the ASGI scope: Request.url parses the whole URL, host header included,
        # which cost more than the signature check it served.
        query: str = request.scope.get("query_string", b"").decode()
        form = adapter.verify(WebhookRequest(request.scope["path"], query, request.headers, body))
        # Only now, verified, may the payload be kept anywhere.
        received = ReceivedWebhook(route, request.headers.get("content-type"), query, body)
        outcomes = await apply_received(services.webhooks, adapter, received, form)
    except Refused as exc:
        WEBHOOKS.labels(adapter.source, f"refused_{exc.status}").inc()
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    except PayloadError as exc:
        WEBHOOKS.labels(adapter.source, "malformed").inc()
        return JSONResponse({"error": str(exc)}, status_code=400)
    except Exception as exc:
        return await _keep(request, adapter, received, body, exc)
    for outcome in outcomes:
        _count(adapter.source, outcome)
    return _answer(adapter.ok)


def _kept(adapter: WebhookAdapter, detail: dict[str, Any]) -> Response:
    """What the provider gets once a payload we could not apply is kept for replay."""
    if adapter.kept is not None:
        return _answer(adapter.kept)
    return JSONResponse({"status": "kept for replay", **detail}, status_code=202)


async def _keep(
    request: Request,
    adapter: WebhookAdapter,
    received: ReceivedWebhook | None,
    body: bytes,
    error: Exception,
) -> Response:
    """Somewhere that survives for a payload we could not apply: the database, else (Redis
    mode, verified payloads only) the spool; else the provider is told to deliver again."""
    source = adapter.source
    services = _services(request)
    if is_unavailable(error):
        # An outage is worth a line, not a traceback for every callback that meets it.
        log.warning("webhook_failed", source=source, error=describe(error))
    else:
        log.exception("webhook_failed", source=source)
    try:
        receipt = await keep_payload(
            services.webhooks,
            source,
            "failed",
            body,
            request.headers.get("content-type"),
            repr(error),
            received,
        )
    except Exception as exc:
        log.warning("webhook_payload_not_kept", source=source, error=type(exc).__name__)
    else:
        WEBHOOKS.labels(source, "kept_for_replay").inc()
        return _kept(adapter, {"receipt": receipt})
    spool = services.spool
    if received is not None and spool is not None:
        try:
            entry = await spool.keep(received)
        except Exception as exc:
            log.warning("webhook_payload_not_spooled", source=source, error=type(exc).__name__)
        else:
            WEBHOOKS.labels(source, "spooled").inc()
            return _kept(adapter, {"spooled": entry})
    WEBHOOKS.labels(source, "lost_retry").inc()
    return JSONResponse(
        {"error": "cannot keep the payload now; deliver it again later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


#: The webhook paths and the adapter (by route name) each one routes to.
PATHS: Final = {
    "/webhooks/twilio/status": STATUS_ROUTE,
    "/webhooks/twilio/messages": MESSAGES_ROUTE,
    "/webhooks/sendgrid/events": EVENTS_ROUTE,
    "/webhooks/sendgrid/inbound": INBOUND_ROUTE,
    "/webhooks/mailgun/events": MAILGUN_EVENTS,
    "/webhooks/mailgun/inbound": MAILGUN_INBOUND,
    "/webhooks/telnyx": TELNYX_ROUTE,
    "/api/webhooks/sms": SMS_ROUTE,
    "/api/webhooks/email": EMAIL_ROUTE,
}


def _endpoint(route: str) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await _handle(request, route)

    handle.__name__ = route
    return handle


def webhook_routes() -> list[Route]:
    return [Route(path, _endpoint(route), methods=["POST"]) for path, route in PATHS.items()]
