"""SendGrid v3 Mail Send adapter (e-mail).

Messages carry attachments as URLs; SendGrid wants the bytes inline (base64), fetched through
:mod:`providers.attachments` (which guards against server-side request forgery).
"""

from __future__ import annotations

import base64
import re
import time
from html.parser import HTMLParser
from typing import Any, Final

import orjson
import structlog

from gateway.domain.records import DeliveryError, Message
from gateway.domain.statuses import MessageStatus
from gateway.services.ports import PermanentProviderError, ProviderLookup, ProviderReceipt
from providers.attachments import MAX_ATTACHMENT_BYTES, Attachment, AttachmentFetcher
from providers.http import (
    ProviderResponse,
    ProviderSession,
    Refusal,
    loggable_url,
    looked_up,
    receipt,
    refusal_error,
    sent,
)

__all__ = [
    "SendGridProvider",
    "html_to_text",
    "looks_like_html",
]

log = structlog.get_logger(__name__)

NO_SUBJECT: Final = "(no subject)"
# SendGrid rejects an empty content value; a lone space is the smallest body it accepts.
EMPTY_BODY: Final = " "
# What an X-Message-Id is made of; anything else could break out of an activity query.
_X_MESSAGE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Messages asked for per lookup: one per recipient of the send, and we send to one.
LOOKUP_LIMIT: Final = 10

# A tag starts right after "<" (optionally "/"): "a < b > c" in plain text is not HTML.
_HTML_TAG: Final = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>")


class SendGridProvider:
    name = "sendgrid"

    def __init__(
        self,
        client: ProviderSession,
        *,
        base_url: str,
        api_key: str,
        allow_private_attachment_hosts: bool = False,
        max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
    ) -> None:
        self._client = client
        self._send_url = f"{base_url.rstrip('/')}/v3/mail/send"
        self._activity_url = f"{base_url.rstrip('/')}/v3/messages"
        self._api_key = api_key
        self._attachments = AttachmentFetcher(
            client,
            allow_private_hosts=allow_private_attachment_hosts,
            max_bytes=max_attachment_bytes,
        )

    def __repr__(self) -> str:
        # Explicit, so that no attribute added later drags the API key into a log line.
        return f"SendGridProvider(url={loggable_url(self._send_url)!r})"

    async def send(self, message: Message) -> ProviderReceipt:
        attachments = await self._attachments.fetch_all(message)
        body = orjson.dumps(self.payload(message, attachments))
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        request = self._client.post(self._send_url, body=body, headers=headers)
        response = await sent(log, self.name, request, message.id)
        if response.is_success:
            return self._receipt(message, response)
        raise self._failure(message, response)

    async def lookup(self, provider_message_id: str) -> ProviderLookup:
        """Ask the Email Activity API what became of the message.

        Its ``msg_id`` is the X-Message-Id we hold plus a per-recipient suffix after a dot,
        so the message is found by prefix (``msg_id LIKE '<X-Message-Id>%'``), as SendGrid
        advises for an X-Message-Id, rather than by ``GET /v3/messages/{msg_id}``, which
        needs the whole id. The API is a paid add-on: without it SendGrid answers 403, a
        permanent error here.
        """
        if not _X_MESSAGE_ID.fullmatch(provider_message_id):
            raise PermanentProviderError("INVALID_ID", "not a SendGrid X-Message-Id")
        params = {"query": f"msg_id LIKE '{provider_message_id}%'", "limit": str(LOOKUP_LIMIT)}
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        request = self._client.get(self._activity_url, params=params, headers=headers)
        response = await looked_up(log, self.name, request, provider_message_id)
        if response.is_success:
            return _lookup(provider_message_id, _activity(response))
        if response.status_code == 404:
            return ProviderLookup(self.name, provider_message_id, found=False)
        raise self._refusal(
            response, "provider_lookup_failed", provider_message_id=provider_message_id
        )

    def payload(
        self, message: Message, attachments: list[Attachment] | None = None
    ) -> dict[str, Any]:
        """The Mail Send JSON for ``message`` (attachments already fetched)."""
        subject = (message.metadata or {}).get("subject")
        text = message.body or ""
        content: list[dict[str, str]]
        if looks_like_html(text):
            # Plain text must come first: SendGrid refuses any other order, and clients that
            # cannot render HTML show the first part.
            content = [
                {"type": "text/plain", "value": html_to_text(text) or EMPTY_BODY},
                {"type": "text/html", "value": text},
            ]
        else:
            content = [{"type": "text/plain", "value": text or EMPTY_BODY}]
        payload: dict[str, Any] = {
            "personalizations": [
                {
                    "to": [{"email": message.recipient}],
                    # Echoed in every Event Webhook event: events that arrive before we stored
                    # the X-Message-Id still lead back to the message.
                    "custom_args": {"message_id": message.id.hex},
                }
            ],
            "from": {"email": message.sender},
            "subject": subject if isinstance(subject, str) and subject else NO_SUBJECT,
            "content": content,
        }
        if attachments:
            payload["attachments"] = [
                {
                    "content": base64.b64encode(item.content).decode(),
                    "filename": item.filename,
                    "type": item.content_type,
                    "disposition": "attachment",
                }
                for item in attachments
            ]
        return payload

    def _receipt(self, message: Message, response: ProviderResponse) -> ProviderReceipt:
        x_message_id = response.headers.get("X-Message-Id")
        return receipt(log, self.name, message.id, response, x_message_id, "X-Message-Id")

    def _failure(self, message: Message, response: ProviderResponse) -> Exception:
        return self._refusal(response, "provider_refused", message_id=str(message.id))

    def _refusal(self, response: ProviderResponse, event: str, **context: str) -> Exception:
        """The error a non-success answer stands for, logged as ``event``."""
        status = response.status_code
        text = _first_error(response) or response.reason_phrase or f"HTTP {status}"
        reading = Refusal(str(status), text, reset_after=_reset_after(response))
        return refusal_error(log, self.name, response, event, reading, **context)


