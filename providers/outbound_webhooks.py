"""Event webhooks to account endpoints: the payload, the Standard Webhooks headers, the POST.

The payload of one audit-trail event (documented in the README)::

    {"type": "message.<kind>", "timestamp": "<when the event happened, ISO 8601>",
     "data": {"cursor": "<the event's cursor>", "messageId": "msg_...",
              "conversationId": "conv_...", "status": "DELIVERED", "kind": "<kind>",
              "reason": "<why, when the event says>" | null, "detail": {...} | null}}

Headers: ``webhook-id`` (``evt_<event id>``, the same on every try), ``webhook-timestamp``
(Unix seconds of this try) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` with each
secret the endpoint signs with, space-separated (two during a secret rotation's overlap).

The URL is checked again at every try, and every address its host resolves to is checked
by the resolver the connection itself uses (``ProviderSession(check_addresses=...)``), so
a name re-pointed after the check cannot steer the POST. Redirects are answers like any
other: not followed. Only the start of an answer's body is read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence
from typing import Any, Final

import orjson

from gateway.domain.records import MessageEvent
from gateway.domain.webhook_endpoints import parse_endpoint_url
from gateway.services.ports import SentWebhook
from providers.http import IPAddress, ProviderSession, TransportError
from providers.signatures import standard_webhook_sign
from schema.ids import encode_event_cursor, encode_id

#: How much of an endpoint's answer is read and kept.
RESPONSE_KEPT: Final = 1024


def webhook_payload(event: MessageEvent) -> bytes:
    detail = event.detail or {}
    reason = detail.get("reason") or detail.get("description") or detail.get("code")
    body: dict[str, Any] = {
        "type": f"message.{event.kind}",
        "timestamp": event.occurred_at.isoformat(),
        "data": {
            "cursor": encode_event_cursor(event.id),
            "messageId": encode_id("Message", event.message_id),
            "conversationId": encode_id("Conversation", event.conversation_id),
            "status": event.status.value,
            "kind": event.kind,
            "reason": reason if isinstance(reason, str) else None,
            "detail": event.detail,
        },
    }
    return orjson.dumps(body)


def signed_headers(
    webhook_id: str, secrets: Sequence[str], body: bytes, timestamp: int
) -> dict[str, str]:
    signatures = " ".join(standard_webhook_sign(s, webhook_id, timestamp, body) for s in secrets)
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


class SystemResolver:
    """The host's own resolver (``HostResolver``), for the check when an endpoint is saved."""

    async def resolve(self, host: str) -> list[IPAddress]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError):
            return []
        return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


class WebhookPoster:
    """``WebhookSender`` over a ``ProviderSession`` of its own (webhooks never take
    connections from the providers' pool, nor the providers from theirs), which checks
    every address it resolves with ``check_addresses`` unless ``allow_private``."""

    def __init__(self, session: ProviderSession, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._session = session

    async def send(
        self, url: str, *, webhook_id: str, secrets: Sequence[str], event: MessageEvent
    ) -> SentWebhook:
        parse_endpoint_url(url, allow_private=self._allow_private)
        body = webhook_payload(event)
        headers = signed_headers(webhook_id, secrets, body, int(time.time()))
        try:
            response = await self._session.post(
                url, body=body, headers=headers, read_at_most=RESPONSE_KEPT
            )
        except TransportError as exc:
            return SentWebhook(None, f"{exc.code}: {exc}"[:RESPONSE_KEPT])
        text = response.content[:RESPONSE_KEPT].decode("utf-8", "replace")
        return SentWebhook(response.status_code, text)
