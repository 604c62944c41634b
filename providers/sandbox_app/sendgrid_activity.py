"""SendGrid's Email Activity API as the sandbox serves it: what became of each message sent.

``GET /v3/messages?query=...&limit=N`` filters messages (``{"messages": [...]}``, each with
``msg_id``, ``from_email``, ``to_email``, ``subject``, ``status``, ``opens_count``,
``clicks_count`` and ``last_event_time``), and ``GET /v3/messages/{msg_id}`` shows one with
its events, in the shapes SendGrid documents. A ``msg_id`` is the send's X-Message-Id, a dot
and a per-recipient suffix; ``status`` is ``processed`` until the message is ``delivered`` or
``not_delivered``. The query language is the part of SendGrid's a client needs to find its
messages: clauses joined by ``AND``, each ``field="value"`` (or ``'value'``) or
``msg_id LIKE 'prefix%'``, on ``msg_id``, ``to_email``, ``from_email``, ``subject`` and
``status``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from providers.sandbox_app.core import Sandbox

__all__ = ["EmailActivity"]

_FIELDS: Final = frozenset({"msg_id", "to_email", "from_email", "subject", "status"})
_CLAUSE: Final = re.compile(
    r"\s*(?P<field>[a-z_]+)\s*(?P<op>=|LIKE)\s*(?P<q>[\"'])(?P<value>[^\"']*)(?P=q)\s*",
    re.IGNORECASE,
)
_AND: Final = re.compile(r"\s+AND\s+", re.IGNORECASE)
_SUMMARY: Final = (
    "from_email",
    "msg_id",
    "subject",
    "to_email",
    "status",
    "opens_count",
    "clicks_count",
    "last_event_time",
)


def _errors(status: int, message: str, field: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"message": message}
    if field is not None:
        error["field"] = field
    return JSONResponse({"errors": [error]}, status_code=status)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EmailActivity:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    # --- what the Mail Send and Event Webhook side records --------------------------------

    def sent(
        self, x_message_id: str, sender: str, recipient: str, subject: str, serial: int
    ) -> dict[str, Any]:
        """The activity record of one recipient of a send, ``processed`` for now."""
        msg_id = f"{x_message_id}.filterdrecv-sandbox-1-{secrets.token_hex(6).upper()}-{serial}.0"
        now = _now()
        record: dict[str, Any] = {
            "from_email": sender,
            "msg_id": msg_id,
            "subject": subject,
            "to_email": recipient,
            "status": "processed",
            "opens_count": 0,
            "clicks_count": 0,
            "last_event_time": now,
            "template_id": "",
            "teammate": "",
            "api_key_id": "sandbox",
            "events": [{"event_name": "processed", "processed": now}],
            "originating_ip": "127.0.0.1",
            "categories": [],
            "unique_args": "{}",
            "outbound_ip": "127.0.0.1",
            "outbound_ip_type": "shared",
        }
        self.sandbox.remember("sendgrid", msg_id, record)
        return record

    @staticmethod
    def delivered(record: dict[str, Any]) -> None:
        now = _now()
        record.update(status="delivered", last_event_time=now)
        record["events"].append({"event_name": "delivered", "processed": now})

    @staticmethod
    def bounced(record: dict[str, Any], reason: str) -> None:
        now = _now()
        record.update(status="not_delivered", last_event_time=now)
        record["events"].append(
            {"event_name": "bounced", "processed": now, "reason": reason, "bounce_type": "hard"}
        )

    # --- the API --------------------------------------------------------------------------

    async def list_messages(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        query = request.query_params.get("query")
        if not query:
            return _errors(400, "query is required", "query")
        try:
            limit = int(request.query_params.get("limit", "10"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return _errors(400, "limit must be between 1 and 1000", "limit")
        try:
            matches = _matcher(query)
        except ValueError as exc:
            return _errors(400, f"invalid syntax: {exc}")
        found = [
            {key: record[key] for key in _SUMMARY}
            for record in reversed(self.sandbox.messages["sendgrid"].values())
            if matches(record)
        ]
        return JSONResponse({"messages": found[:limit]})

    async def fetch_message(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        record = self.sandbox.messages["sendgrid"].get(request.path_params["msg_id"])
        if record is None:
            return _errors(404, "not found", "message_id")
        return JSONResponse(record)

    def _refusal(self, request: Request) -> Response | None:
        config = self.sandbox.config.of("sendgrid")
        if config.outage:
            return _errors(503, "Service Unavailable")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), config.sendgrid_api_key.encode()
        ):
            return _errors(401, "authorization required")
        return None


def _matcher(query: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate over activity records for ``query``; ValueError for what it cannot read."""
    tests: list[tuple[str, str, str]] = []
    for clause in _AND.split(query.strip()):
        found = _CLAUSE.fullmatch(clause)
        if found is None:
            raise ValueError(f"cannot read {clause.strip()[:80]!r}")
        field, op, value = found["field"].lower(), found["op"].upper(), found["value"]
        if field not in _FIELDS:
            raise ValueError(f"'{field}' is not a known field")
        if op == "LIKE" and not value.endswith("%"):
            raise ValueError("LIKE takes a prefix ending in %")
        tests.append((field, op, value))

    def matches(record: dict[str, Any]) -> bool:
        for field, op, value in tests:
            have = str(record.get(field, ""))
            if op == "LIKE" and not have.startswith(value[:-1]):
                return False
            if op == "=" and have != value:
                return False
        return True

    return matches
