"""What a verified webhook payload does: its adapter parses it, the services apply it.

One path for every payload, whether the route applies it as it arrives or the replay applies
it later, after it was kept while the database was down: a duplicate or a late report is
harmless either way (the services apply each report at most once, forward only).

``apply_received`` raises PayloadError for a payload that cannot be parsed (the route answers
400) and whatever the services raise when they cannot apply it (the route keeps the payload).
It returns the outcomes to count (``applied``, ``duplicate``, ``unmatched``, ``inbound_...``).
"""

from __future__ import annotations

import base64
from typing import Final

import structlog

from gateway.domain.reports import InboundMessage
from gateway.services.ports import RawPayload
from gateway.services.webhooks import WebhookService
from providers.webhooks import Form, ReceivedWebhook, WebhookAdapter

log = structlog.get_logger(__name__)


_BASE64: Final = "base64:"


def raw_text(body: bytes) -> str:
    """The body as stored in webhook_receipts: text, or base64 when it is not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return _BASE64 + base64.b64encode(body).decode()


def raw_body(text: str) -> bytes:
    """The inverse of :func:`raw_text`: the bytes as they arrived.

    A UTF-8 body that itself began with the prefix is read as base64 too; no provider payload
    (JSON, a form) starts that way."""
    if text.startswith(_BASE64):
        return base64.b64decode(text[len(_BASE64) :])
    return text.encode("utf-8")


async def keep_payload(
    webhooks: WebhookService,
    source: str,
    outcome: str,
    body: bytes,
    content_type: str | None,
    error: str | None,
    received: ReceivedWebhook | None = None,
) -> int:
    """Keep a payload we did not apply in webhook_receipts; with ``received`` (its request,
    verified) it can be replayed later (``replay-receipts``)."""
    return await webhooks.keep_raw(
        RawPayload(
            source,
            outcome,
            content_type,
            raw_text(body),
            error,
            route=received.route if received is not None else None,
            query=received.query if received is not None else None,
        )
    )


async def apply_received(
    webhooks: WebhookService,
    adapter: WebhookAdapter,
    received: ReceivedWebhook,
    form: Form | None = None,
    *,
    keep_unowned: bool = True,
) -> list[str]:
    """Parse ``received`` with its adapter and apply it; ``form`` is its body already
    decoded, if verifying it took that. ``keep_unowned`` False: an inbound message nobody
    owns is not kept raw (again: the replay of a kept one)."""
    parsed = await adapter.parse(received, form)
    if isinstance(parsed, InboundMessage):
        return await _inbound(webhooks, adapter.source, received, parsed, keep_unowned)
    outcome = await webhooks.apply_reports(adapter.source, parsed)
    labels = []
    if outcome.applied:
        labels.append("applied")
    if outcome.duplicates:
        labels.append("duplicate")
    if outcome.unmatched:
        labels.append("unmatched")
    return labels


async def _inbound(
    webhooks: WebhookService,
    source: str,
    received: ReceivedWebhook,
    message: InboundMessage,
    keep_unowned: bool,
) -> list[str]:
    result = await webhooks.receive(message)
    if result == "unowned" and keep_unowned:
        # Nobody owns the recipient: keep the message raw, answer 2xx (the provider cannot
        # do better by retrying), log and count it.
        await keep_payload(
            webhooks, source, "unowned", received.body, received.content_type, None, received
        )
        log.warning("inbound_to_unowned_address", source=source, recipient=message.recipient)
    return [f"inbound_{result}"]
