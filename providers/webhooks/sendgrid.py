"""SendGrid webhooks: the Event Webhook (delivery and engagement events) and Inbound Parse.

The Event Webhook is signed (ECDSA P-256 over its timestamp header and the raw body); Inbound
Parse carries no signature, so its URL carries a token (``?token=`` or the password of HTTP
basic auth). The adapters check those and read the Inbound Parse multipart form; the parsers
get the bytes and the decoded text fields.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from functools import partial
from typing import Any, Final

import orjson

from gateway.domain.records import DeliveryError
from gateway.domain.reports import (
    KIND_DEFERRED,
    KIND_DELIVERY_RECEIPT,
    KIND_ENGAGEMENT,
    KIND_PROVIDER_STATUS,
    InboundMessage,
    StatusReport,
)
from gateway.domain.statuses import MessageStatus
from gateway.domain.suppressions import SuppressionReason
from providers.signatures import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    verify_sendgrid,
)

from ._fields import (
    ID_MAX,
    compact,
    detail_scalar,
    detail_text,
    first_mailbox,
    get_str,
    identifier,
    inbound_email,
    load_json,
    mail_body,
    our_message_id,
    require_str,
    without_query,
)
from .adapter import MAX_BODY, Answer, Refused, TimestampedScheme, WebhookRequest
from .forms import Form, decode_any_form, form_pairs
from .records import PayloadError, ReceivedWebhook

PROVIDER: Final = "sendgrid"
EVENTS_ROUTE: Final = "sendgrid_events"
INBOUND_ROUTE: Final = "sendgrid_inbound"
# Inbound Parse posts the attachments too.
INBOUND_MAX_BODY: Final = 30 << 20

# SendGrid posts batches of a few hundred kilobytes; the bound is several times that so no
# real batch is refused, while a runaway body cannot make us build millions of objects.
EVENTS_MAX_BYTES: Final = 4 * 1024 * 1024
EVENTS_MAX: Final = 10_000
_HEADERS_MAX: Final = 1024 * 1024
_ENVELOPE_MAX: Final = 64 * 1024
_EVENT_NAME_MAX: Final = 64
_ERROR_CODE_MAX: Final = 64  # messages.error_code is VARCHAR(64)

_EVENTS_SIGNATURE: Final = TimestampedScheme(
    SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER, verify_sendgrid, "SendGrid event webhook"
)

_ENGAGEMENT: Final = frozenset(
    {"open", "click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe"}
)
# What the recipient did that the account must respect from now on. An unsubscribe from one
# unsubscribe group is still the recipient saying no to this account's mail.
_SUPPRESSING: Final = {
    "spamreport": SuppressionReason.SPAM_REPORT,
    "unsubscribe": SuppressionReason.UNSUBSCRIBE,
    "group_unsubscribe": SuppressionReason.UNSUBSCRIBE,
}


def parse_sendgrid_events(body: bytes) -> list[StatusReport]:
    """One report per event, in batch order.

    Only an element we cannot identify (no ``sg_event_id`` or ``event``) fails the batch:
    a 400 makes SendGrid retry the whole batch, so an odd optional field is ignored instead.
    """
    data = load_json(body, EVENTS_MAX_BYTES)
    if not isinstance(data, list):
        raise PayloadError("body must be a JSON array of events")
    if len(data) > EVENTS_MAX:
        raise PayloadError(f"body must hold at most {EVENTS_MAX} events")
    return [_event(item, index) for index, item in enumerate(data)]


def _event(item: object, index: int) -> StatusReport:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise PayloadError(f"{where} must be a JSON object")
    event_id = _required_str(item, "sg_event_id", where)
    identifier(event_id, f"{where}.sg_event_id")
    event_name = _required_str(item, "event", where).strip().lower()
    if not event_name or len(event_name) > _EVENT_NAME_MAX:
        raise PayloadError(f"{where}.event must be 1 to {_EVENT_NAME_MAX} characters")

    status: MessageStatus | None = None
    kind = KIND_PROVIDER_STATUS
    error: DeliveryError | None = None
    detail: dict[str, Any] = {
        "provider": PROVIDER,
        "providerEvent": detail_text(event_name),
        "timestamp": detail_scalar(item.get("timestamp")),
    }
    if event_name == "delivered":
        status, kind = MessageStatus.DELIVERED, KIND_DELIVERY_RECEIPT
        detail["response"] = detail_text(item.get("response"))
    elif event_name in ("bounce", "dropped"):
        status, kind = MessageStatus.FAILED, KIND_DELIVERY_RECEIPT
        error = _failure(item, event_name)
        detail["bounceType"] = detail_text(item.get("type"), 32)
        detail["bounceClassification"] = detail_text(item.get("bounce_classification"), 64)
    elif event_name == "deferred":
        # SendGrid keeps retrying on its own; the message stays SENT until a final event.
        kind = KIND_DEFERRED
        detail["attempt"] = detail_scalar(item.get("attempt"))
        detail["response"] = detail_text(item.get("response"))
    elif event_name in _ENGAGEMENT:
        kind = KIND_ENGAGEMENT
        if event_name == "click":
            url = item.get("url")
            detail["url"] = without_query(url) if isinstance(url, str) else None
    # Anything else ("processed", and events SendGrid adds later) is recorded as it is.

    provider_id = _provider_message_id(item.get("sg_message_id"))
    detail["providerMessageId"] = provider_id
    return StatusReport(
        provider=PROVIDER,
        provider_message_id=provider_id,
        message_id=our_message_id(item.get("message_id")),
        status=status,
        kind=kind,
        # sg_event_id is SendGrid's own id for this one event, redeliveries included.
        dedupe_key=f"sendgrid:{event_id}",
        error=error,
        detail=compact(detail),
        suppression=_suppression(event_name, item),
    )


def _suppression(event_name: str, item: Mapping[str, Any]) -> SuppressionReason | None:
    # Only a bounce of type "bounce" says the address is gone for good: "blocked" is the
    # receiving server refusing this message for now (see ``_failure``), and a bounce without
    # a type is not trusted to be either.
    if event_name == "bounce":
        return SuppressionReason.HARD_BOUNCE if item.get("type") == "bounce" else None
    return _SUPPRESSING.get(event_name)


def _required_str(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if value is None or value == "":
        raise PayloadError(f"{where}.{name} is required")
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{name} must be a string")
    return value


def _failure(item: Mapping[str, Any], event_name: str) -> DeliveryError:
    # The enhanced SMTP status ("5.1.1") says more than the event name when SendGrid has one.
    code = detail_text(item.get("status"), _ERROR_CODE_MAX) or event_name
    reason = detail_text(item.get("reason")) or f"SendGrid: {event_name}"
    # A "blocked" bounce is the receiving server refusing this message for now (reputation,
    # content), not the mailbox being gone: sending it again later can succeed.
    permanent = not (event_name == "bounce" and item.get("type") == "blocked")
    return DeliveryError(code=code, description=reason, permanent=permanent)


def _provider_message_id(value: object) -> str | None:
    """The id the send call returned (X-Message-Id): sg_message_id up to its first dot.

    SendGrid appends a per-recipient, per-filter suffix after the dot; the part before it is
    what we stored when the message was handed over.
    """
    if not isinstance(value, str):
        return None
    head = value.split(".", 1)[0]
    if not head or len(head) > ID_MAX:
        return None
    try:
        return identifier(head, "sg_message_id")
    except PayloadError:
        return None


def parse_sendgrid_inbound(form: Mapping[str, str]) -> InboundMessage:
    """An e-mail through Inbound Parse (the default, parsed mode).

    Attachments are uploaded files, not URLs, so they are not part of the message: the
    attachments tuple stays empty and the files are left to the route to store or drop.
    """
    sender = first_mailbox(require_str(form, "from"), "from")
    recipient = _recipient(form)

    body = mail_body(form, "text", "html")
    if body is None and form.get("email"):
        # "POST the raw, full MIME message" mode: the content is in one MIME blob we do not
        # parse, and accepting it as an empty e-mail would silently lose the content.
        raise PayloadError(
            "raw MIME posts are not supported; turn off 'POST the raw, full MIME message'"
        )

    headers = get_str(form, "headers") or ""
    if len(headers) > _HEADERS_MAX:
        raise PayloadError(f"headers must be at most {_HEADERS_MAX} characters")
    return inbound_email(
        form,
        PROVIDER,
        sender=sender,
        recipient=recipient,
        body=body,
        header=partial(_header, headers),
    )


def _recipient(form: Mapping[str, str]) -> str:
    # The SMTP envelope names the mailbox the mail was actually delivered to; the To header
    # may list other people first, or not list us at all (Cc, Bcc, mailing lists).
    envelope = form.get("envelope")
    if isinstance(envelope, str) and 0 < len(envelope) <= _ENVELOPE_MAX:
        try:
            data = orjson.loads(envelope)
        except orjson.JSONDecodeError:
            data = None
        targets = data.get("to") if isinstance(data, dict) else None
        if isinstance(targets, list):
            for target in targets:
                if isinstance(target, str):
                    try:
                        return first_mailbox(target, "envelope.to")
                    except PayloadError:
                        continue
    return first_mailbox(require_str(form, "to"), "to")


def _header(headers: str, wanted: str) -> str | None:
    """First value of a header in a raw header block, unfolded (RFC 5322 section 2.2.3)."""
    current_name: str | None = None
    current_value: list[str] = []
    for raw_line in headers.split("\n"):
        line = raw_line.rstrip("\r")
        if line[:1] in (" ", "\t") and current_name is not None:
            current_value.append(line.strip())
            continue
        if current_name == wanted:
            break
        name, colon, value = line.partition(":")
        if not colon:
            current_name = None
            continue
        current_name = name.strip().lower()
        current_value = [value.strip()]
    if current_name != wanted:
        return None
    return " ".join(part for part in current_value if part)


class _SendGridWebhook:
    source: str = PROVIDER
    limit: int = MAX_BODY
    kept: Answer | None = None

    def __init__(self, credential: str | None) -> None:
        # What requests are checked against; None: nothing is configured, so every request
        # is refused.
        self._credential = credential


class SendGridEventsWebhook(_SendGridWebhook):
    """The Event Webhook; the credential is SendGrid's verification (public) key."""

    route: str = EVENTS_ROUTE
    ok: Answer = Answer(204)

    def verify(self, request: WebhookRequest) -> None:
        _EVENTS_SIGNATURE.check(request, self._credential)

    async def parse(
        self, received: ReceivedWebhook, form: Form | None = None
    ) -> list[StatusReport]:
        return parse_sendgrid_events(received.body)


class SendGridInboundWebhook(_SendGridWebhook):
    """Inbound Parse; the credential is the token its URL carries."""

    route: str = INBOUND_ROUTE
    ok: Answer = Answer(200)
    limit: int = INBOUND_MAX_BODY

    def verify(self, request: WebhookRequest) -> None:
        given = dict(form_pairs(request.query)).get("token") or _basic_password(request.headers)
        if not given:
            raise Refused(401, "missing inbound parse credentials")
        token = self._credential
        if token is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise Refused(403, "invalid inbound parse credentials")

    async def parse(self, received: ReceivedWebhook, form: Form | None = None) -> InboundMessage:
        fields, _ = form or decode_any_form(received.content_type, received.body)
        return parse_sendgrid_inbound(fields)


def _basic_password(headers: Mapping[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        _, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return password or None
