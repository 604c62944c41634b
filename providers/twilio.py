"""Twilio Programmable Messaging adapter (SMS and MMS) over the REST API.

Every failure is classified here, where Twilio's codes are known: the delivery service only
sees :class:`TransientProviderError` (retry later) or :class:`PermanentProviderError`.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote, urlencode

import structlog

from gateway.domain.records import Message
from gateway.services.ports import ProviderLookup, ProviderReceipt
from providers.http import (
    ProviderResponse,
    ProviderSession,
    Refusal,
    basic_auth,
    callback_url,
    json_object,
    loggable_url,
    looked_up,
    receipt,
    refusal_error,
    sent,
)
from providers.webhooks.twilio import QUEUE_OVERFLOW, TWILIO_STATUSES

__all__ = ["TwilioProvider"]

log = structlog.get_logger(__name__)

API_VERSION: Final = "2010-04-01"
NOT_FOUND: Final = 20404
RATE_LIMITED: Final = 20429
INVALID_TO_NUMBER: Final = 21211
UNSUBSCRIBED_RECIPIENT: Final = 21610


class TwilioProvider:
    name = "twilio"

    def __init__(
        self,
        client: ProviderSession,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        status_callback_url: str,
    ) -> None:
        self._client = client
        # The Messages list resource; one message is at ``.../Messages/{Sid}.json``.
        self._messages = f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages"
        self._messages_url = f"{self._messages}.json"
        self._headers = {
            "Authorization": basic_auth(account_sid, auth_token),
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self._lookup_headers = {
            "Authorization": self._headers["Authorization"],
            "Accept": "application/json",
        }
        self._status_callback_url = status_callback_url

    def __repr__(self) -> str:
        # Explicit, so that no attribute added later drags the auth token into a log line.
        return f"TwilioProvider(url={loggable_url(self._messages_url)!r})"

    def status_callback_for(self, message: Message) -> str:
        """Our status webhook with the message id (see :func:`callback_url`)."""
        return callback_url(self._status_callback_url, message.id)

    async def send(self, message: Message) -> ProviderReceipt:
        form = [("To", message.recipient), ("From", message.sender)]
        if message.body:
            form.append(("Body", message.body))
        form.extend(("MediaUrl", url) for url in message.attachments)
        form.append(("StatusCallback", self.status_callback_for(message)))
        request = self._client.post(
            self._messages_url, body=urlencode(form).encode(), headers=self._headers
        )
        response = await sent(log, self.name, request, message.id)
        if response.is_success:
            return self._receipt(message, response)
        raise self._failure(message, response)

    async def lookup(self, provider_message_id: str) -> ProviderLookup:
        """Fetch the Message resource (``GET .../Messages/{Sid}.json``) and read its status."""
        url = f"{self._messages}/{quote(provider_message_id, safe='')}.json"
        request = self._client.get(url, headers=self._lookup_headers)
        response = await looked_up(log, self.name, request, provider_message_id)
        payload = json_object(response)
        if response.is_success and payload is not None:
            return _lookup(provider_message_id, payload)
        if response.status_code == 404 and payload is not None and payload.get("code") == NOT_FOUND:
            return ProviderLookup(self.name, provider_message_id, found=False)
        raise self._refusal(
            response, payload, "provider_lookup_failed", provider_message_id=provider_message_id
        )

    def _receipt(self, message: Message, response: ProviderResponse) -> ProviderReceipt:
        payload = json_object(response) or {}
        return receipt(
            log,
            self.name,
            message.id,
            response,
            payload.get("sid"),
            "a message sid",
            provider_status=payload.get("status"),
        )

    def _failure(self, message: Message, response: ProviderResponse) -> Exception:
        return self._refusal(
            response, json_object(response), "provider_refused", message_id=str(message.id)
        )

    def _refusal(
        self,
        response: ProviderResponse,
        payload: dict[str, Any] | None,
        event: str,
        **context: str,
    ) -> Exception:
        """The error a non-success answer stands for, logged as ``event``."""
        status = response.status_code
        raw_code = payload.get("code") if payload is not None else None
        twilio_code = raw_code if isinstance(raw_code, int) else None
        raw_text = payload.get("message") if payload is not None else None
        # 21211 (invalid 'To'), 21610 (recipient replied STOP), auth and validation errors are
        # permanent. 21610 also says the recipient is unsubscribed.
        reading = Refusal(
            str(twilio_code if twilio_code is not None else status),
            raw_text if isinstance(raw_text, str) and raw_text else response.reason_phrase,
            # Throughput errors: the sender was sent faster than Twilio takes from it.
            rate_limited=twilio_code in (RATE_LIMITED, QUEUE_OVERFLOW),
            unsubscribed=twilio_code == UNSUBSCRIBED_RECIPIENT,
        )
        return refusal_error(log, self.name, response, event, reading, **context)


def _lookup(sid: str, resource: dict[str, Any]) -> ProviderLookup:
    raw_code = resource.get("error_code")
    error_code = str(raw_code) if isinstance(raw_code, int | str) and raw_code != "" else None
    raw_message = resource.get("error_message")
    error_message = raw_message if isinstance(raw_message, str) and raw_message else None
    return TWILIO_STATUSES.lookup(sid, resource.get("status"), error_code, error_message)