def _activity(response: ProviderResponse) -> list[dict[str, Any]]:
    """The messages of an Email Activity answer; an answer of another shape has none."""
    try:
        payload = response.json()
    except ValueError:
        return []
    messages = payload.get("messages") if isinstance(payload, dict) else None
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _lookup(x_message_id: str, messages: list[dict[str, Any]]) -> ProviderLookup:
    """What the activity of one send says. ``processed`` is still on its way; ``delivered``
    and ``not_delivered`` (bounced, dropped or blocked) are final."""
    ours = [
        m
        for m in messages
        if isinstance(m.get("msg_id"), str)
        and (m["msg_id"] == x_message_id or m["msg_id"].startswith(f"{x_message_id}."))
    ]
    if not ours:
        return ProviderLookup("sendgrid", x_message_id, found=False)
    statuses = {str(m.get("status") or "").lower() for m in ours}
    if "not_delivered" in statuses:
        provider_status = "not_delivered"
        status: MessageStatus | None = MessageStatus.FAILED
        error: DeliveryError | None = DeliveryError(
            code="not_delivered",
            description="SendGrid: not delivered (bounced, dropped or blocked)",
            permanent=True,
        )
    elif statuses == {"delivered"}:
        provider_status, status, error = "delivered", MessageStatus.DELIVERED, None
    else:
        provider_status, status, error = ",".join(sorted(statuses)), None, None
    return ProviderLookup(
        "sendgrid",
        x_message_id,
        found=True,
        provider_status=provider_status,
        status=status,
        error=error,
        # Events are deduplicated by their sg_event_id, which an activity answer lacks.
        report_key=f"sendgrid:activity:{x_message_id}:{provider_status}",
    )


def _first_error(response: ProviderResponse) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None
    message = errors[0].get("message")
    field = errors[0].get("field")
    if not isinstance(message, str):
        return None
    return f"{message} ({field})" if isinstance(field, str) and field else message


def _reset_after(response: ProviderResponse) -> float | None:
    # SendGrid's own header: the epoch second at which the rate-limit window resets.
    reset = response.headers.get("X-RateLimit-Reset")
    if reset is None:
        return None
    try:
        return max(0.0, float(reset) - time.time())
    except ValueError:
        return None


def looks_like_html(text: str) -> bool:
    return _HTML_TAG.search(text) is not None


class _TextExtractor(HTMLParser):
    _BREAKS: Final = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})
    _HIDDEN: Final = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A readable plain-text alternative: tags dropped, entities decoded, blocks on new lines."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    text = "".join(extractor.parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    collapsed = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", collapsed).strip()
