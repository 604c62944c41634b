"""Twilio's Messages resource as the sandbox serves it, and its signed status callbacks."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.domain.segments import count_segments
from providers.sandbox_app.core import Fault, Sandbox, mid_in
from providers.signatures import TWILIO_SIGNATURE_HEADER, twilio_signature

__all__ = ["Answer", "TwilioApi", "basic_credentials"]

VENDOR: Final = "twilio"
API_VERSION: Final = "2010-04-01"
_ERRORS_URL: Final = "https://www.twilio.com/docs/errors/"
_FORM: Final = "application/x-www-form-urlencoded"
# The path Starlette routes to create_message: "/2010-04-01/Accounts/{account_sid}/Messages.json".
_MESSAGES_PATH: Final = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/Messages\.json")
#: The errors the sandbox fails a message with after taking it: a handset out of reach, and
#: a queue overflow (the sender was sent faster than its throughput; nothing was sent).
_UNREACHABLE: Final = (30003, "Unreachable destination handset")
_QUEUE_OVERFLOW: Final = (30001, "Queue overflow")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the Messages resource answers, sent as a Starlette response or by :func:`send_raw`
    (the same status, headers and bytes either way)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    json: bool = True

    def response(self) -> Response:
        return Response(
            self.body,
            status_code=self.status,
            headers=self.headers or None,
            media_type="application/json" if self.json else None,
        )

    async def send_raw(self, send: Send) -> None:
        """Send as plain ASGI messages, headers in the order Starlette's Response gives them."""
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()
        ]
        headers.append((b"content-length", str(len(self.body)).encode("latin-1")))
        if self.json:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def twilio_error(status: int, code: int, message: str, **headers: str) -> Answer:
    """Twilio's REST error body: code, message, more_info, status."""
    body = {"code": code, "message": message, "more_info": f"{_ERRORS_URL}{code}", "status": status}
    return Answer(status, orjson.dumps(body), headers)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class TwilioApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def _authorized(self, request: Request) -> bool:
        credentials = basic_credentials(request)
        if credentials is None:
            return False
        config = self.sandbox.config
        user_ok = hmac.compare_digest(credentials[0].encode(), config.twilio_account_sid.encode())
        token_ok = hmac.compare_digest(credentials[1].encode(), config.twilio_auth_token.encode())
        return user_ok and token_ok

    async def create_message(self, request: Request) -> Response:
        """The Starlette route (the sandbox mounted in the gateway, and any other form)."""
        form = await _form(request)
        answer = await self.answer(request, request.path_params["account_sid"], form)
        return answer.response()

    async def answer(self, request: Request, account_sid: str, form: FormData) -> Answer:
        """Create a message from a decoded form: Twilio's answer, callbacks scheduled."""
        sandbox = self.sandbox
        config = sandbox.config.of(VENDOR)
        record = sandbox.record(VENDOR, **_describe(form))
        # A provider that is down answers nothing else, not even an authentication error.
        if config.outage:
            record["outcome"] = Fault.OUTAGE.value
            return twilio_error(503, 20503, "Service Unavailable")
        if not self._authorized(request):
            record["outcome"] = "unauthorized"
            return twilio_error(401, 20003, "Authenticate")
        if account_sid != config.twilio_account_sid:
            record["outcome"] = "not_found"
            return twilio_error(
                404, 20404, f"The requested resource /Accounts/{account_sid} was not found"
            )

        fault = sandbox.draw_fault(config)
        if fault is Fault.RATE_LIMITED:
            record["outcome"] = fault.value
            return twilio_error(
                429,
                20429,
                "Too Many Requests",
                **{"Retry-After": str(math.ceil(config.retry_after))},
            )
        if fault is Fault.SERVER_ERROR:
            record["outcome"] = fault.value
            return twilio_error(500, 20500, "Internal Server Error")
        if fault is Fault.TIMEOUT:
            record["outcome"] = fault.value
            if not await sandbox.stall(request, config):
                return Answer(504, json=False)  # nobody is listening any more
            record["delayed"] = True

        to, sender = record["to"], record["from"]
        if not to:
            record["outcome"] = "bad_request"
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not sender:
            record["outcome"] = "bad_request"
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not record["body"] and not record["media"]:
            record["outcome"] = "bad_request"
            return twilio_error(400, 21602, "Message body is required.")
        if to.strip().lower() in config.invalid_recipients:
            record["outcome"] = "invalid_recipient"
            return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if to.strip().lower() in config.unsubscribed_recipients:
            record["outcome"] = "unsubscribed_recipient"
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")

        sid = "SM" + secrets.token_hex(16)
        record["provider_id"] = sid
        record["outcome"] = "accepted"
        # Our message id when the gateway sent it (its callback URL names it), else what
        # the message says: either way its retry is the same message.
        overflow = to.strip().lower() in config.queue_overflow_recipients and (
            sandbox.overflow_once(record["message_id"] or f"{sender}>{to}:{record['body']}")
        )
        record["queue_overflow"] = overflow
        resource = self._resource(sid, record)
        answer = Answer(201, orjson.dumps(resource))
        sandbox.remember("twilio", sid, resource)
        callback_url = form.get("StatusCallback")
        sandbox.spawn(
            self._progress(
                resource, callback_url if isinstance(callback_url, str) else None, overflow
            )
        )
        return answer

    async def fetch_message(self, request: Request) -> Response:
        """``GET .../Messages/{Sid}.json``: the Message resource as it is now."""
        account_sid, sid = request.path_params["account_sid"], request.path_params["sid"]
        refused = self._refusal(request, account_sid)
        if refused is not None:
            return refused.response()
        resource = self.sandbox.messages["twilio"].get(sid)
        if resource is None:
            return twilio_error(
                404,
                20404,
                f"The requested resource /{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
                ".json was not found",
            ).response()
        return Answer(200, orjson.dumps(resource)).response()

    async def list_messages(self, request: Request) -> Response:
        """``GET .../Messages.json``: one page of messages, newest first, filtered by ``To``
        and ``From``, paged by ``PageSize`` and ``Page`` as Twilio's list resources are."""
        account_sid = request.path_params["account_sid"]
        refused = self._refusal(request, account_sid)
        if refused is not None:
            return refused.response()
        params = request.query_params
        try:
            size = min(int(params.get("PageSize", "50")), 1000)
            page = int(params.get("Page", "0"))
        except ValueError:
            size = page = -1
        if size < 1 or page < 0:
            return twilio_error(400, 20001, "Invalid paging parameters").response()
        wanted = {key: params[key] for key in ("To", "From") if key in params}
        found = [
            resource
            for resource in reversed(self.sandbox.messages["twilio"].values())
            if all(resource.get(key.lower()) == value for key, value in wanted.items())
        ]
        start = page * size
        chosen = found[start : start + size]
        path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"

        def uri(number: int) -> str:
            return f"{path}?{urlencode({**wanted, 'PageSize': size, 'Page': number})}"

        body = {
            "end": start + len(chosen) - 1 if chosen else start,
            "first_page_uri": uri(0),
            "messages": chosen,
            "next_page_uri": uri(page + 1) if start + size < len(found) else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": uri(page),
        }
        return Answer(200, orjson.dumps(body)).response()

    def _refusal(self, request: Request, account_sid: str) -> Answer | None:
        """What a read of the Messages resource is refused with, as Twilio would; None if
        it may go ahead."""
        config = self.sandbox.config.of(VENDOR)
        if config.outage:
            return twilio_error(503, 20503, "Service Unavailable")
        if not self._authorized(request):
            return twilio_error(401, 20003, "Authenticate")
        if account_sid != config.twilio_account_sid:
            return twilio_error(
                404, 20404, f"The requested resource /Accounts/{account_sid} was not found"
            )
        return None

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """``app`` with the Messages resource's URL-encoded POSTs (the API's hot path, hundreds a
        second in a benchmark) answered before the router and middleware: the same
        :meth:`answer`, without the per-request cost of the general stack. Everything else,
        other content types included, goes to ``app``."""

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["method"] == "POST":
                match = _MESSAGES_PATH.fullmatch(scope["path"])
                if match is not None:
                    request = Request(scope, receive)
                    if request.headers.get("content-type", "").startswith(_FORM):
                        form = _decode_form(await request.body())
                        answer = await self.answer(request, match.group(1), form)
                        await answer.send_raw(send)
                        return
            await app(scope, receive, send)

        return handle

    def _resource(self, sid: str, record: dict[str, Any]) -> dict[str, Any]:
        account_sid = self.sandbox.config.twilio_account_sid
        now = _rfc2822(int(time.time()))
        body: str = record["body"] or ""
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
        return {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": record["from"],
            "messaging_service_sid": None,
            # Twilio sends these counts as strings.
            "num_media": str(len(record["media"])),
            "num_segments": str(count_segments(body).segments if body else 1),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": record["to"],
            "uri": f"{uri}.json",
        }

    async def _progress(
        self, resource: dict[str, Any], url: str | None, overflow: bool = False
    ) -> None:
        """Move the message along after the callback delay, as a lookup then shows it, and
        report each step to its StatusCallback, if it has one. ``overflow``: failed unsent
        for queue overflow (30001) instead."""
        sandbox = self.sandbox
        config = sandbox.config.of(VENDOR)
        await asyncio.sleep(config.callback_delay)
        sid, to, sender = resource["sid"], resource["to"], resource["from"]
        undeliverable = to.strip().lower() in config.undeliverable_recipients
        steps: tuple[tuple[str, tuple[int, str] | None], ...] = (
            (("failed", _QUEUE_OVERFLOW),)
            if overflow
            else (
                ("sent", None),
                ("undelivered", _UNREACHABLE) if undeliverable else ("delivered", None),
            )
        )
        for status, error in steps:
            now = _rfc2822(int(time.time()))
            resource.update(status=status, date_updated=now)
            if status == "sent":
                resource["date_sent"] = now
            if error is not None:
                resource.update(error_code=error[0], error_message=error[1])
            if not url:
                continue
            params = {
                "AccountSid": config.twilio_account_sid,
                "ApiVersion": API_VERSION,
                "From": sender,
                "MessageSid": sid,
                "MessageStatus": status,
                "SmsSid": sid,
                "SmsStatus": status,
                "To": to,
            }
            if error is not None:
                params["ErrorCode"] = str(error[0])
            # Signed over the exact URL we POST to, query string included, as Twilio does.
            signature = twilio_signature(config.twilio_auth_token, url, params)
            await sandbox.deliver(
                "twilio",
                url,
                summary={"provider_id": sid, "status": status, "to": to},
                content=urlencode(params).encode(),
                headers={"Content-Type": _FORM, TWILIO_SIGNATURE_HEADER: signature},
            )


async def _form(request: Request) -> FormData:
    """The request's form. Twilio's API takes only URL-encoded forms, which are decoded here
    directly: the general (multipart-capable) parser cost more than the rest of the request."""
    if request.headers.get("content-type", "").startswith(_FORM):
        return _decode_form(await request.body())
    return await request.form()


@lru_cache(maxsize=2)
def _rfc2822(second: int) -> str:
    """Twilio's date format, e.g. ``Fri, 27 Nov 2026 10:33:05 +0000``: whole seconds, so the
    same string serves every message of that second."""
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _decode_form(body: bytes) -> FormData:
    text = body.decode("utf-8", errors="replace")
    pairs: list[tuple[str, str | UploadFile]] = list(parse_qsl(text, keep_blank_values=True))
    return FormData(pairs)


def _describe(form: FormData) -> dict[str, Any]:
    def text(key: str) -> str | None:
        value = form.get(key)
        return value if isinstance(value, str) else None

    callback = text("StatusCallback")
    return {
        "to": text("To"),
        "from": text("From"),
        "body": text("Body"),
        "media": [item for item in form.getlist("MediaUrl") if isinstance(item, str)],
        "status_callback": callback,
        "message_id": mid_in(callback),
    }
