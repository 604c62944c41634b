"""Mailgun's messages endpoint as the sandbox serves it, its Events API, and signed event webhooks.

``POST /v3/{domain}/messages`` (Basic auth ``api:<key>``, a urlencoded or multipart form)
answers ``{"id": "<...>", "message": "Queued. Thank you."}`` or Mailgun's ``{"message": ...}``
errors, with the same failure injection as the other vendors (``config.of("mailgun")``).
After the callback delay the message is delivered, fails permanently (a bounce recipient) or
fails temporarily and stays so (an undeliverable recipient: Mailgun still retrying); a delivered
message to an unsubscribed recipient is followed by its ``unsubscribed`` event. Each event is
posted on its own, signed, to ``mailgun_webhook_url``, and ``GET /v3/{domain}/events``
lists them by ``message-id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
from typing import Any, Final

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from providers.sandbox_app.core import Fault, Sandbox
from providers.sandbox_app.sendgrid_api import plausible_email
from providers.sandbox_app.twilio_api import basic_credentials
from providers.signatures import mailgun_signature

__all__ = ["MailgunApi"]

_BOUNCE: Final = "5.1.1 The email account that you tried to reach does not exist."
_DEFERRED: Final = "4.2.2 The email account that you tried to reach is over quota."


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers or None)


class MailgunApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def _refusal(self, request: Request) -> Response | None:
        """An outage, wrong credentials or another domain: Mailgun's answer; None if the
        request may go ahead."""
        config = self.sandbox.config
        if config.of("mailgun").outage:
            return _error(503, "Service Unavailable")
        credentials = basic_credentials(request)
        if credentials is None or not (
            hmac.compare_digest(credentials[0].encode(), b"api")
            & hmac.compare_digest(credentials[1].encode(), config.mailgun_api_key.encode())
        ):
            return PlainTextResponse("Forbidden", status_code=401)
        domain = request.path_params["domain"]
        if domain != config.mailgun_domain:
            return _error(404, f"Domain not found: {domain}")
        return None

    async def send_message(self, request: Request) -> Response:
        sandbox = self.sandbox
        fields, files = await _form(request)
        record = sandbox.record("mailgun", **_describe(fields, files))
        faults = sandbox.config.of("mailgun")
        refused = self._refusal(request)
        if refused is not None:
            record["outcome"] = {503: Fault.OUTAGE.value, 401: "unauthorized"}.get(
                refused.status_code, "not_found"
            )
            return refused

        fault = sandbox.draw_fault(faults)
        if fault is Fault.RATE_LIMITED:
            record["outcome"] = fault.value
            retry_after = str(math.ceil(faults.retry_after))
            return _error(429, "Too many requests", **{"Retry-After": retry_after})
        if fault is Fault.SERVER_ERROR:
            record["outcome"] = fault.value
            return _error(500, "Internal Server Error")
        if fault is Fault.TIMEOUT:
            record["outcome"] = fault.value
            if not await sandbox.stall(request, faults):
                return Response(status_code=504)  # nobody is listening any more
            record["delayed"] = True

        for name in ("from", "to"):
            if not fields.get(name):
                record["outcome"] = "bad_request"
                return _error(400, f"{name} parameter is missing")
        if not (fields.get("text") or fields.get("html")):
            record["outcome"] = "bad_request"
            return _error(
                400,
                "Need at least one of 'text', 'html', 'amp-html' or 'template' parameters "
                "specified",
            )
        to = fields["to"]
        if not plausible_email(to) or to.strip().lower() in faults.invalid_recipients:
            record["outcome"] = "invalid_recipient"
            return _error(400, "to parameter is not a valid address. please check documentation")

        domain = request.path_params["domain"]
        mailgun_id = (
            f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}.{secrets.token_hex(8)}@{domain}"
        )
        record["provider_id"] = mailgun_id
        record["outcome"] = "accepted"
        events: list[dict[str, Any]] = []
        sandbox.remember("mailgun", mailgun_id, {"items": events})
        events.append(_event("accepted", mailgun_id, fields))
        sandbox.spawn(self._progress(mailgun_id, fields, events))
        return JSONResponse({"id": f"<{mailgun_id}>", "message": "Queued. Thank you."})

    async def list_events(self, request: Request) -> Response:
        """``GET /v3/{domain}/events``: the events of the message named by ``message-id``."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        wanted = request.query_params.get("message-id", "")
        kept = self.sandbox.messages["mailgun"].get(wanted)
        items = list(kept["items"]) if kept is not None else []
        return JSONResponse({"items": items, "paging": {}})

    async def _progress(
        self, mailgun_id: str, fields: dict[str, str], events: list[dict[str, Any]]
    ) -> None:
        sandbox = self.sandbox
        config = sandbox.config
        await asyncio.sleep(config.of("mailgun").callback_delay)
        faults = config.of("mailgun")
        to = fields["to"].strip().lower()
        if to in faults.bounce_recipients:
            event = _event("failed", mailgun_id, fields, severity="permanent", reason="bounce")
            event["delivery-status"] = {"code": 550, "message": _BOUNCE, "description": ""}
        elif to in faults.undeliverable_recipients:
            event = _event("failed", mailgun_id, fields, severity="temporary", reason="generic")
            event["delivery-status"] = {"code": 452, "message": _DEFERRED, "description": ""}
        else:
            event = _event("delivered", mailgun_id, fields)
            event["delivery-status"] = {"code": 250, "message": "OK", "description": ""}
        posted = [event]
        if event["event"] == "delivered" and to in faults.unsubscribed_recipients:
            # The recipient used the message's unsubscribe link: a second event, posted on
            # its own as Mailgun posts every event.
            posted.append(_event("unsubscribed", mailgun_id, fields))
        for item in posted:
            events.append(item)
            await self._post(mailgun_id, fields, item)

    async def _post(self, mailgun_id: str, fields: dict[str, str], event: dict[str, Any]) -> None:
        sandbox = self.sandbox
        config = sandbox.config
        timestamp, token = str(int(time.time())), secrets.token_hex(25)
        body = orjson.dumps(
            {
                "signature": {
                    "timestamp": timestamp,
                    "token": token,
                    "signature": mailgun_signature(config.mailgun_signing_key, timestamp, token),
                },
                "event-data": event,
            }
        )
        await sandbox.deliver(
            "mailgun",
            config.mailgun_webhook_url,
            summary={"provider_id": mailgun_id, "event": event["event"], "to": fields["to"]},
            content=body,
            headers={"Content-Type": "application/json"},
        )


