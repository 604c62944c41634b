"""Telnyx's Messages API (v2) as the sandbox serves it, and its signed messaging webhooks.

``POST /v2/messages`` answers ``{"data": <message record>}``; ``GET /v2/messages/{id}`` shows
the record as it moves along (``queued``, ``sent``, then ``delivered`` or ``delivery_failed``
for the recipient); each step after ``queued`` is posted to the message's ``webhook_url`` as a
``message.sent`` or ``message.finalized`` event, signed with the sandbox's Ed25519 key.
Errors are Telnyx's ``{"errors": [{"code", "title", "detail"}]}``; a 429 carries Telnyx's
``x-ratelimit-*`` headers, not ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.domain.segments import GSM7, count_segments
from providers.sandbox_app.config import SandboxConfig
from providers.sandbox_app.core import Fault, Sandbox, mid_in
from providers.signatures import TELNYX_SIGNATURE_HEADER, TELNYX_TIMESTAMP_HEADER, telnyx_sign

__all__ = ["TelnyxApi"]

VENDOR: Final = "telnyx"
#: The request limit the sandbox's 429s announce.
RATE_LIMIT: Final = 600


def telnyx_error(status: int, code: str, title: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"code": code, "title": title, "detail": detail}]},
        status_code=status,
        headers=headers or None,
    )


class TelnyxApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def _refusal(self, request: Request, config: SandboxConfig) -> Response | None:
        """What a request is refused with before it is read, as Telnyx would; None if it may
        go ahead. A vendor that is down answers nothing else, not even an auth error."""
        if config.outage:
            return telnyx_error(503, "10007", "Unexpected error", "Service Unavailable")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), config.telnyx_api_key.encode()
        ):
            return telnyx_error(
                401,
                "10009",
                "Authentication failed",
                "The required authentication headers were either invalid or not included in "
                "the request.",
            )
        return None

    async def create_message(self, request: Request) -> Response:
        sandbox = self.sandbox
        config = sandbox.config.of(VENDOR)
        try:
            payload: Any = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            payload = None
        record = sandbox.record(VENDOR, **_describe(payload))
        refused = self._refusal(request, config)
        if refused is not None:
            record["outcome"] = Fault.OUTAGE.value if config.outage else "unauthorized"
            return refused

        fault = sandbox.draw_fault(config)
        if fault is Fault.RATE_LIMITED:
            record["outcome"] = fault.value
            return telnyx_error(
                429,
                "10011",
                "Too many requests",
                "You have exceeded the maximum number of allowed requests.",
                **{
                    "x-ratelimit-limit": str(RATE_LIMIT),
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(math.ceil(config.retry_after)),
                },
            )
        if fault is Fault.SERVER_ERROR:
            record["outcome"] = fault.value
            return telnyx_error(500, "10007", "Unexpected error", "An unexpected error occured.")
        if fault is Fault.TIMEOUT:
            record["outcome"] = fault.value
            if not await sandbox.stall(request, config):
                return Response(status_code=504)  # nobody is listening any more
            record["delayed"] = True

        problem = _problem(payload, record, config)
        if problem is not None:
            return problem
        message_id = str(uuid.uuid4())
        record["provider_id"] = message_id
        record["outcome"] = "accepted"
        resource = _resource(message_id, payload, record)
        answer = JSONResponse({"data": resource})
        sandbox.remember(VENDOR, message_id, resource)
        sandbox.spawn(self._progress(resource))
        return answer

    async def fetch_message(self, request: Request) -> Response:
        """``GET /v2/messages/{id}``: the message record as it is now."""
        refused = self._refusal(request, self.sandbox.config.of(VENDOR))
        if refused is not None:
            return refused
        resource = self.sandbox.messages[VENDOR].get(request.path_params["message_id"])
        if resource is None:
            return telnyx_error(
                404,
                "10005",
                "Resource not found",
                "The requested resource or URL could not be found.",
            )
        return JSONResponse({"data": resource})

    async def _progress(self, resource: dict[str, Any]) -> None:
        """Move the message along after the callback delay, as retrieving it then shows, and
        post each step to its webhook URL, if it has one."""
        sandbox = self.sandbox
        config = sandbox.config.of(VENDOR)
        await asyncio.sleep(config.callback_delay)
        recipient = resource["to"][0]
        undeliverable = recipient["phone_number"].strip().lower() in (
            config.undeliverable_recipients
        )
        final = "delivery_failed" if undeliverable else "delivered"
        for event_type, status in (("message.sent", "sent"), ("message.finalized", final)):
            now = _iso(time.time())
            recipient["status"] = status
            if status == "sent":
                resource["sent_at"] = now
            else:
                resource["completed_at"] = now
            if status == "delivery_failed":
                resource["errors"] = [
                    {
                        "code": "40008",
                        "title": "Undeliverable",
                        "detail": "The carrier did not accept the message.",
                    }
                ]
            url = resource.get("webhook_url")
            if not url:
                continue
            event = {
                "data": {
                    "event_type": event_type,
                    "id": str(uuid.uuid4()),
                    "occurred_at": now,
                    "payload": copy.deepcopy(resource),
                    "record_type": "event",
                },
                "meta": {"attempt": 1, "delivered_to": url},
            }
            body = orjson.dumps(event)
            timestamp = str(int(time.time()))
            await sandbox.deliver(
                VENDOR,
                url,
                summary={
                    "provider_id": resource["id"],
                    "event_type": event_type,
                    "status": status,
                    "to": recipient["phone_number"],
                },
                content=body,
                headers={
                    "Content-Type": "application/json",
                    TELNYX_SIGNATURE_HEADER: telnyx_sign(
                        sandbox.config.telnyx_signing_key, timestamp, body
                    ),
                    TELNYX_TIMESTAMP_HEADER: timestamp,
                },
            )


def _problem(payload: Any, record: dict[str, Any], config: SandboxConfig) -> JSONResponse | None:
    """Telnyx's answer to a request it cannot send; None for a sendable one."""
    problem: tuple[str, str, str, str] | None = None
    if not isinstance(payload, dict):
        problem = ("bad_request", "10015", "Bad Request", "The request was not well-formed.")
    elif not record["to"]:
        problem = ("bad_request", "10004", "Missing required parameter", "'to' is required.")
    elif not record["from"]:
        problem = ("bad_request", "40305", "Invalid 'from' address", "'from' is required.")
    elif not record["body"] and not record["media"]:
        problem = ("bad_request", "10004", "Missing required parameter", "'text' is required.")
    elif record["to"].strip().lower() in config.unsubscribed_recipients:
        problem = (
            "unsubscribed_recipient",
            "40300",
            "Blocked due to STOP message",
            "The recipient replied STOP to this sender.",
        )
    elif record["to"].strip().lower() in config.invalid_recipients:
        problem = (
            "invalid_recipient",
            "40310",
            "Invalid 'to' address",
            "The 'to' address should be a single valid number.",
        )
    if problem is None:
        return None
    outcome, code, title, detail = problem
    record["outcome"] = outcome
    return telnyx_error(400, code, title, detail)


