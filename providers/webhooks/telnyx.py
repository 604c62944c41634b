"""Telnyx Messaging webhooks: status events and inbound SMS/MMS, on one URL.

Follows Telnyx's "Receiving Webhooks for Messaging" guide and the webhook fundamentals of its
API reference. Every event is a JSON object ``{"data": {"event_type", "id", "occurred_at",
"payload", "record_type": "event"}, "meta": {"attempt", "delivered_to"}}``, signed with the
account's Ed25519 key: ``telnyx-signature-ed25519`` is the base64 signature of
``"{telnyx-timestamp}|{raw body}"``, checked with the account's public key and refused when the
timestamp is more than five minutes off. The events read here:

- ``message.sent`` and ``message.finalized``: an outbound message moved; its payload is the
  message record, the status per recipient in ``payload.to[i].status`` (we send to one).
- ``message.received``: an inbound SMS/MMS.

Any other event type is acknowledged and applied nowhere: Telnyx sends every messaging event
of a profile to one URL, and refusing one would only make it retry.

Our message id comes back in the query string of ``payload.webhook_url`` (the URL the adapter
sent with the message): read from the signed body, never from the request's own query string,
which the signature does not cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from gateway.domain.channels import Channel
from gateway.domain.reports import (
    KIND_DELIVERY_RECEIPT,
    KIND_PROVIDER_STATUS,
    InboundMessage,
    StatusReport,
)
from gateway.domain.statuses import MessageStatus
from providers.signatures import TELNYX_SIGNATURE_HEADER, TELNYX_TIMESTAMP_HEADER, verify_telnyx

from ._fields import (
    detail_text,
    get_str,
    http_urls,
    identifier,
    load_json,
    our_message_id,
    phone,
    text,
)
from ._statuses import VendorStatuses
from .adapter import MAX_BODY, Answer, TimestampedScheme, WebhookRequest
from .forms import Form
from .records import PayloadError, ReceivedWebhook

PROVIDER: Final = "telnyx"
MESSAGING_ROUTE: Final = "telnyx_messaging"

# Same reasoning as Twilio's: inbound text is what somebody else sent, bounded only for safety.
SMS_BODY_MAX: Final = 10_000

_SIGNATURE: Final = TimestampedScheme(
    TELNYX_SIGNATURE_HEADER, TELNYX_TIMESTAMP_HEADER, verify_telnyx, "Telnyx"
)

SENT_EVENTS: Final = frozenset({"message.sent", "message.finalized"})
RECEIVED_EVENT: Final = "message.received"

# Telnyx's delivery statuses of a recipient (``to[].status``).
_STATUSES: Final[Mapping[str, tuple[MessageStatus | None, str]]] = {
    "queued": (None, KIND_PROVIDER_STATUS),
    "sending": (None, KIND_PROVIDER_STATUS),
    "sent": (MessageStatus.SENT, KIND_DELIVERY_RECEIPT),
    "delivered": (MessageStatus.DELIVERED, KIND_DELIVERY_RECEIPT),
    # Final, but the carrier gave no receipt: the message went out and nothing more is known.
    "delivery_unconfirmed": (MessageStatus.SENT, KIND_DELIVERY_RECEIPT),
    # The carrier reported it could not deliver, or the message outlived its validity period.
    "delivery_failed": (MessageStatus.UNDELIVERED, KIND_DELIVERY_RECEIPT),
    "expired": (MessageStatus.UNDELIVERED, KIND_DELIVERY_RECEIPT),
    # Telnyx could not hand it to a carrier at all.
    "sending_failed": (MessageStatus.FAILED, KIND_DELIVERY_RECEIPT),
}
TELNYX_STATUSES: Final = VendorStatuses(
    PROVIDER,
    "Telnyx",
    _STATUSES,
    frozenset({"delivery_failed", "expired", "sending_failed"}),
    "data.payload.to[0].status",
)
_EVENT_TYPE_MAX: Final = 64
_ERROR_CODE_MAX: Final = 64  # messages.error_code is VARCHAR(64)


def parse_telnyx(body: bytes) -> list[StatusReport] | InboundMessage:
    """A Telnyx messaging event: a status report for an outbound message, an inbound message,
    or (any other event type) nothing to apply."""
    data = load_json(body, MAX_BODY)
    event = data.get("data") if isinstance(data, dict) else None
    if not isinstance(event, dict):
        raise PayloadError("body must be a JSON object with a data object")
    event_type = get_str(event, "event_type")
    if not event_type or len(event_type) > _EVENT_TYPE_MAX:
        raise PayloadError(f"data.event_type must be 1 to {_EVENT_TYPE_MAX} characters")
    payload = event.get("payload")
    if event_type not in SENT_EVENTS and event_type != RECEIVED_EVENT:
        return []
    if not isinstance(payload, dict):
        raise PayloadError("data.payload must be a JSON object")
    if event_type == RECEIVED_EVENT:
        return _inbound(payload)
    return [_report(event_type, event, payload)]


def _report(event_type: str, event: Mapping[str, Any], payload: Mapping[str, Any]) -> StatusReport:
    message_id = _id(payload)
    status = _str_field(_first_recipient(payload), "status", "data.payload.to[0].status")
    return TELNYX_STATUSES.report(
        message_id,
        our_message_id(_mid(payload.get("webhook_url"))),
        TELNYX_STATUSES.read(status),
        *first_error(payload.get("errors")),
        providerEvent=event_type,
        occurredAt=detail_text(event.get("occurred_at"), 64),
    )


def first_error(errors: object) -> tuple[str | None, str | None]:
    """Code and text of the first of Telnyx's errors (``[{"code", "title", "detail"}]``, in
    API answers and message records alike); Nones when there is none."""
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    error = errors[0]
    raw_code = error.get("code")
    code = str(raw_code) if isinstance(raw_code, int | str) and raw_code != "" else None
    message = detail_text(error.get("detail")) or detail_text(error.get("title"))
    return detail_text(code, _ERROR_CODE_MAX), message


def _inbound(payload: Mapping[str, Any]) -> InboundMessage:
    message_id = _id(payload)
    sender = payload.get("from")
    if not isinstance(sender, dict):
        raise PayloadError("data.payload.from must be a JSON object")
    raw_body = get_str(payload, "text")
    media = payload.get("media")
    if media is not None and not isinstance(media, list):
        raise PayloadError("data.payload.media must be a list")
    urls = http_urls(
        [item.get("url") if isinstance(item, dict) else None for item in media or ()],
        "data.payload.media",
    )
    return InboundMessage(
        channel=Channel.MMS if urls else Channel.SMS,
        # As for Twilio: the sender an E.164 number, ours E.164 or a short code.
        sender=phone(_str_field(sender, "phone_number", "data.payload.from.phone_number"), "from"),
        recipient=phone(
            _str_field(
                _first_recipient(payload), "phone_number", "data.payload.to[0].phone_number"
            ),
            "to",
            ours=True,
        ),
        body=text(raw_body, "text", SMS_BODY_MAX) if raw_body else None,
        attachments=urls,
        provider=PROVIDER,
        provider_message_id=message_id,
        # Telnyx says when it received the message, not when the handset sent it.
        sent_at=None,
    )


def _id(payload: Mapping[str, Any]) -> str:
    return identifier(_str_field(payload, "id", "data.payload.id"), "data.payload.id")


def _first_recipient(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    recipients = payload.get("to")
    if not isinstance(recipients, list) or not recipients or not isinstance(recipients[0], dict):
        raise PayloadError("data.payload.to must be a non-empty list of objects")
    first: Mapping[str, Any] = recipients[0]
    return first


def _str_field(source: Mapping[str, Any], name: str, where: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where} is required")
    return value


def _mid(webhook_url: object) -> str | None:
    """``mid`` from the query string of the webhook URL we gave with the message."""
    if not isinstance(webhook_url, str) or "?" not in webhook_url:
        return None
    values = parse_qs(urlsplit(webhook_url).query).get("mid")
    return values[0] if values else None


class TelnyxWebhook:
    """The one endpoint Telnyx posts every messaging event to; the credential is the account's
    public key (base64, 32 bytes), None when none is configured: every request is refused."""

    source: str = PROVIDER
    route: str = MESSAGING_ROUTE
    limit: int = MAX_BODY
    ok: Answer = Answer(200)
    kept: Answer | None = None

    def __init__(self, public_key: str | None) -> None:
        self._public_key = public_key

    def verify(self, request: WebhookRequest) -> None:
        _SIGNATURE.check(request, self._public_key)

    async def parse(
        self, received: ReceivedWebhook, form: Form | None = None
    ) -> list[StatusReport] | InboundMessage:
        return parse_telnyx(received.body)
