"""Mailgun adapter (e-mail) over its HTTP API.

Follows Mailgun's API reference: "Send an email" (``POST /v3/{domain_name}/messages``, HTTP
Basic auth ``api:<API key>``, a multipart/form-data body with ``from``, ``to``, ``subject``,
``text``, ``html``, ``attachment`` files and ``v:`` custom variables; the answer ``{"id":
"<...>", "message": "Queued. Thank you."}``), "Events" (``GET /v3/{domain_name}/events``
filtered by ``message-id``) for lookups, and its two regions, US ``https://api.mailgun.net``
and EU ``https://api.eu.mailgun.net`` (``MAILGUN_BASE_URL``).

Errors are classified here: 429 is transient, not before its ``Retry-After``; 5xx transient
(502/504 ambiguous, as for every vendor); 400 (a parameter refused, such as an invalid
address), 401/403 (the API key) and other 4xx (404: no such domain) permanent; a transport
failure after the request left ambiguous. Our message id rides along as ``v:message_id`` and
comes back in every event's ``user-variables``.
"""

from __future__ import annotations

import secrets
from typing import Any, Final
from urllib.parse import quote

import structlog

from gateway.domain.records import Message
from gateway.services.ports import ProviderLookup, ProviderReceipt
from providers.attachments import Attachment, AttachmentFetcher
from providers.http import (
    ProviderResponse,
    ProviderSession,
    Refusal,
    basic_auth,
    json_object,
    loggable_url,
    looked_up,
    receipt,
    refusal_error,
    sent,
)
from providers.sendgrid import EMPTY_BODY, NO_SUBJECT, html_to_text, looks_like_html
from providers.webhooks.mailgun import event_key, mailgun_message_id, mailgun_outcome

__all__ = ["US_API", "MailgunProvider", "multipart_form"]

log = structlog.get_logger(__name__)

US_API: Final = "https://api.mailgun.net"
#: Events asked for per lookup: a message to one recipient has a handful.
LOOKUP_LIMIT: Final = 100


class MailgunProvider:
    name = "mailgun"

    def __init__(
        self,
        client: ProviderSession,
        *,
        base_url: str,
        domain: str,
        api_key: str,
        attachments: AttachmentFetcher,
    ) -> None:
        self._client = client
        root = f"{base_url.rstrip('/')}/v3/{quote(domain, safe='')}"
        self._send_url = f"{root}/messages"
        self._events_url = f"{root}/events"
        self._headers = {"Authorization": basic_auth("api", api_key), "Accept": "application/json"}
        self._attachments = attachments

    def __repr__(self) -> str:
        # Explicit, so that no attribute added later drags the API key into a log line.
        return f"MailgunProvider(url={loggable_url(self._send_url)!r})"

    async def send(self, message: Message) -> ProviderReceipt:
        attachments = await self._attachments.fetch_all(message)
        body, content_type = multipart_form(self.fields(message), attachments)
        headers = {**self._headers, "Content-Type": content_type}
        request = self._client.post(self._send_url, body=body, headers=headers)
        response = await sent(log, self.name, request, message.id)
        if response.is_success:
            return self._receipt(message, response)
        raise self._refusal(response, "provider_refused", message_id=str(message.id))

    async def lookup(self, provider_message_id: str) -> ProviderLookup:
        """Ask the Events API for the message's events; the deciding one (a permanent failure,
        else a delivery) settles it, under the key its webhook has."""
        params = {"message-id": provider_message_id, "limit": str(LOOKUP_LIMIT)}
        request = self._client.get(self._events_url, params=params, headers=self._headers)
        response = await looked_up(log, self.name, request, provider_message_id)
        if response.is_success:
            return _lookup(provider_message_id, _items(response))
        raise self._refusal(
            response, "provider_lookup_failed", provider_message_id=provider_message_id
        )

    def fields(self, message: Message) -> list[tuple[str, str]]:
        """The form fields of ``message`` (attachments go as files beside them)."""
        subject = (message.metadata or {}).get("subject")
        text = message.body or ""
        fields = [
            ("from", message.sender),
            ("to", message.recipient),
            ("subject", subject if isinstance(subject, str) and subject else NO_SUBJECT),
        ]
        if looks_like_html(text):
            # The plain part too: clients that cannot render HTML show it.
            fields += [("text", html_to_text(text) or EMPTY_BODY), ("html", text)]
        else:
            fields.append(("text", text or EMPTY_BODY))
        # Echoed in every event as user-variables: events that arrive before we stored
        # Mailgun's id still lead back to the message.
        fields.append(("v:message_id", message.id.hex))
        return fields

    def _receipt(self, message: Message, response: ProviderResponse) -> ProviderReceipt:
        payload = json_object(response)
        raw_id = payload.get("id") if payload is not None else None
        # "<20260203192638.000be97f99f8cea1@mg.example.com>": the events name it without the
        # angle brackets, and so do we.
        mailgun_id = (
            raw_id.strip().removeprefix("<").removesuffix(">") if isinstance(raw_id, str) else ""
        )
        return receipt(log, self.name, message.id, response, mailgun_id, "a message id")

    def _refusal(self, response: ProviderResponse, event: str, **context: str) -> Exception:
        """The error a non-success answer stands for, logged as ``event``."""
        status = response.status_code
        payload = json_object(response)
        raw_text = payload.get("message") if payload is not None else None
        text = raw_text if isinstance(raw_text, str) and raw_text else response.reason_phrase
        # Without Mailgun's message or a reason phrase, a refusal is named by its status.
        if not text and status < 500:
            text = "Too Many Requests" if status == 429 else f"HTTP {status}"
        reading = Refusal(str(status), text)
        return refusal_error(log, self.name, response, event, reading, **context)


