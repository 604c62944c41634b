"""REST webhooks: provider status callbacks and inbound messages.

Every endpoint checks the signature first (401 when missing, 403 when wrong: no state change),
then parses (400 with a clear message), then applies (duplicates are answered 2xx and have no
second effect). A payload we fail to apply is kept raw in webhook_receipts for replay; if even
that fails the provider gets a 500 and delivers again.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

import structlog
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.bodies import BodyTooLarge, read_body
from gateway.container import Container
from gateway.observability.metrics import NAMESPACE, REGISTRY
from providers.signatures import verify_sendgrid, verify_standard_webhook, verify_twilio
from providers.webhooks import (
    InboundMessage,
    PayloadError,
    StatusReport,
    parse_generic_email,
    parse_generic_sms,
    parse_sendgrid_events,
    parse_sendgrid_inbound,
    parse_twilio_inbound,
    parse_twilio_status,
)

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
    path = request.scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    query = _query(request)
    return base + path + (f"?{query}" if query else "")


def _form(body: bytes) -> tuple[dict[str, str], dict[str, list[str]]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, "form body is not UTF-8") from exc
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in form_pairs(text):
        single.setdefault(key, value)
        multi.setdefault(key, []).append(value)
    return single, multi


def form_pairs(text: str) -> list[tuple[str, str]]:
    """What ``parse_qsl(text, keep_blank_values=True)`` returns, decoding only the names and
    values that need it: every status callback is a form of some twenty fields, most of them
    plain."""
    pairs: list[tuple[str, str]] = []
    for part in text.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key, errors="replace")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="replace")
        pairs.append((key, value))
    return pairs


def _check_twilio(request: Request, params: dict[str, list[str]]) -> None:
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise Refused(401, "missing X-Twilio-Signature")
    token = _container(request).settings.twilio_auth_token
    if not verify_twilio(token, _public_url(request), params, signature):
        raise Refused(403, "invalid X-Twilio-Signature")


def _raw_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


async def _handle(
    request: Request,
    source: str,
    work: Callable[[Request, bytes], Awaitable[Response]],
    limit: int = MAX_BODY,
) -> Response:
    body = b""
    try:
        body = await _body(request, limit)
        response = await work(request, body)
    except Refused as exc:
        WEBHOOKS.labels(source, f"refused_{exc.status}").inc()
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    except PayloadError as exc:
        WEBHOOKS.labels(source, "malformed").inc()
        return JSONResponse({"error": str(exc)}, status_code=400)
    except Exception as exc:
        log.exception("webhook_failed", source=source)
        try:
            receipt = await _container(request).webhooks.keep_raw(
                source, "failed", request.headers.get("content-type"), _raw_text(body), repr(exc)
            )
        except Exception:
            log.exception("webhook_payload_not_kept", source=source)
            WEBHOOKS.labels(source, "lost_retry").inc()
            return JSONResponse({"error": "internal error; deliver again"}, status_code=500)
        WEBHOOKS.labels(source, "kept_for_replay").inc()
        return JSONResponse({"status": "kept for replay", "receipt": receipt}, status_code=202)
    return response


async def _reports(request: Request, source: str, reports: list[StatusReport]) -> None:
    outcome = await _container(request).webhooks.apply_reports(source, reports)
    if outcome.applied:
        _count(source, "applied")
    if outcome.duplicates:
        _count(source, "duplicate")
    if outcome.unmatched:
        _count(source, "unmatched")


async def _inbound(request: Request, source: str, message: InboundMessage, raw: bytes) -> None:
    webhooks = _container(request).webhooks
    result = await webhooks.receive(message)
    if result == "unowned":
        # Nobody owns the recipient: keep the message raw, answer 2xx (the provider cannot
        # do better by retrying), log and count it.
        await webhooks.keep_raw(
            source, "unowned", request.headers.get("content-type"), _raw_text(raw), None
        )
        log.warning("inbound_to_unowned_address", source=source, recipient=message.recipient)
    WEBHOOKS.labels(source, f"inbound_{result}").inc()


async def twilio_status(request: Request) -> Response:
    async def work(request: Request, body: bytes) -> Response:
        form, multi = _form(body)
        _check_twilio(request, multi)
        query = dict(form_pairs(_query(request)))
        report = parse_twilio_status(form, query)
        await _reports(request, "twilio", [report])
        return Response(status_code=204)

    return await _handle(request, "twilio", work)


async def twilio_messages(request: Request) -> Response:
    async def work(request: Request, body: bytes) -> Response:
        form, multi = _form(body)
        _check_twilio(request, multi)
        await _inbound(request, "twilio", parse_twilio_inbound(form), body)
        return Response(TWIML_EMPTY, media_type="text/xml")

    return await _handle(request, "twilio", work)


async def sendgrid_events(request: Request) -> Response:
    async def work(request: Request, body: bytes) -> Response:
        container = _container(request)
        signature = request.headers.get("x-twilio-email-event-webhook-signature")
        timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp")
        if not signature or not timestamp:
            raise Refused(401, "missing SendGrid event webhook signature headers")
        key = container.sendgrid_public_key
        if key is None or not verify_sendgrid(key, timestamp, body, signature, now=time.time()):
            raise Refused(403, "invalid SendGrid event webhook signature")
        await _reports(request, "sendgrid", parse_sendgrid_events(body))
        return Response(status_code=204)

    return await _handle(request, "sendgrid", work)


async def sendgrid_inbound(request: Request) -> Response:
    async def work(request: Request, body: bytes) -> Response:
        token = _container(request).settings.sendgrid_inbound_token
        given = request.query_params.get("token") or _basic_password(request)
        if not given:
            raise Refused(401, "missing inbound parse credentials")
        if token is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise Refused(403, "invalid inbound parse credentials")
        form = await _multipart(request, body)
        await _inbound(request, "sendgrid", parse_sendgrid_inbound(form), body)
        return Response(status_code=200)

    return await _handle(request, "sendgrid", work, MAX_INBOUND_EMAIL_BODY)


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


async def _multipart(request: Request, body: bytes) -> dict[str, str]:
    """Text fields of a multipart (or urlencoded) form; uploaded files are not kept."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return _form(body)[0]

    async def replay() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    parsed = Request(request.scope, replay)
    try:
        form = await parsed.form(max_files=50, max_fields=200)
    except Exception as exc:  # python-multipart raises several types for bad input
        raise PayloadError(f"unreadable multipart form: {type(exc).__name__}") from exc
    try:
        return {k: v for k, v in form.multi_items() if isinstance(v, str)}
    finally:
        await form.close()  # uploaded files are spooled to disk


def _generic(parse: Callable[[bytes], InboundMessage]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        async def work(request: Request, body: bytes) -> Response:
            secret = _container(request).settings.generic_webhook_secret
            if not request.headers.get("webhook-signature"):
                raise Refused(401, "missing webhook-signature")
            headers = {k.lower(): v for k, v in request.headers.items()}
            if secret is None or not verify_standard_webhook(
                secret, headers, body, now=time.time()
            ):
                raise Refused(403, "invalid webhook signature or timestamp")
            await _inbound(request, "generic", parse(body), body)
            return JSONResponse({"status": "ok"})

        return await _handle(request, "generic", work)

    return endpoint


def webhook_routes() -> list[Route]:
    return [
        Route("/webhooks/twilio/status", twilio_status, methods=["POST"]),
        Route("/webhooks/twilio/messages", twilio_messages, methods=["POST"]),
        Route("/webhooks/sendgrid/events", sendgrid_events, methods=["POST"]),
        Route("/webhooks/sendgrid/inbound", sendgrid_inbound, methods=["POST"]),
        Route("/api/webhooks/sms", _generic(parse_generic_sms), methods=["POST"]),
        Route("/api/webhooks/email", _generic(parse_generic_email), methods=["POST"]),
    ]
