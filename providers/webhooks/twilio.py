"""Twilio Programmable Messaging webhooks: status callbacks and inbound SMS/MMS.

Both arrive form-encoded and signed (``X-Twilio-Signature``, HMAC-SHA1 over the URL Twilio
posted to and the form's fields); the adapters check the signature over the decoded form, and
the parsers only deal with field values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Final

from gateway.domain.addresses import is_http_url
from gateway.domain.channels import Channel
from gateway.domain.reports import (
    KIND_DELIVERY_RECEIPT,
    KIND_PROVIDER_STATUS,
    InboundMessage,
    StatusReport,
)
from gateway.domain.statuses import MessageStatus
from providers.signatures import TWILIO_SIGNATURE_HEADER, verify_twilio

from ._fields import (
    ATTACHMENTS_MAX,
    detail_text,
    get_str,
    identifier,
    our_message_id,
    phone,
    require_str,
    text,
)
from ._statuses import VendorStatuses
from .adapter import MAX_BODY, Answer, Refused, WebhookRequest
from .forms import Form, decode_form, form_pairs
from .records import PayloadError, ReceivedWebhook

PROVIDER: Final = "twilio"
STATUS_ROUTE: Final = "twilio_status"
MESSAGES_ROUTE: Final = "twilio_messages"
_SIGNATURE_HEADER: Final = TWILIO_SIGNATURE_HEADER.lower()
# Twilio reads the answer to an inbound message as TwiML: anything else is an error there.
TWIML_EMPTY: Final = Answer(
    200, b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>', "text/xml"
)

# Carriers concatenate long texts into many segments; Twilio's own outbound cap is 1600
# characters, but an inbound message is what somebody else sent, so the bound only protects
# us from absurd payloads rather than enforcing a policy.
SMS_BODY_MAX: Final = 10_000

_NUM_MEDIA = re.compile(r"[0-9]{1,3}")

# Twilio's documented MessageStatus values. Statuses that only say where the message is inside
# Twilio are recorded without a status change: our message is already SENDING or later.
_STATUSES: Final[Mapping[str, tuple[MessageStatus | None, str]]] = {
    "accepted": (None, KIND_PROVIDER_STATUS),
    "scheduled": (None, KIND_PROVIDER_STATUS),
    "queued": (None, KIND_PROVIDER_STATUS),
    "sending": (None, KIND_PROVIDER_STATUS),
    "sent": (MessageStatus.SENT, KIND_DELIVERY_RECEIPT),
    "delivered": (MessageStatus.DELIVERED, KIND_DELIVERY_RECEIPT),
    # A read receipt (WhatsApp, RCS) implies delivery, and may be the only receipt we get.
    "read": (MessageStatus.DELIVERED, KIND_DELIVERY_RECEIPT),
    "undelivered": (MessageStatus.UNDELIVERED, KIND_DELIVERY_RECEIPT),
    "failed": (MessageStatus.FAILED, KIND_DELIVERY_RECEIPT),
    # Twilio cancels only messages it scheduled, and we never schedule at Twilio: our own
    # sendAt keeps a message in SCHEDULED here and hands it over when due. A cancel callback
    # therefore concerns a message already SENDING or SENT, from which CANCELED is not a legal
    # transition (can_advance refuses it), and our CANCELED means "stopped by an operator".
    # Recording it without a status change keeps the audit trail honest.
    "canceled": (None, KIND_PROVIDER_STATUS),
    # Documented values that should not reach an outbound status callback; accepted so a
    # misrouted callback is recorded rather than retried by Twilio forever.
    "partially_delivered": (None, KIND_PROVIDER_STATUS),
    "receiving": (None, KIND_PROVIDER_STATUS),
    "received": (None, KIND_PROVIDER_STATUS),
}
TWILIO_STATUSES: Final = VendorStatuses(
    PROVIDER, "Twilio", _STATUSES, frozenset({"undelivered", "failed"}), "MessageStatus"
)
_ERROR_CODE_MAX: Final = 64  # messages.error_code is VARCHAR(64)
#: "Queue overflow": the message waited in Twilio's queue for its sender longer than Twilio
#: keeps it (the sender was sent faster than its throughput), and was failed unsent. Usually
#: reported by status callback after the API call succeeded; sometimes as the call's answer.
QUEUE_OVERFLOW: Final = 30001


def parse_twilio_status(form: Mapping[str, str], query: Mapping[str, str]) -> StatusReport:
    """A status callback. ``query`` is the callback URL's query string, where the sender put
    our message id as ``mid`` (32 hex digits) so the callback finds its message directly."""
    sid = identifier(require_str(form, "MessageSid"), "MessageSid")
    provider_status = TWILIO_STATUSES.read(require_str(form, "MessageStatus"))
    error_code = detail_text(form.get("ErrorCode"), _ERROR_CODE_MAX)
    report = TWILIO_STATUSES.report(
        sid,
        our_message_id(query.get("mid")),
        provider_status,
        error_code,
        detail_text(form.get("ErrorMessage")),
        # The carrier's own "done" time (YYMMDDhhmm, zone unknown): kept as given.
        rawDlrDoneDate=detail_text(form.get("RawDlrDoneDate"), 32),
    )
    if provider_status == "failed" and error_code == str(QUEUE_OVERFLOW):
        # Failed unsent for the sender's throughput: not a failure of the message.
        return dataclasses.replace(report, throughput_refusal=True)
    return report


def parse_twilio_inbound(form: Mapping[str, str]) -> InboundMessage:
    """An incoming SMS or MMS. Media URLs are kept as Twilio's URLs (MediaContentTypeN is not
    needed: the URL serves the right content type)."""
    sid = identifier(require_str(form, "MessageSid"), "MessageSid")
    # Short codes and alphanumeric sender ids are not E.164 and are refused here: every
    # inbound address is a conversation key, and those keys are E.164 numbers.
    sender = phone(require_str(form, "From"), "From")
    recipient = phone(require_str(form, "To"), "To", ours=True)
    raw_body = get_str(form, "Body")
    body = text(raw_body, "Body", SMS_BODY_MAX) if raw_body else None

    count = _num_media(form)
    urls = tuple(_media_url(form, index) for index in range(count))
    return InboundMessage(
        channel=Channel.MMS if count else Channel.SMS,
        sender=sender,
        recipient=recipient,
        body=body,
        attachments=urls,
        provider=PROVIDER,
        provider_message_id=sid,
        # Twilio does not say when the handset sent it.
        sent_at=None,
    )


def _num_media(form: Mapping[str, str]) -> int:
    raw = get_str(form, "NumMedia")
    if raw is None or raw == "":
        return 0
    # int() would also take "+1", " 1", "1_0" and non-ASCII digits; a count is plain digits.
    if not _NUM_MEDIA.fullmatch(raw):
        raise PayloadError("NumMedia must be a whole number")
    count = int(raw)
    if count > ATTACHMENTS_MAX:
        raise PayloadError(f"NumMedia must be at most {ATTACHMENTS_MAX}")
    return count


def _media_url(form: Mapping[str, str], index: int) -> str:
    name = f"MediaUrl{index}"
    url = require_str(form, name)
    if not is_http_url(url):
        raise PayloadError(f"{name} is not a valid http(s) URL")
    return url


class _TwilioWebhook:
    source: str = PROVIDER
    limit: int = MAX_BODY

    def __init__(self, auth_token: str, public_base_url: str) -> None:
        self._auth_token = auth_token
        self._base = public_base_url.rstrip("/")

    def signed_url(self, path: str, query: str) -> str:
        """The URL Twilio signed: our public base URL, not whatever host we see. The path is
        escaped as Starlette's ``Request.url`` escapes it."""
        path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
        return self._base + path + (f"?{query}" if query else "")

    def verify(self, request: WebhookRequest) -> Form:
        form = decode_form(request.body)
        signature = request.headers.get(_SIGNATURE_HEADER)
        if not signature:
            raise Refused(401, f"missing {TWILIO_SIGNATURE_HEADER}")
        url = self.signed_url(request.path, request.query)
        if not verify_twilio(self._auth_token, url, form[1], signature):
            raise Refused(403, f"invalid {TWILIO_SIGNATURE_HEADER}")
        return form


class TwilioStatusWebhook(_TwilioWebhook):
    route: str = STATUS_ROUTE
    ok: Answer = Answer(204)
    kept: Answer | None = None

    async def parse(
        self, received: ReceivedWebhook, form: Form | None = None
    ) -> list[StatusReport]:
        single, _ = form or decode_form(received.body)
        return [parse_twilio_status(single, dict(form_pairs(received.query)))]


class TwilioMessagesWebhook(_TwilioWebhook):
    route: str = MESSAGES_ROUTE
    ok: Answer = TWIML_EMPTY
    # Kept or applied, Twilio must get TwiML.
    kept: Answer | None = TWIML_EMPTY

    async def parse(self, received: ReceivedWebhook, form: Form | None = None) -> InboundMessage:
        single, _ = form or decode_form(received.body)
        return parse_twilio_inbound(single)
