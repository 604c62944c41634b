"""Telnyx Messaging (API v2) adapter: SMS and MMS.

Follows Telnyx's API reference: "Send a message" (``POST /v2/messages``, a JSON body with
``from``, ``to``, ``text``, ``media_urls``, ``type``, ``webhook_url`` and, when configured,
``messaging_profile_id``; the answer's ``data.id`` is the message's id), "Retrieve a message"
(``GET /v2/messages/{id}``: the message record, its status per recipient in ``to[].status``),
"API error codes" (errors as ``{"errors": [{"code", "title", "detail"}]}``, codes as strings:
10009 authentication failed, 10011 too many requests, 10007 unexpected error, ...), "Rate
limiting" (429 with ``x-ratelimit-reset``, the seconds until the window resets) and the
"Messaging Error Code Reference" (40300 recipient opted out, 40305 invalid ``from``, 40310
invalid ``to``). Authentication is the API key as a Bearer token.

Every failure is classified here: 429 is transient, not before ``Retry-After`` (where given)
or ``x-ratelimit-reset``; 5xx is transient (502 and 504 ambiguous, as for every vendor); 408
(10008, the request timed out at Telnyx) is transient and ambiguous, since Telnyx may have
created the message; any other 4xx (validation, a recipient that opted out, authentication)
is permanent. A transport failure after the request was sent is ambiguous.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import orjson
import structlog

from gateway.domain.channels import Channel
from gateway.domain.records import Message
from gateway.services.ports import ProviderLookup, ProviderReceipt
from providers.http import (
    ProviderResponse,
    ProviderSession,
    Refusal,
    callback_url,
    json_object,
    loggable_url,
    looked_up,
    receipt,
    refusal_error,
    sent,
)
from providers.webhooks.telnyx import TELNYX_STATUSES, first_error

__all__ = ["TelnyxProvider"]

log = structlog.get_logger(__name__)

NOT_FOUND: Final = "10005"
REQUEST_TIMEOUT: Final = "10008"
RATE_LIMITED: Final = "10011"
#: The recipient replied STOP to the sender: a word about their consent, not only a refusal.
OPTED_OUT: Final = "40300"
#: Telnyx's own header for the seconds until a rate-limit window resets.
RATE_LIMIT_RESET: Final = "x-ratelimit-reset"


class TelnyxProvider:
    name = "telnyx"

    def __init__(
        self,
        client: ProviderSession,
        *,
        base_url: str,
        api_key: str,
        webhook_url: str,
        messaging_profile_id: str | None = None,
    ) -> None:
        self._client = client
        self._messages_url = f"{base_url.rstrip('/')}/v2/messages"
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._lookup_headers = {
            "Authorization": self._headers["Authorization"],
            "Accept": "application/json",
        }
        self._webhook_url = webhook_url
        self._profile = messaging_profile_id

    def __repr__(self) -> str:
        # Explicit, so that no attribute added later drags the API key into a log line.
        return f"TelnyxProvider(url={loggable_url(self._messages_url)!r})"

    def webhook_url_for(self, message: Message) -> str:
        """Our webhook with the message id (see :func:`callback_url`), which Telnyx echoes in
        the (signed) message record of every event."""
        return callback_url(self._webhook_url, message.id)

    async def send(self, message: Message) -> ProviderReceipt:
        body: dict[str, Any] = {"from": message.sender, "to": message.recipient}
        if message.body:
            body["text"] = message.body
        if message.attachments:
            body["media_urls"] = list(message.attachments)
        body["type"] = "MMS" if message.channel is Channel.MMS else "SMS"
        body["webhook_url"] = self.webhook_url_for(message)
        if self._profile:
            body["messaging_profile_id"] = self._profile
        request = self._client.post(
            self._messages_url, body=orjson.dumps(body), headers=self._headers
        )
        response = await sent(log, self.name, request, message.id)
        if response.is_success:
            return self._receipt(message, response)
        raise self._refusal(response, "provider_refused", message_id=str(message.id))

    async def lookup(self, provider_message_id: str) -> ProviderLookup:
        """Retrieve the message (``GET /v2/messages/{id}``) and read its recipient's status."""
        url = f"{self._messages_url}/{quote(provider_message_id, safe='')}"
        request = self._client.get(url, headers=self._lookup_headers)
        response = await looked_up(log, self.name, request, provider_message_id)
        record = _data(response)
        if response.is_success and record is not None:
            return _lookup(provider_message_id, record)
        if response.status_code == 404 and _code(response) == NOT_FOUND:
            # Telnyx's own "no such message" (a 404 without it is a wrong base URL).
            return ProviderLookup(self.name, provider_message_id, found=False)
        raise self._refusal(
            response, "provider_lookup_failed", provider_message_id=provider_message_id
        )

    def _receipt(self, message: Message, response: ProviderResponse) -> ProviderReceipt:
        record = _data(response) or {}
        return receipt(
            log,
            self.name,
            message.id,
            response,
            record.get("id"),
            "a message id",
            provider_status=_recipient_status(record),
        )

    def _refusal(self, response: ProviderResponse, event: str, **context: str) -> Exception:
        """The error a non-success answer stands for, logged as ``event``."""
        status = response.status_code
        telnyx_code, detail = _first_error(response)
        # 40310 (invalid 'to'), 40300 (recipient opted out), authentication and validation
        # errors are permanent. 40300 also says the recipient is unsubscribed.
        reading = Refusal(
            telnyx_code or str(status),
            detail or response.reason_phrase,
            rate_limited=telnyx_code == RATE_LIMITED,
            # Telnyx gave up on a request it had received: it may have created the message.
            timed_out=status == 408 or telnyx_code == REQUEST_TIMEOUT,
            unsubscribed=telnyx_code == OPTED_OUT,
            reset_after=_reset_after(response),
        )
        return refusal_error(log, self.name, response, event, reading, **context)


def _reset_after(response: ProviderResponse) -> float | None:
    """Telnyx's ``x-ratelimit-reset``: the seconds until its rate-limit window resets."""
    reset = response.headers.get(RATE_LIMIT_RESET)
    if reset is None:
        return None
    try:
        return max(0.0, float(reset))
    except ValueError:
        return None


def _lookup(message_id: str, record: dict[str, Any]) -> ProviderLookup:
    return TELNYX_STATUSES.lookup(
        message_id, _recipient_status(record), *first_error(record.get("errors"))
    )


def _recipient_status(record: dict[str, Any]) -> object:
    """The status of the message's (one) recipient, as Telnyx wrote it."""
    recipients = record.get("to")
    if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict):
        return recipients[0].get("status")
    return None


def _first_error(response: ProviderResponse) -> tuple[str | None, str | None]:
    payload = json_object(response)
    return first_error(payload.get("errors") if payload is not None else None)


def _code(response: ProviderResponse) -> str | None:
    return _first_error(response)[0]


def _data(response: ProviderResponse) -> dict[str, Any] | None:
    """The ``data`` object of a Telnyx answer."""
    payload = json_object(response)
    data = payload.get("data") if payload is not None else None
    return data if isinstance(data, dict) else None
