"""REST webhooks: provider status callbacks and inbound messages.

Every endpoint checks the signature first (401 when missing, 403 when wrong: no state change),
then parses (400 with a clear message), then applies (duplicates are answered 2xx and have no
second effect); parsing and applying is ``gateway.web.webhook_payloads``, shared with the replay.

A payload we fail to apply is kept raw in webhook_receipts. When the database cannot take it
either (it is down), a verified payload goes to the spool in Redis (Redis mode), the provider
is answered 2xx once Redis has it, and a worker applies it once the database is back. An
unverified payload is never kept anywhere. With nowhere to keep it, the provider gets a 503
with Retry-After and delivers it again.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.entry.container import Container
from gateway.observability.metrics import NAMESPACE, REGISTRY
from gateway.outages import RETRY_AFTER_SECONDS, describe, is_unavailable
from gateway.web.bodies import BodyTooLarge, read_body
from gateway.web.webhook_payloads import (
    GENERIC_EMAIL,
    GENERIC_SMS,
    ROUTES,
    SENDGRID_EVENTS,
    SENDGRID_INBOUND,
    TWILIO_MESSAGES,
    TWILIO_STATUS,
    Form,
    apply_received,
    decode_form,
    form_pairs,
    raw_text,
)
from providers.signatures import verify_sendgrid, verify_standard_webhook, verify_twilio
from providers.webhooks import PayloadError, ReceivedWebhook

log = structlog.get_logger(__name__)

WEBHOOKS = Counter(
    "webhooks",
    "Webhook deliveries by source and outcome.",
    ["source", "outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

MAX_BODY = 1 << 20
MAX_INBOUND_EMAIL_BODY = 30 << 20  # SendGrid Inbound Parse posts attachments too
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
__all__ = ["MAX_BODY", "Refused", "form_pairs", "webhook_routes"]


_COUNTERS: dict[tuple[str, str], Any] = {}


def _count(source: str, outcome: str) -> None:
    """``WEBHOOKS.labels(source, outcome).inc()``, keeping the labelled child: looking it up
    validates and locks every time, once per status callback."""
    child = _COUNTERS.get((source, outcome))
    if child is None:
        child = _COUNTERS[(source, outcome)] = WEBHOOKS.labels(source, outcome)
    child.inc()


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def _body(request: Request, limit: int = MAX_BODY) -> bytes:
    # From the ASGI scope and receive: Starlette's Headers and stream generator cost more than
    # the rest of reading a status callback's few hundred bytes.
    try:
        return await read_body(request.scope, request.receive, limit)
    except BodyTooLarge:
        raise Refused(413, "payload too large") from None


def _query(request: Request) -> str:
    # Read from the ASGI scope: Request.url parses the whole URL, host header included, which
    # cost more than the signature check it served.
    query: str = request.scope.get("query_string", b"").decode()
    return query


def _public_url(request: Request) -> str:
    """The URL the provider signed: our public base URL, not whatever host we see. The path
    is escaped as Starlette's ``Request.url`` escapes it."""
    base = _container(request).settings.public_base_url.rstrip("/")
    path: str = request.scope["path"]
    path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    query = _query(request)
    return base + path + (f"?{query}" if query else "")


def _check_twilio(request: Request, params: dict[str, list[str]]) -> None:
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise Refused(401, "missing X-Twilio-Signature")
    token = _container(request).settings.twilio_auth_token
    if not verify_twilio(token, _public_url(request), params, signature):
        raise Refused(403, "invalid X-Twilio-Signature")


