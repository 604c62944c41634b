"""Validation of a send request into the one canonical message the rest of the system stores.

Problems are collected per field rather than raised, because the API reports every bad field
of a request at once, keyed by the names the GraphQL input uses.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .addresses import (
    AddressError,
    conversation_key,
    is_http_url,
    normalize_email,
    normalize_number,
    normalize_phone,
)
from .channels import Channel
from .segments import count_segments

if TYPE_CHECKING:
    from .opt_outs import AutoReply
    from .quiet_hours import QuietDeferral

_T = TypeVar("_T")


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str


@dataclass(frozen=True)
class SendRequest:
    channel: Channel
    from_: str
    to: str
    body: str | None = None
    attachments: tuple[str, ...] | None = None
    idempotency_key: str | None = None
    send_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    #: A transactional message (a one-time code): sent inside the recipient's quiet hours too.
    bypass_quiet_hours: bool = False
    #: Set only by the automatic answer to a recipient's keyword, never from API input.
    auto_reply: AutoReply | None = None


@dataclass(frozen=True)
class NormalizedMessage:
    channel: Channel
    sender: str
    recipient: str
    body: str | None
    attachments: tuple[str, ...]
    idempotency_key: str | None
    send_at: datetime | None
    metadata: dict[str, Any] | None
    segments: int | None
    encoding: str | None
    bypass_quiet_hours: bool = False
    #: Set at accept when the message is due inside its recipient's quiet hours: not part of
    #: the input (the same input is held or not depending on the hour it comes in).
    deferral: QuietDeferral | None = None
    auto_reply: AutoReply | None = None

    @property
    def suppression_exempt(self) -> bool:
        """Sent even to a suppressed recipient: only the answer to their own keyword is."""
        return self.auto_reply is not None

    def fingerprint(self) -> str:
        # The idempotency key is what a fingerprint is compared under, so it cannot be part of it.
        canonical: dict[str, Any] = {
            "channel": str(self.channel),
            "sender": self.sender,
            "recipient": self.recipient,
            "body": self.body,
            "attachments": list(self.attachments),
            "send_at": self.send_at,
            "metadata": self.metadata,
            "segments": self.segments,
            "encoding": self.encoding,
        }
        if self.bypass_quiet_hours:
            # Only when set: the fingerprints of keys claimed before the flag existed still match.
            canonical["bypass_quiet_hours"] = True
        if self.auto_reply is not None:
            canonical["auto_reply"] = self.auto_reply.detail()
        text = json.dumps(
            canonical,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
            default=_json_default,
        )
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    @property
    def participants(self) -> tuple[str, str]:
        return conversation_key(self.sender, self.recipient)


@dataclass(frozen=True)
class Limits:
    sms_body_max: int = 1600
    email_body_max: int = 262144
    attachments_max: int = 10
    idempotency_key_max: int = 255
    metadata_max_bytes: int = 16384
    metadata_max_depth: int = 32
    schedule_horizon: timedelta = timedelta(days=365)


DEFAULT_LIMITS = Limits()


class _Invalid(Exception):
    """Carries one field's problem out of a check; never escapes this module."""


def validate_send(
    req: SendRequest,
    *,
    now: datetime,
    default_region: str = "US",
    limits: Limits = DEFAULT_LIMITS,
) -> NormalizedMessage | list[FieldProblem]:
    problems: list[FieldProblem] = []

    def check(field: str, run: Callable[[], _T]) -> _T | None:
        try:
            return run()
        except _Invalid as exc:
            problems.append(FieldProblem(field, str(exc)))
            return None

    channel = check("channel", lambda: _channel(req.channel))
    sender: str | None = None
    recipient: str | None = None
    body: str | None = None
    attachments: tuple[str, ...] | None = None
    if channel is not None:
        sender = check("from", lambda: _address(channel, req.from_, default_region, ours=True))
        recipient = check("to", lambda: _address(channel, req.to, default_region))
        if sender is not None and sender == recipient:
            problems.append(FieldProblem("to", "must be different from the sender"))
        body = check("body", lambda: _body(channel, req.body, limits))
        attachments = check("attachments", lambda: _attachments(channel, req.attachments, limits))
    key = check("idempotencyKey", lambda: _idempotency_key(req.idempotency_key, limits))
    send_at = check("sendAt", lambda: _send_at(req.send_at, now, limits))
    metadata = check("metadata", lambda: _metadata(req.metadata, limits))

    if problems or channel is None or sender is None or recipient is None:
        return problems
    segments: int | None = None
    encoding: str | None = None
    if channel in (Channel.SMS, Channel.MMS):
        info = count_segments(body or "")
        segments, encoding = info.segments, info.encoding
    return NormalizedMessage(
        channel=channel,
        sender=sender,
        recipient=recipient,
        body=body,
        attachments=attachments or (),
        idempotency_key=key,
        send_at=send_at,
        metadata=metadata,
        segments=segments,
        encoding=encoding,
        bypass_quiet_hours=bool(req.bypass_quiet_hours),
        auto_reply=req.auto_reply,
    )