def multipart_form(fields: list[tuple[str, str]], files: list[Attachment]) -> tuple[bytes, str]:
    """A multipart/form-data body of text ``fields`` and ``attachment`` files, and its media
    type. The boundary is random: no field or file can end a part early by accident."""
    boundary = secrets.token_hex(16)
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(_part_head(boundary, f'name="{name}"') + value.encode() + b"\r\n")
    for item in files:
        disposition = f'name="attachment"; filename="{_quoted(item.filename)}"'
        head = _part_head(boundary, disposition, item.content_type)
        parts.append(head + item.content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _part_head(boundary: str, disposition: str, content_type: str | None = None) -> bytes:
    lines = [f"--{boundary}", f"Content-Disposition: form-data; {disposition}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _quoted(filename: str) -> str:
    # A quoted-string: no line breaks, quotes and backslashes escaped.
    flat = "".join(" " if char in "\r\n" else char for char in filename)
    return flat.replace("\\", "\\\\").replace('"', '\\"')


def _items(response: ProviderResponse) -> list[dict[str, Any]]:
    payload = json_object(response)
    items = payload.get("items") if payload is not None else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _lookup(mailgun_id: str, items: list[dict[str, Any]]) -> ProviderLookup:
    ours = [item for item in items if mailgun_message_id(item) == mailgun_id]
    readings = [(item, *mailgun_outcome(item)) for item in ours if isinstance(item.get("id"), str)]
    if not readings:
        return ProviderLookup("mailgun", mailgun_id, found=bool(ours))
    # A delivery or a permanent failure settles the message; without either, the latest event
    # says where it is.
    settled = [reading for reading in readings if reading[1] is not None]
    item, status, _, error = settled[0] if settled else max(readings, key=_when)
    return ProviderLookup(
        "mailgun",
        mailgun_id,
        found=True,
        provider_status=str(item.get("event") or "") or None,
        status=status,
        error=error,
        report_key=event_key(item["id"]),
    )


def _when(reading: tuple[dict[str, Any], object, object, object]) -> float:
    value = reading[0].get("timestamp")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
