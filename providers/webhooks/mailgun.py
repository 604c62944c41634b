"""Mailgun webhooks: event webhooks (delivery and engagement events) and inbound e-mail (Routes).

Follows Mailgun's user manual: "Securing Webhooks" (``signature = hex HMAC-SHA256(webhook
signing key, timestamp + token)``, cache the token against replays, check the timestamp is not
too far from now), "Webhook Payloads" (one JSON object per event, ``{"signature": {...},
"event-data": {...}}``, our message id back in ``user-variables``) and "Receiving messages via
HTTP through a forward() action" (a urlencoded or, with attachments, multipart form with
``timestamp``, ``token`` and ``signature`` among its fields).

The signature covers the timestamp and token only, not the payload. So each verified token is
remembered (:class:`SeenTokens`) with the digest of the body it came with for as long as its
timestamp would be accepted: the same token with another body is refused (a captured signature
moved onto a forged payload), while the same body again is a redelivery and goes through (we
answered 503 while the database was down, say), harmless since every report applies once.

Mapping of events: ``delivered`` is DELIVERED; ``failed`` with severity ``permanent`` and
``rejected`` (Mailgun refused to send it) are FAILED with the SMTP code and reason; ``failed``
with severity ``temporary`` changes no status (kind ``deferred``): Mailgun keeps retrying by
itself and reports a permanent failure or a delivery later, exactly as a SendGrid deferral.
``opened``, ``clicked``, ``unsubscribed`` and ``complained`` are engagement; anything else
(``accepted``, events Mailgun adds later) is recorded as it is.

What suppresses the recipient (``StatusReport.suppression``), following Mailgun's event
reference: ``complained`` (SPAM_REPORT), ``unsubscribed`` (UNSUBSCRIBE) and a hard bounce
(HARD_BOUNCE): a ``failed`` event of severity ``permanent`` whose ``reason`` is ``bounce``, the
receiving server refusing the address, and whose ``delivery-status.code``, when given, is an SMTP
5xx. Every other permanent failure says nothing of the address itself, so it suppresses nothing:
``suppress-bounce``, ``suppress-unsubscribe`` and ``suppress-complaint`` are Mailgun's own lists
dropping the message without trying (a list that may hold entries another sender on the domain
made; the event that put the address there, when it was about our message, suppressed it then),
and ``old``, ``generic``, ``esp-block``, ``blacklisted`` and the like are delivery or policy
trouble. Neither does ``rejected`` (Mailgun refused the message) nor a temporary failure.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

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
from providers.signatures import MAILGUN_TOLERANCE, verify_mailgun

from ._fields import (
    ID_MAX,
    compact,
    detail_scalar,
    detail_text,
    first_mailbox,
    identifier,
    inbound_email,
    load_json,
    mail_body,
    our_message_id,
    require_str,
    without_query,
)
from .adapter import MAX_BODY, Answer, Refused, WebhookRequest
from .forms import Form, decode_any_form
from .records import PayloadError, ReceivedWebhook

PROVIDER: Final = "mailgun"
EVENTS_ROUTE: Final = "mailgun_events"
INBOUND_ROUTE: Final = "mailgun_inbound"
# A Routes post carries the attachments too.
INBOUND_MAX_BODY: Final = 30 << 20
#: Tokens remembered at most; beyond it the oldest go first. Far above what arrives within the
#: tolerance at any rate Mailgun posts, and a token is only ever taken from a verified request.
SEEN_TOKENS_MAX: Final = 200_000
_EVENT_NAME_MAX: Final = 64
_ERROR_CODE_MAX: Final = 64  # messages.error_code is VARCHAR(64)
_HEADERS_MAX: Final = 1024 * 1024
_ENGAGEMENT: Final = frozenset({"opened", "clicked", "unsubscribed", "complained"})
# What the recipient did that the account must respect from now on.
_SUPPRESSING: Final = {
    "complained": SuppressionReason.SPAM_REPORT,
    "unsubscribed": SuppressionReason.UNSUBSCRIBE,
}

Outcome = tuple[MessageStatus | None, str, DeliveryError | None]


def mailgun_outcome(event: Mapping[str, Any]) -> Outcome:
    """What one Mailgun event (``event-data``, or an item of the Events API) means for our
    message: the status it moves to (None: none), the report kind, and the error if it
    failed. Shared by the webhook and the lookup, so both read an event the same way."""
    name = str(event.get("event") or "").strip().lower()
    if name == "delivered":
        return MessageStatus.DELIVERED, KIND_DELIVERY_RECEIPT, None
    if name == "rejected" or (name == "failed" and event.get("severity") == "permanent"):
        return MessageStatus.FAILED, KIND_DELIVERY_RECEIPT, _failure(event, name)
    if name == "failed":
        # Temporary (or no severity given): Mailgun retries on its own.
        return None, KIND_DEFERRED, None
    if name in _ENGAGEMENT:
        return None, KIND_ENGAGEMENT, None
    return None, KIND_PROVIDER_STATUS, None


def _failure(event: Mapping[str, Any], name: str) -> DeliveryError:
    status = event.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    raw_code = status.get("code")
    code = str(raw_code) if isinstance(raw_code, int | str) and raw_code != "" else None
    reason = detail_text(event.get("reason"), _ERROR_CODE_MAX)
    description = (
        detail_text(status.get("description"))
        or detail_text(status.get("message"))
        or f"Mailgun: {reason or name}"
    )
    return DeliveryError(
        code=(code or reason or name)[:_ERROR_CODE_MAX], description=description, permanent=True
    )


def mailgun_suppression(event: Mapping[str, Any]) -> SuppressionReason | None:
    """What one Mailgun event says of its recipient that the account must respect (see the
    module's docstring), None when it says nothing lasting."""
    name = str(event.get("event") or "").strip().lower()
    if name != "failed":
        return _SUPPRESSING.get(name)
    if event.get("severity") != "permanent" or event.get("reason") != "bounce":
        return None
    status = event.get("delivery-status")
    code = status.get("code") if isinstance(status, dict) else None
    if code is None or code == "":
        return SuppressionReason.HARD_BOUNCE
    try:
        smtp = int(str(code))
    except ValueError:
        return None
    return SuppressionReason.HARD_BOUNCE if 500 <= smtp < 600 else None


def mailgun_message_id(event: Mapping[str, Any]) -> str | None:
    """Mailgun's id of the message an event is about (``message.headers.message-id``), as the
    send call's answer gave it, without the angle brackets."""
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    value = headers.get("message-id") if isinstance(headers, dict) else None
    if not isinstance(value, str):
        return None
    stripped = value.strip().removeprefix("<").removesuffix(">")
    if not stripped or len(stripped) > ID_MAX:
        return None
    try:
        return identifier(stripped, "message-id")
    except PayloadError:
        return None


def event_key(event_id: str) -> str:
    """The dedupe key of the report an event amounts to: its id is Mailgun's own for that one
    event, redeliveries included, and the Events API shows the same id."""
    return f"mailgun:{event_id}"


def parse_mailgun_event(body: bytes) -> list[StatusReport]:
    """The one event of an event webhook post, as a report."""
    data = load_json(body, MAX_BODY)
    event = data.get("event-data") if isinstance(data, dict) else None
    if not isinstance(event, dict):
        raise PayloadError("event-data must be a JSON object")
    event_id = identifier(require_str(event, "id"), "event-data.id")
    name = require_str(event, "event").strip().lower()
    if not name or len(name) > _EVENT_NAME_MAX:
        raise PayloadError(f"event-data.event must be 1 to {_EVENT_NAME_MAX} characters")
    status, kind, error = mailgun_outcome(event)
    provider_id = mailgun_message_id(event)
    delivery = event.get("delivery-status")
    detail: dict[str, Any] = {
        "provider": PROVIDER,
        "providerEvent": detail_text(name),
        "timestamp": _epoch(event.get("timestamp")),
        "severity": detail_text(event.get("severity"), 32),
        "reason": detail_text(event.get("reason"), 64),
        "response": detail_text(delivery.get("message")) if isinstance(delivery, dict) else None,
        "providerMessageId": provider_id,
    }
    if name == "clicked":
        url = event.get("url")
        detail["url"] = without_query(url) if isinstance(url, str) else None
    variables = event.get("user-variables")
    return [
        StatusReport(
            provider=PROVIDER,
            provider_message_id=provider_id,
            message_id=our_message_id(
                variables.get("message_id") if isinstance(variables, dict) else None
            ),
            status=status,
            kind=kind,
            dedupe_key=event_key(event_id),
            error=error,
            detail=compact(detail),
            suppression=mailgun_suppression(event),
        )
    ]


def _epoch(value: object) -> int | str | None:
    # Mailgun's event timestamps are epoch seconds with a fraction.
    if isinstance(value, float) and abs(value) <= 2**53:
        return int(value)
    return detail_scalar(value)


def parse_mailgun_inbound(form: Mapping[str, str]) -> InboundMessage:
    """An e-mail posted by a Route's ``forward()`` action.

    ``recipient`` is the SMTP envelope's RCPT TO, the mailbox it was delivered to (the To
    header may list others first, or not us at all). Attachments are uploaded files, not URLs,
    so they are not part of the message, as with SendGrid's Inbound Parse.
    """
    headers = _headers(form.get("message-headers"))
    return inbound_email(
        form,
        PROVIDER,
        sender=first_mailbox(require_str(form, "from"), "from"),
        recipient=first_mailbox(require_str(form, "recipient"), "recipient"),
        body=mail_body(form, "body-plain", "body-html"),
        header=headers.get,
    )


def _headers(value: str | None) -> dict[str, str]:
    """``message-headers``: a JSON list of ``[name, value]`` pairs in message order; the first
    value of each (lower-case) name. Only informative, so an unreadable list reads as empty."""
    if not value or len(value) > _HEADERS_MAX:
        return {}
    try:
        pairs = load_json(value.encode("utf-8", "replace"), _HEADERS_MAX * 4)
    except PayloadError:
        return {}
    found: dict[str, str] = {}
    for pair in pairs if isinstance(pairs, list) else []:
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
            found.setdefault(pair[0].strip().lower(), pair[1])
    return found


class SeenTokens:
    """Verified tokens, each with the digest of the body it came with, kept ``ttl`` seconds.

    Per process: API processes behind a load balancer each keep their own, so a replay that
    reaches another process is only stopped by the timestamp check there.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = SEEN_TOKENS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        # Insertion order is expiry order: every entry lives the same ttl.
        self._tokens: dict[str, tuple[bytes, float]] = {}

    def claim(self, token: str, body: bytes) -> bool:
        """False when ``token`` came before with another body."""
        now = self._clock()
        while self._tokens:
            oldest = next(iter(self._tokens))
            if self._tokens[oldest][1] > now and len(self._tokens) < self._max:
                break
            del self._tokens[oldest]
        digest = hashlib.sha256(body).digest()
        seen = self._tokens.get(token)
        if seen is not None:
            return hmac.compare_digest(seen[0], digest)
        self._tokens[token] = (digest, now + self._ttl)
        return True


class _MailgunWebhook:
    source: str = PROVIDER
    kept: Answer | None = None
    ok: Answer = Answer(200)

    def __init__(self, signing_key: str | None, seen: SeenTokens) -> None:
        # None: nothing is configured, so every request is refused.
        self._key = signing_key
        self._seen = seen

    def _check(self, fields: Mapping[str, object], body: bytes) -> None:
        timestamp, token, signature = (_signed(fields.get(name)) for name in _SIGNED)
        if timestamp is None or token is None or signature is None:
            raise Refused(401, "missing Mailgun signature (timestamp, token, signature)")
        key = self._key
        if key is None or not verify_mailgun(key, timestamp, token, signature, now=time.time()):
            raise Refused(403, "invalid or stale Mailgun signature")
        if not self._seen.claim(token, body):
            raise Refused(403, "Mailgun token already used for another payload")


_SIGNED: Final = ("timestamp", "token", "signature")


def _signed(value: object) -> str | None:
    """A signature field as text; a JSON number is the timestamp written without quotes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


class MailgunEventsWebhook(_MailgunWebhook):
    """Event webhooks; the signature is the ``signature`` object of the JSON body."""

    route: str = EVENTS_ROUTE
    limit: int = MAX_BODY

    def verify(self, request: WebhookRequest) -> None:
        try:
            data = load_json(request.body, self.limit)
        except PayloadError:
            data = None
        signature = data.get("signature") if isinstance(data, dict) else None
        self._check(signature if isinstance(signature, dict) else {}, request.body)

    async def parse(
        self, received: ReceivedWebhook, form: Form | None = None
    ) -> list[StatusReport]:
        return parse_mailgun_event(received.body)


class MailgunInboundWebhook(_MailgunWebhook):
    """Routes ``forward()`` posts; the signature is three of the form's fields."""

    route: str = INBOUND_ROUTE
    limit: int = INBOUND_MAX_BODY

    def verify(self, request: WebhookRequest) -> Form:
        try:
            form = decode_any_form(request.headers.get("content-type"), request.body)
        except PayloadError:
            form = ({}, {})
        self._check(form[0], request.body)
        return form

    async def parse(self, received: ReceivedWebhook, form: Form | None = None) -> InboundMessage:
        fields = form if form is not None else decode_any_form(received.content_type, received.body)
        return parse_mailgun_inbound(fields[0])


def mailgun_webhooks(signing_key: str | None) -> tuple[MailgunEventsWebhook, MailgunInboundWebhook]:
    """Both endpoints, sharing the tokens they have seen (a token is unique across them). A
    token is kept as long as its timestamp can be accepted: up to the tolerance either side."""
    seen = SeenTokens(2 * MAILGUN_TOLERANCE)
    return MailgunEventsWebhook(signing_key, seen), MailgunInboundWebhook(signing_key, seen)