def _resource(message_id: str, payload: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    text: str = record["body"] or ""
    segments = count_segments(text) if text else None
    return {
        "record_type": "message",
        "direction": "outbound",
        "id": message_id,
        "type": "MMS" if record["media"] else "SMS",
        "messaging_profile_id": payload.get("messaging_profile_id"),
        "from": {"phone_number": record["from"], "carrier": "Telnyx", "line_type": "VoIP"},
        "to": [
            {
                "phone_number": record["to"],
                "status": "queued",
                "carrier": "SANDBOX WIRELESS",
                "line_type": "Wireless",
            }
        ],
        "cc": [],
        "text": text,
        "subject": None,
        "media": [
            {"url": url, "content_type": None, "sha256": None, "size": None}
            for url in record["media"]
        ],
        "webhook_url": record["webhook_url"],
        "webhook_failover_url": None,
        "encoding": "GSM-7" if segments is None or segments.encoding == GSM7 else "UCS-2",
        "parts": segments.segments if segments is not None else 1,
        "tags": [],
        "cost": None,
        "received_at": _iso(time.time()),
        "sent_at": None,
        "completed_at": None,
        "valid_until": None,
        "errors": [],
    }


def _describe(payload: Any) -> dict[str, Any]:
    fields = payload if isinstance(payload, dict) else {}

    def text(key: str) -> str | None:
        value = fields.get(key)
        return value if isinstance(value, str) else None

    media = fields.get("media_urls")
    webhook_url = text("webhook_url")
    return {
        "to": text("to"),
        "from": text("from"),
        "body": text("text"),
        "media": [url for url in media if isinstance(url, str)] if isinstance(media, list) else [],
        "webhook_url": webhook_url,
        "message_id": mid_in(webhook_url),
    }


def _iso(moment: float) -> str:
    """Telnyx's timestamps: ISO 8601 with milliseconds and an offset."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
