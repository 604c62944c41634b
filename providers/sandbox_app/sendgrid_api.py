"""SendGrid's v3 Mail Send endpoint as the sandbox serves it, and its signed Event Webhook."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import math
import secrets
import time
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from providers.sandbox_app.core import Fault, Sandbox
from providers.sandbox_app.sendgrid_activity import EmailActivity
from providers.signatures import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    sendgrid_sign,
)

__all__ = ["SendGridApi", "plausible_email"]

VENDOR: Final = "sendgrid"
_HELP: Final = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
_BOUNCE_REASON: Final = "550 5.1.1 The email account that you tried to reach does not exist."

Error = dict[str, Any]


def sendgrid_error(status: int, errors: list[Error], **headers: str) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers or None)


def _error(message: str, field: str | None = None, anchor: str | None = None) -> Error:
    return {"message": message, "field": field, "help": f"{_HELP}#{anchor}" if anchor else None}


class SendGridApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.activity = EmailActivity(sandbox)

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expected = self.sandbox.config.sendgrid_api_key
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), expected.encode()
        )

    async def mail_send(self, request: Request) -> Response:
        sandbox = self.sandbox
        config = sandbox.config.of(VENDOR)
        raw = await request.body()
        try:
            payload: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        record = sandbox.record("sendgrid", **_describe(payload))
        if config.outage:
            record["outcome"] = Fault.OUTAGE.value
            return sendgrid_error(503, [_error("Service Unavailable")])
        if not self._authorized(request):
            record["outcome"] = "unauthorized"
            return sendgrid_error(
                401,
                [_error("The provided authorization grant is invalid, expired, or revoked")],
            )

        fault = sandbox.draw_fault(config)
        if fault is Fault.RATE_LIMITED:
            record["outcome"] = fault.value
            reset = math.ceil(time.time() + config.retry_after)
            return sendgrid_error(
                429,
                [_error("too many requests")],
                **{
                    "Retry-After": str(math.ceil(config.retry_after)),
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                },
            )
        if fault is Fault.SERVER_ERROR:
            record["outcome"] = fault.value
            return sendgrid_error(500, [_error("Internal Server Error")])
        if fault is Fault.TIMEOUT:
            record["outcome"] = fault.value
            if not await sandbox.stall(request, config):
                return Response(status_code=504)  # nobody is listening any more
            record["delayed"] = True

        if not isinstance(payload, dict):
            record["outcome"] = "bad_request"
            return sendgrid_error(400, [_error("Bad Request", None, "message")])
        errors = self._validate(payload)
        if errors:
            invalid = any(str(error["field"] or "").endswith(".email") for error in errors)
            record["outcome"] = "invalid_recipient" if invalid else "bad_request"
            return sendgrid_error(400, errors)

        x_message_id = secrets.token_urlsafe(16)[:22]
        record["provider_id"] = x_message_id
        record["outcome"] = "accepted"
        sandbox.spawn(self._events(payload, x_message_id, self._activities(payload, x_message_id)))
        return Response(status_code=202, headers={"X-Message-Id": x_message_id})

    def _activities(self, payload: dict[str, Any], x_message_id: str) -> list[dict[str, Any]]:
        """One Email Activity record per recipient, in the order of the personalizations."""
        sender = str(payload["from"]["email"])
        subject = str(payload.get("subject") or "")
        recipients = [
            str(recipient["email"])
            for personalization in payload["personalizations"]
            for recipient in personalization["to"]
        ]
        return [
            self.activity.sent(x_message_id, sender, recipient, subject, serial)
            for serial, recipient in enumerate(recipients)
        ]

    def _validate(self, payload: dict[str, Any]) -> list[Error]:
        """The checks SendGrid makes that a well-behaved client can still fail."""
        errors: list[Error] = []
        personalizations = payload.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            errors.append(
                _error(
                    "The personalizations field is required and must have at least one "
                    "personalization.",
                    "personalizations",
                    "message.personalizations",
                )
            )
            personalizations = []
        invalid = self.sandbox.config.of(VENDOR).invalid_recipients
        for p_index, personalization in enumerate(personalizations):
            to = personalization.get("to") if isinstance(personalization, dict) else None
            if not isinstance(to, list) or not to:
                errors.append(
                    _error(
                        "The to array is required for all personalization objects, and must "
                        "have at least one email object with a valid email address.",
                        f"personalizations.{p_index}.to",
                        "message.personalizations.to",
                    )
                )
                continue
            for t_index, recipient in enumerate(to):
                email = recipient.get("email") if isinstance(recipient, dict) else None
                if not plausible_email(email) or str(email).strip().lower() in invalid:
                    errors.append(
                        _error(
                            "Does not contain a valid address.",
                            f"personalizations.{p_index}.to.{t_index}.email",
                            "message.personalizations.to",
                        )
                    )
        sender = payload.get("from")
        if not isinstance(sender, dict) or not plausible_email(sender.get("email")):
            errors.append(
                _error(
                    "The from email does not contain a valid address.", "from.email", "message.from"
                )
            )
        subject = payload.get("subject")
        if not isinstance(subject, str) or not subject:
            errors.append(
                _error(
                    "The subject is required. You can get around this requirement if you "
                    "use a template with a subject defined or if every personalization has "
                    "a subject defined.",
                    "subject",
                    "message.subject",
                )
            )
        errors.extend(_content_errors(payload.get("content")))
        errors.extend(_attachment_errors(payload.get("attachments")))
        return errors

    async def _events(
        self, payload: dict[str, Any], x_message_id: str, activities: list[dict[str, Any]]
    ) -> None:
        sandbox = self.sandbox
        config = sandbox.config.of(VENDOR)
        await asyncio.sleep(config.callback_delay)
        events: list[dict[str, Any]] = []
        now = int(time.time())
        serial = 0
        for personalization in payload["personalizations"]:
            custom_args = personalization.get("custom_args")
            # Custom arguments ride along as top-level fields of every event.
            extra = {
                str(key): str(value)
                for key, value in (custom_args if isinstance(custom_args, dict) else {}).items()
            }
            for recipient in personalization["to"]:
                email: str = recipient["email"]
                bounce = email.strip().lower() in config.bounce_recipients
                activity = activities[serial]
                sg_message_id = activity["msg_id"]
                serial += 1
                if bounce:
                    self.activity.bounced(activity, _BOUNCE_REASON)
                else:
                    self.activity.delivered(activity)
                common = {
                    **extra,
                    "email": email,
                    "timestamp": now,
                    "smtp-id": f"<{x_message_id}@sandbox.sendgrid.local>",
                    "sg_message_id": sg_message_id,
                }
                events.append({**common, "event": "processed", "sg_event_id": _event_id()})
                if bounce:
                    events.append(
                        {
                            **common,
                            "event": "bounce",
                            "sg_event_id": _event_id(),
                            "reason": _BOUNCE_REASON,
                            "status": "5.1.1",
                            "type": "bounce",
                            "bounce_classification": "Invalid Address",
                        }
                    )
                else:
                    events.append(
                        {
                            **common,
                            "event": "delivered",
                            "sg_event_id": _event_id(),
                            "response": "250 OK",
                        }
                    )
                    if email.strip().lower() in config.unsubscribed_recipients:
                        events.append(
                            {**common, "event": "unsubscribe", "sg_event_id": _event_id()}
                        )
        body = orjson.dumps(events)
        timestamp = str(int(time.time()))
        await sandbox.deliver(
            "sendgrid",
            config.event_webhook_url,
            summary={
                "provider_id": x_message_id,
                "events": [event["event"] for event in events],
                "message_ids": sorted({e.get("message_id") for e in events if "message_id" in e}),
            },
            content=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "SendGrid Event API",
                SENDGRID_SIGNATURE_HEADER: sendgrid_sign(config.signing_key, timestamp, body),
                SENDGRID_TIMESTAMP_HEADER: timestamp,
            },
        )


def _event_id() -> str:
    return secrets.token_urlsafe(16)


def plausible_email(value: object) -> bool:
    """Loosely an address: something, an @, a domain with a dot, no spaces."""
    if not isinstance(value, str):
        return False
    local, at, domain = value.strip().rpartition("@")
    return bool(at and local and "." in domain and " " not in value.strip())


def _content_errors(content: object) -> list[Error]:
    if content is None:
        return [
            _error(
                "Unless a valid template_id is provided, the content parameter is required.",
                "content",
                "message.content",
            )
        ]
    if not isinstance(content, list) or not content:
        return [
            _error(
                "The content value must be an array of at least one object.",
                "content",
                "message.content",
            )
        ]
    errors: list[Error] = []
    for index, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or not isinstance(part.get("type"), str)
            or not isinstance(part.get("value"), str)
            or not part["value"]
        ):
            errors.append(
                _error(
                    "The content value must be a string at least one character in length.",
                    f"content.{index}.value",
                    "message.content.value",
                )
            )
    types = [part.get("type") for part in content if isinstance(part, dict)]
    if "text/plain" in types and types[0] != "text/plain":
        errors.append(
            _error(
                "If present, text/plain content must be first, followed by any other content.",
                "content",
                "message.content.type",
            )
        )
    return errors


def _attachment_errors(attachments: object) -> list[Error]:
    if attachments is None:
        return []
    if not isinstance(attachments, list):
        return [
            _error("The attachments field must be an array.", "attachments", "message.attachments")
        ]
    errors: list[Error] = []
    for index, item in enumerate(attachments):
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
            errors.append(
                _error(
                    "The attachment filename parameter is required.",
                    f"attachments.{index}.filename",
                    "message.attachments.filename",
                )
            )
            continue
        if _decode(item.get("content")) is None:
            errors.append(
                _error(
                    "The attachment content must be base64 encoded.",
                    f"attachments.{index}.content",
                    "message.attachments.content",
                )
            )
    return errors


def _decode(content: object) -> bytes | None:
    if not isinstance(content, str):
        return None
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return None


def _describe(payload: object) -> dict[str, Any]:
    """The record of a Mail Send request, tolerant of anything a client might have sent."""
    if not isinstance(payload, dict):
        return {}
    recipients: list[str] = []
    message_id: str | None = None
    personalizations = payload.get("personalizations")
    for personalization in personalizations if isinstance(personalizations, list) else []:
        if not isinstance(personalization, dict):
            continue
        for recipient in personalization.get("to") or []:
            if isinstance(recipient, dict) and isinstance(recipient.get("email"), str):
                recipients.append(recipient["email"])
        custom_args = personalization.get("custom_args")
        if message_id is None and isinstance(custom_args, dict):
            found = custom_args.get("message_id")
            message_id = found if isinstance(found, str) else None
    sender = payload.get("from")
    parts = payload.get("content")
    by_type = {
        part.get("type"): part.get("value")
        for part in (parts if isinstance(parts, list) else [])
        if isinstance(part, dict)
    }
    attachments = []
    raw_attachments = payload.get("attachments")
    for item in raw_attachments if isinstance(raw_attachments, list) else []:
        if not isinstance(item, dict):
            continue
        content = _decode(item.get("content")) or b""
        attachments.append(
            {
                "filename": item.get("filename"),
                "type": item.get("type"),
                "size": len(content),
                # A digest, not the bytes: records are kept in memory, attachments can be big.
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )
    return {
        "to": recipients[0] if recipients else None,
        "recipients": recipients,
        "from": sender.get("email") if isinstance(sender, dict) else None,
        "subject": payload.get("subject"),
        "body": by_type.get("text/plain"),
        "html": by_type.get("text/html"),
        "attachments": attachments,
        "message_id": message_id,
    }
