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

import structlog

from gateway.domain.reports import InboundMessage
from gateway.services.webhooks import WebhookService
from providers.webhooks import Form, ReceivedWebhook, WebhookAdapter

log = structlog.get_logger(__name__)


def raw_text(body: bytes) -> str:
    """The body as stored in webhook_receipts: text, or base64 when it is not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


async def apply_received(
    webhooks: WebhookService,
    adapter: WebhookAdapter,
    received: ReceivedWebhook,
    form: Form | None = None,
) -> list[str]:
    """Parse ``received`` with its adapter and apply it; ``form`` is its body already
    decoded, if verifying it took that."""
    parsed = await adapter.parse(received, form)
    if isinstance(parsed, InboundMessage):
        return await _inbound(webhooks, adapter.source, received, parsed)
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
    webhooks: WebhookService, source: str, received: ReceivedWebhook, message: InboundMessage
) -> list[str]:
    result = await webhooks.receive(message)
    if result == "unowned":
        # Nobody owns the recipient: keep the message raw, answer 2xx (the provider cannot
        # do better by retrying), log and count it.
        await webhooks.keep_raw(
            source, "unowned", received.content_type, raw_text(received.body), None
        )
        log.warning("inbound_to_unowned_address", source=source, recipient=message.recipient)
    return [f"inbound_{result}"]