def _event(name: str, mailgun_id: str, fields: dict[str, str], **extra: Any) -> dict[str, Any]:
    """An event as Mailgun's webhooks and Events API show it (the fields we read, and a few
    more of its usual ones)."""
    variables = {key[2:]: value for key, value in fields.items() if key.startswith("v:")}
    recipient = fields["to"]
    return {
        "id": secrets.token_urlsafe(16),
        "event": name,
        "timestamp": time.time(),
        "log-level": "error" if name == "failed" else "info",
        "recipient": recipient,
        "recipient-domain": recipient.rpartition("@")[2],
        "envelope": {"sender": fields["from"], "targets": recipient, "transport": "smtp"},
        "message": {
            "headers": {
                "message-id": mailgun_id,
                "from": fields["from"],
                "to": recipient,
                "subject": fields.get("subject", ""),
            }
        },
        "user-variables": variables,
        "tags": [],
        **extra,
    }


async def _form(request: Request) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The text fields (first value of each) and the ``attachment`` files of a send."""
    fields: dict[str, str] = {}
    files: list[dict[str, Any]] = []
    try:
        form = await request.form()
    except Exception:  # python-multipart raises several types for bad input
        return fields, files
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                content = await value.read()
                files.append(
                    {
                        "filename": value.filename,
                        "type": value.content_type,
                        "size": len(content),
                        # A digest, not the bytes: records are kept in memory.
                        "sha256": hashlib.sha256(content).hexdigest(),
                    }
                )
            else:
                fields.setdefault(name, value)
    finally:
        await form.close()
    return fields, files


def _describe(fields: dict[str, str], files: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "to": fields.get("to"),
        "from": fields.get("from"),
        "subject": fields.get("subject"),
        "body": fields.get("text"),
        "html": fields.get("html"),
        "attachments": files,
        "message_id": fields.get("v:message_id"),
    }
