"""What a verified webhook payload does: decode it, parse it, apply it.

One path for every payload, whether the route applies it as it arrives or the replay applies
it later, after it was kept while the database was down: a duplicate or a late report is
harmless either way (the services apply each report at most once, forward only).

``apply_received`` raises PayloadError for a payload that cannot be parsed (the route answers
400) and whatever the services raise when they cannot apply it (the route keeps the payload).
It returns the outcomes to count (``applied``, ``duplicate``, ``unmatched``, ``inbound_...``).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import unquote_plus

import structlog
from starlette.requests import Request

from gateway.domain.reports import InboundMessage, StatusReport
from gateway.services.webhooks import WebhookService
from providers.webhooks import (
    PayloadError,
    ReceivedWebhook,
    parse_generic_email,
    parse_generic_sms,
    parse_sendgrid_events,
    parse_sendgrid_inbound,
    parse_twilio_inbound,
    parse_twilio_status,
)

log = structlog.get_logger(__name__)

TWILIO_STATUS: Final = "twilio_status"
TWILIO_MESSAGES: Final = "twilio_messages"
SENDGRID_EVENTS: Final = "sendgrid_events"
SENDGRID_INBOUND: Final = "sendgrid_inbound"
GENERIC_SMS: Final = "generic_sms"
GENERIC_EMAIL: Final = "generic_email"
#: Route name -> the source its receipts and metrics are labelled with.
ROUTES: Final = {
    TWILIO_STATUS: "twilio",
    TWILIO_MESSAGES: "twilio",
    SENDGRID_EVENTS: "sendgrid",
    SENDGRID_INBOUND: "sendgrid",
    GENERIC_SMS: "generic",
    GENERIC_EMAIL: "generic",
}

#: A decoded form: the first value of each field, and every value of each field.
Form = tuple[dict[str, str], dict[str, list[str]]]


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


def decode_form(body: bytes) -> Form:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("form body is not UTF-8") from exc
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in form_pairs(text):
        single.setdefault(key, value)
        multi.setdefault(key, []).append(value)
    return single, multi


def raw_text(body: bytes) -> str:
    """The body as stored in webhook_receipts: text, or base64 when it is not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


async def multipart_fields(content_type: str | None, body: bytes) -> dict[str, str]:
    """Text fields of a multipart (or urlencoded) form; uploaded files are not kept."""
    if (content_type or "").startswith("application/x-www-form-urlencoded"):
        return decode_form(body)[0]

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", (content_type or "").encode("latin-1"))]
    parsed = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    try:
        form = await parsed.form(max_files=50, max_fields=200)
    except Exception as exc:  # python-multipart raises several types for bad input
        raise PayloadError(f"unreadable multipart form: {type(exc).__name__}") from exc
    try:
        return {k: v for k, v in form.multi_items() if isinstance(v, str)}
    finally:
        await form.close()  # uploaded files are spooled to disk


async def apply_received(
    webhooks: WebhookService, received: ReceivedWebhook, form: Form | None = None
) -> list[str]:
    """Parse and apply ``received``; ``form`` is its body already decoded, if it was."""
    apply = _APPLY.get(received.route)
    if apply is None:
        raise PayloadError(f"no such webhook route: {received.route}")
    return await apply(webhooks, received, form)


async def _reports(webhooks: WebhookService, source: str, reports: list[StatusReport]) -> list[str]:
    outcome = await webhooks.apply_reports(source, reports)
    labels = []
    if outcome.applied:
        labels.append("applied")
    if outcome.duplicates:
        labels.append("duplicate")
    if outcome.unmatched:
        labels.append("unmatched")
    return labels


async def _inbound(
    webhooks: WebhookService, received: ReceivedWebhook, message: InboundMessage
) -> list[str]:
    source = ROUTES[received.route]
    result = await webhooks.receive(message)
    if result == "unowned":
        # Nobody owns the recipient: keep the message raw, answer 2xx (the provider cannot
        # do better by retrying), log and count it.
        await webhooks.keep_raw(
            source, "unowned", received.content_type, raw_text(received.body), None
        )
        log.warning("inbound_to_unowned_address", source=source, recipient=message.recipient)
    return [f"inbound_{result}"]


async def _twilio_status(
    webhooks: WebhookService, received: ReceivedWebhook, form: Form | None
) -> list[str]:
    single, _ = form or decode_form(received.body)
    report = parse_twilio_status(single, dict(form_pairs(received.query)))
    return await _reports(webhooks, "twilio", [report])


async def _twilio_messages(
    webhooks: WebhookService, received: ReceivedWebhook, form: Form | None
) -> list[str]:
    single, _ = form or decode_form(received.body)
    return await _inbound(webhooks, received, parse_twilio_inbound(single))


async def _sendgrid_events(
    webhooks: WebhookService, received: ReceivedWebhook, form: Form | None
) -> list[str]:
    return await _reports(webhooks, "sendgrid", parse_sendgrid_events(received.body))


async def _sendgrid_inbound(
    webhooks: WebhookService, received: ReceivedWebhook, form: Form | None
) -> list[str]:
    fields = await multipart_fields(received.content_type, received.body)
    return await _inbound(webhooks, received, parse_sendgrid_inbound(fields))


async def _generic_sms(
    webhooks: WebhookService, received: ReceivedWebhook, form: Form | None
) -> list[str]:
    return await _inbound(webhooks, received, parse_generic_sms(received.body))


async def _generic_email(
    webhooks: WebhookService, received: ReceivedWebhook, form: Form | None
) -> list[str]:
    return await _inbound(webhooks, received, parse_generic_email(received.body))


_APPLY: Final[
    dict[str, Callable[[WebhookService, ReceivedWebhook, Form | None], Awaitable[list[str]]]]
] = {
    TWILIO_STATUS: _twilio_status,
    TWILIO_MESSAGES: _twilio_messages,
    SENDGRID_EVENTS: _sendgrid_events,
    SENDGRID_INBOUND: _sendgrid_inbound,
    GENERIC_SMS: _generic_sms,
    GENERIC_EMAIL: _generic_email,
}
