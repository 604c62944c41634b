"""The generic JSON provider format of the original assignment.

``POST /api/webhooks/sms`` carries ``messaging_provider_id`` and ``POST /api/webhooks/email``
carries ``xillio_id``; both are signed as Standard Webhooks prescribe (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``: HMAC-SHA256 with a ``whsec_`` secret), which the
adapter checks before parsing. Unknown keys are ignored so the sender can add fields without
breaking us.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from gateway.domain.channels import Channel
from gateway.domain.messages import DEFAULT_LIMITS
from gateway.domain.reports import InboundMessage
from providers.signatures import verify_standard_webhook

from ._fields import (
    first_mailbox,
    get_str,
    http_urls,
    identifier,
    load_json,
    phone,
    require_str,
    text,
    timestamp,
)
from .adapter import MAX_BODY, Answer, Refused, WebhookRequest
from .forms import Form
from .records import PayloadError, ReceivedWebhook

PROVIDER: Final = "generic"
SMS_ROUTE: Final = "generic_sms"
EMAIL_ROUTE: Final = "generic_email"

# Same reasoning as Twilio's: inbound text is what somebody else sent, bounded only for safety.
SMS_BODY_MAX: Final = 10_000
EMAIL_BODY_MAX: Final = DEFAULT_LIMITS.email_body_max
# Room for the largest e-mail body even if every character arrives as a \uXXXX escape.
BODY_MAX_BYTES: Final = 4 * 1024 * 1024

_TYPES: Final = {"sms": Channel.SMS, "mms": Channel.MMS}


def parse_generic_sms(body: bytes) -> InboundMessage:
    """``{"from", "to", "type": "sms"|"mms", "messaging_provider_id", "body", "attachments",
    "timestamp"}``.

    An MMS without attachments is accepted: carriers deliver group texts and long texts as MMS
    with no media, and refusing them would lose real messages.
    """
    data = _object(body)
    provider_id = identifier(require_str(data, "messaging_provider_id"), "messaging_provider_id")
    raw_type = require_str(data, "type")
    channel = _TYPES.get(raw_type.strip().lower()) if len(raw_type) <= 8 else None
    if channel is None:
        raise PayloadError('type must be "sms" or "mms"')
    sender = phone(require_str(data, "from"), "from")
    recipient = phone(require_str(data, "to"), "to", ours=True)
    attachments = http_urls(data.get("attachments"), "attachments")
    if attachments and channel is Channel.SMS:
        raise PayloadError('attachments are not allowed for type "sms"; use "mms"')
    return InboundMessage(
        channel=channel,
        sender=sender,
        recipient=recipient,
        body=_body(data, SMS_BODY_MAX),
        attachments=attachments,
        provider=PROVIDER,
        provider_message_id=provider_id,
        sent_at=timestamp(data.get("timestamp"), "timestamp"),
    )


def parse_generic_email(body: bytes) -> InboundMessage:
    """``{"from", "to", "xillio_id", "body", "attachments", "timestamp"}``; the body may be HTML
    and is stored as given (sanitizing is the renderer's job, where the context is known)."""
    data = _object(body)
    provider_id = identifier(require_str(data, "xillio_id"), "xillio_id")
    # "Jane <jane@example.com>" is accepted as well as a bare address.
    sender = first_mailbox(require_str(data, "from"), "from")
    recipient = first_mailbox(require_str(data, "to"), "to")
    return InboundMessage(
        channel=Channel.EMAIL,
        sender=sender,
        recipient=recipient,
        body=_body(data, EMAIL_BODY_MAX),
        attachments=http_urls(data.get("attachments"), "attachments"),
        provider=PROVIDER,
        provider_message_id=provider_id,
        sent_at=timestamp(data.get("timestamp"), "timestamp"),
    )


def _object(body: bytes) -> dict[str, Any]:
    data = load_json(body, BODY_MAX_BYTES)
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    return data


def _body(data: dict[str, Any], max_chars: int) -> str | None:
    # Missing, null and "" all mean "no text": an MMS may be media only, and an empty message
    # is still a message the sender sent.
    raw = get_str(data, "body")
    return text(raw, "body", max_chars) if raw else None


class GenericWebhook:
    """One endpoint of the generic format: ``parser`` reads its payload."""

    source: str = PROVIDER
    limit: int = MAX_BODY
    ok: Answer = Answer(200, b'{"status":"ok"}', "application/json")
    kept: Answer | None = None

    def __init__(
        self, route: str, parser: Callable[[bytes], InboundMessage], secret: str | None
    ) -> None:
        self.route = route
        self._parser = parser
        # None: no secret is configured, so every request is refused.
        self._secret = secret

    def verify(self, request: WebhookRequest) -> None:
        if not request.headers.get("webhook-signature"):
            raise Refused(401, "missing webhook-signature")
        if self._secret is None or not verify_standard_webhook(
            self._secret, request.headers, request.body, now=time.time()
        ):
            raise Refused(403, "invalid webhook signature or timestamp")

    async def parse(self, received: ReceivedWebhook, form: Form | None = None) -> InboundMessage:
        return self._parser(received.body)