def _channel(raw: str) -> Channel:
    try:
        return Channel(raw)
    except (ValueError, TypeError):
        raise _Invalid(f"must be one of {', '.join(Channel)}") from None


def _address(channel: Channel, raw: str, default_region: str, *, ours: bool = False) -> str:
    """``ours``: the sender, which may also be a short code."""
    try:
        if channel is Channel.EMAIL:
            return normalize_email(raw)
        if ours:
            return normalize_number(raw, default_region)
        return normalize_phone(raw, default_region)
    except AddressError as exc:
        raise _Invalid(str(exc)) from None


def _body(channel: Channel, raw: object, limits: Limits) -> str | None:
    if raw is None or raw == "":
        if channel is Channel.MMS:
            return None
        raise _Invalid(f"is required for {channel}")
    if not isinstance(raw, str):
        raise _Invalid("must be a string")
    problem = text_problem(raw)
    if problem is not None:
        raise _Invalid(problem)
    if channel is not Channel.MMS and not raw.strip():
        raise _Invalid(f"must not be blank for {channel}")
    maximum = limits.email_body_max if channel is Channel.EMAIL else limits.sms_body_max
    if len(raw) > maximum:
        raise _Invalid(f"must be at most {maximum} characters for {channel}")
    return raw


def _attachments(channel: Channel, raw: object, limits: Limits) -> tuple[str, ...]:
    if raw is None:
        raw = ()
    if not isinstance(raw, list | tuple):
        raise _Invalid("must be a list of URLs")
    if raw and channel is Channel.SMS:
        raise _Invalid("are not supported for SMS; send as MMS instead")
    if not raw and channel is Channel.MMS:
        raise _Invalid("MMS needs at least one attachment")
    if len(raw) > limits.attachments_max:
        raise _Invalid(f"must be at most {limits.attachments_max}")
    for index, url in enumerate(raw):
        if not is_http_url(url):
            raise _Invalid(f"attachments[{index}] is not a valid http(s) URL")
    return tuple(raw)


def _idempotency_key(raw: object, limits: Limits) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _Invalid("must be a string")
    key = raw.strip()
    if not key:
        raise _Invalid("must not be blank")
    if len(key) > limits.idempotency_key_max:
        raise _Invalid(f"must be at most {limits.idempotency_key_max} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key):
        raise _Invalid("must not contain control characters")
    return key


def _send_at(raw: object, now: datetime, limits: Limits) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, datetime):
        raise _Invalid("must be a date-time")
    if raw.utcoffset() is None:
        raise _Invalid("must include a timezone offset")
    # A naive `now` is the caller's clock, not user input; reading it as UTC beats crashing.
    if now.utcoffset() is None:
        now = now.replace(tzinfo=UTC)
    ahead = raw - now
    if ahead > limits.schedule_horizon:
        raise _Invalid(f"must be at most {_describe(limits.schedule_horizon)} in the future")
    if ahead <= timedelta(0):
        return None
    try:
        return raw.astimezone(UTC)
    except OverflowError:
        raise _Invalid("is out of range") from None


def _metadata(raw: object, limits: Limits) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _Invalid("must be a JSON object")
    try:
        text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError):
        raise _Invalid("must contain only JSON values") from None
    if size > limits.metadata_max_bytes:
        raise _Invalid(f"must be at most {limits.metadata_max_bytes} bytes as JSON")
    # Bounded so every JSON encoder on the way (storage, responses, live events) can take it.
    if _depth(raw) > limits.metadata_max_depth:
        raise _Invalid(f"must be nested at most {limits.metadata_max_depth} levels deep")
    # PostgreSQL's jsonb cannot hold U+0000.
    if _has_nul(raw):
        raise _Invalid("must not contain NUL characters")
    # json.dumps quietly turns 1, True and None keys into strings, which could merge keys.
    if not _keys_are_strings(raw):
        raise _Invalid("object keys must be strings")
    # Round-tripping yields a private, plain-JSON copy the caller can no longer mutate.
    copy: dict[str, Any] = json.loads(text)
    return copy


def _depth(value: object) -> int:
    """Nesting depth of objects and arrays (a flat object is 1)."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            pending.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            pending.extend((v, level + 1) for v in item)
    return deepest


def _has_nul(value: object) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _keys_are_strings(value: object) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return True


def text_problem(text: str) -> str | None:
    """What keeps ``text`` from being stored as text, if anything."""
    # NUL and lone surrogates cannot be stored as text in PostgreSQL or encoded as UTF-8.
    if "\x00" in text:
        return "must not contain NUL characters"
    if _has_lone_surrogate(text):
        return "must be valid Unicode text"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(text: str) -> bool:
    # ASCII, the common case, is answered without reading the text again.
    return not text.isascii() and _SURROGATE.search(text) is not None


def _describe(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days} days"
    return str(span)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        aware = value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