#: Checks a request's credentials over its body (raising Refused); returns the body decoded as
#: a form when it had to decode it to check it.
Verify = Callable[[Request, bytes], Awaitable[Form | None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    route: str
    verify: Verify
    ok: Callable[[], Response]
    #: What the provider gets once a payload we could not apply is kept for replay.
    kept: Callable[[dict[str, Any]], Response]
    limit: int = MAX_BODY


def _kept_json(detail: dict[str, Any]) -> Response:
    return JSONResponse({"status": "kept for replay", **detail}, status_code=202)


def _twiml() -> Response:
    # Twilio reads the answer to an inbound message as TwiML: anything else is an error there.
    return Response(TWIML_EMPTY, media_type="text/xml")


async def _handle(request: Request, endpoint: Endpoint) -> Response:
    source = ROUTES[endpoint.route]
    body = b""
    received: ReceivedWebhook | None = None
    try:
        body = await _body(request, endpoint.limit)
        form = await endpoint.verify(request, body)
        # Only now, verified, may the payload be kept anywhere.
        received = ReceivedWebhook(
            endpoint.route, request.headers.get("content-type"), _query(request), body
        )
        outcomes = await apply_received(_container(request).webhooks, received, form)
    except Refused as exc:
        WEBHOOKS.labels(source, f"refused_{exc.status}").inc()
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    except PayloadError as exc:
        WEBHOOKS.labels(source, "malformed").inc()
        return JSONResponse({"error": str(exc)}, status_code=400)
    except Exception as exc:
        return await _keep(request, endpoint, received, body, exc)
    for outcome in outcomes:
        _count(source, outcome)
    return endpoint.ok()


async def _keep(
    request: Request,
    endpoint: Endpoint,
    received: ReceivedWebhook | None,
    body: bytes,
    error: Exception,
) -> Response:
    """Somewhere that survives for a payload we could not apply: the database, else (Redis
    mode, verified payloads only) the spool; else the provider is told to deliver again."""
    source = ROUTES[endpoint.route]
    container = _container(request)
    if is_unavailable(error):
        # An outage is worth a line, not a traceback for every callback that meets it.
        log.warning("webhook_failed", source=source, error=describe(error))
    else:
        log.exception("webhook_failed", source=source)
    try:
        receipt = await container.webhooks.keep_raw(
            source, "failed", request.headers.get("content-type"), raw_text(body), repr(error)
        )
    except Exception as exc:
        log.warning("webhook_payload_not_kept", source=source, error=type(exc).__name__)
    else:
        WEBHOOKS.labels(source, "kept_for_replay").inc()
        return endpoint.kept({"receipt": receipt})
    spool = container.webhook_spool
    if received is not None and spool is not None:
        try:
            entry = await spool.keep(received)
        except Exception as exc:
            log.warning("webhook_payload_not_spooled", source=source, error=type(exc).__name__)
        else:
            WEBHOOKS.labels(source, "spooled").inc()
            return endpoint.kept({"spooled": entry})
    WEBHOOKS.labels(source, "lost_retry").inc()
    return JSONResponse(
        {"error": "cannot keep the payload now; deliver it again later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _twilio(request: Request, body: bytes) -> Form:
    form = decode_form(body)
    _check_twilio(request, form[1])
    return form


async def _sendgrid_events(request: Request, body: bytes) -> None:
    container = _container(request)
    signature = request.headers.get("x-twilio-email-event-webhook-signature")
    timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp")
    if not signature or not timestamp:
        raise Refused(401, "missing SendGrid event webhook signature headers")
    key = container.sendgrid_public_key
    if key is None or not verify_sendgrid(key, timestamp, body, signature, now=time.time()):
        raise Refused(403, "invalid SendGrid event webhook signature")


async def _sendgrid_inbound(request: Request, body: bytes) -> None:
    token = _container(request).settings.sendgrid_inbound_token
    given = request.query_params.get("token") or _basic_password(request)
    if not given:
        raise Refused(401, "missing inbound parse credentials")
    if token is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise Refused(403, "invalid inbound parse credentials")


def _basic_password(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        _, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return password or None


async def _generic(request: Request, body: bytes) -> None:
    secret = _container(request).settings.generic_webhook_secret
    if not request.headers.get("webhook-signature"):
        raise Refused(401, "missing webhook-signature")
    headers = {k.lower(): v for k, v in request.headers.items()}
    if secret is None or not verify_standard_webhook(secret, headers, body, now=time.time()):
        raise Refused(403, "invalid webhook signature or timestamp")


ENDPOINTS: Final = {
    "/webhooks/twilio/status": Endpoint(
        TWILIO_STATUS, _twilio, lambda: Response(status_code=204), _kept_json
    ),
    "/webhooks/twilio/messages": Endpoint(TWILIO_MESSAGES, _twilio, _twiml, lambda _: _twiml()),
    "/webhooks/sendgrid/events": Endpoint(
        SENDGRID_EVENTS, _sendgrid_events, lambda: Response(status_code=204), _kept_json
    ),
    "/webhooks/sendgrid/inbound": Endpoint(
        SENDGRID_INBOUND,
        _sendgrid_inbound,
        lambda: Response(status_code=200),
        _kept_json,
        MAX_INBOUND_EMAIL_BODY,
    ),
    "/api/webhooks/sms": Endpoint(
        GENERIC_SMS, _generic, lambda: JSONResponse({"status": "ok"}), _kept_json
    ),
    "/api/webhooks/email": Endpoint(
        GENERIC_EMAIL, _generic, lambda: JSONResponse({"status": "ok"}), _kept_json
    ),
}


def _endpoint(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await _handle(request, endpoint)

    handle.__name__ = endpoint.route
    return handle


def webhook_routes() -> list[Route]:
    return [
        Route(path, _endpoint(endpoint), methods=["POST"]) for path, endpoint in ENDPOINTS.items()
    ]
