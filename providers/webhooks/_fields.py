"""Field checks shared by the webhook parsers.

Every helper here raises nothing but PayloadError. Messages name the field and never echo its
value: values can be personal data, or megabytes long, and the message ends up in a response.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID

import orjson

from gateway.domain.addresses import is_http_url, normalize_email, normalize_number, normalize_phone
from gateway.domain.channels import Channel
from gateway.domain.messages import DEFAULT_LIMITS
from gateway.domain.reports import InboundMessage

from .records import PayloadError

# messages.provider_message_id is VARCHAR(128); a longer id could never be matched later.
ID_MAX: Final = 128
# The domain's outbound MMS limit is 10; inbound is what carriers and senders chose, so we
# allow more rather than reject a real message, but still bound the work per payload.
ATTACHMENTS_MAX: Final = 20
# Descriptions and detail values are for people reading an audit trail, not for storage of
# the provider's full text: bounded so one chatty event cannot bloat a row.
DETAIL_TEXT_MAX: Final = 1000
# The outbound e-mail limit: a body we could not send we do not promise to store either.
EMAIL_BODY_MAX: Final = DEFAULT_LIMITS.email_body_max
# Subjects are metadata, not content: an overlong one is cut rather than costing the message.
SUBJECT_MAX: Final = 1000

# Printable ASCII without spaces: every provider id we know fits, and such an id can be put in
# a dedupe key or a log line without quoting.
_IDENTIFIER = re.compile(rf"[\x21-\x7e]{{1,{ID_MAX}}}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
# RFC 5321 caps a mailbox at 254 octets; anything much longer is not worth parsing.
_EMAIL_INPUT_MAX = 320
# Header-style values ("Name <a@b.c>, ..."): room for a few display names, bounded parse work.
_MAILBOX_LIST_MAX = 4096
_TIMESTAMP_MAX = 64


def get_str(source: Mapping[str, Any], name: str) -> str | None:
    """An optional field: None when absent, refused when present but not text."""
    value = source.get(name)
    if value is None or isinstance(value, str):
        return value
    raise PayloadError(f"{name} must be a string")


def require_str(source: Mapping[str, Any], name: str) -> str:
    """A required field; an empty string counts as missing, as it does in a form."""
    value = get_str(source, name)
    if not value:
        raise PayloadError(f"{name} is required")
    return value


def identifier(value: str, name: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise PayloadError(
            f"{name} must be 1 to {ID_MAX} printable ASCII characters without spaces"
        )
    return value


def our_message_id(value: object) -> UUID | None:
    """Our message id echoed back by the provider, or None when absent or not ours.

    Not an error when malformed: the report can still be matched by the provider's id, and
    refusing it would make the provider retry a payload that can never get better.
    """
    if isinstance(value, str) and _HEX32.fullmatch(value):
        return UUID(hex=value)
    return None


def text(value: str, name: str, max_chars: int) -> str:
    """Message text kept verbatim, so anything we could not store is refused, not altered."""
    if len(value) > max_chars:
        raise PayloadError(f"{name} must be at most {max_chars} characters")
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8.
    if "\x00" in value:
        raise PayloadError(f"{name} must not contain NUL characters")
    if _has_lone_surrogate(value):
        raise PayloadError(f"{name} must be valid Unicode text")
    return value


def phone(value: str, name: str, *, ours: bool = False) -> str:
    """``ours``: a number of ours (an inbound message's recipient), which may be a short code."""
    # Twilio writes other channels' addresses as "whatsapp:+1...", "rcs:...", "messenger:...".
    # phonenumbers would happily read the digits out of them and turn a WhatsApp chat into an
    # SMS conversation, so any scheme but tel: is refused.
    scheme, colon, _ = value.partition(":")
    if colon and scheme.strip().lower() != "tel":
        raise PayloadError(f"{name} is not a phone number; only SMS and MMS are supported")
    try:
        return normalize_number(value) if ours else normalize_phone(value)
    except ValueError as exc:
        # AddressError texts are fixed sentences about the number, never the number itself.
        raise PayloadError(f"{name} is not usable: {exc}") from None


def email(value: str, name: str) -> str:
    if len(value) > _EMAIL_INPUT_MAX:
        raise PayloadError(f"{name} is not a valid e-mail address")
    try:
        return normalize_email(value)
    except ValueError:
        # email-validator's reasons quote parts of the address, so they stay out of the message.
        raise PayloadError(f"{name} is not a valid e-mail address") from None


def first_mailbox(value: str, name: str) -> str:
    """The first address of a header-style list such as ``Jane <jane@x.org>, bob@y.org``."""
    if len(value) > _MAILBOX_LIST_MAX:
        raise PayloadError(f"{name} must be at most {_MAILBOX_LIST_MAX} characters")
    if "\x00" in value or _has_lone_surrogate(value):
        raise PayloadError(f"{name} is not a valid e-mail address")
    try:
        pairs = getaddresses([value])
    except (ValueError, TypeError, IndexError):
        raise PayloadError(f"{name} is not a valid e-mail address") from None
    for _display_name, address in pairs:
        if address:
            return email(address, name)
    raise PayloadError(f"{name} has no e-mail address")


def http_urls(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise PayloadError(f"{name} must be a list of URLs or null")
    if len(value) > ATTACHMENTS_MAX:
        raise PayloadError(f"{name} must have at most {ATTACHMENTS_MAX} entries")
    for index, url in enumerate(value):
        if not isinstance(url, str) or not is_http_url(url):
            raise PayloadError(f"{name}[{index}] is not a valid http(s) URL")
    return tuple(value)


def timestamp(value: object, name: str) -> datetime | None:
    """ISO 8601 / RFC 3339 date-time, in UTC; one without an offset is read as UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be an ISO 8601 date-time string")
    stripped = value.strip()
    # A bare date would silently become midnight, which is a guess, not the sender's time.
    if len(stripped) > _TIMESTAMP_MAX or not any(sep in stripped for sep in "Tt "):
        raise PayloadError(f"{name} must be an ISO 8601 date-time with a time of day")
    # fromisoformat in 3.11 takes RFC 3339 except the lower-case "t" and "z" it allows.
    normalized = stripped.replace("t", "T").replace("z", "Z")
    try:
        parsed = datetime.fromisoformat(normalized)
    except ValueError:
        raise PayloadError(f"{name} must be an ISO 8601 date-time") from None
    if parsed.utcoffset() is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise PayloadError(f"{name} is out of range") from None


def load_json(body: object, max_bytes: int) -> Any:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise PayloadError("body must be bytes")
    if len(body) > max_bytes:
        raise PayloadError(f"body must be at most {max_bytes} bytes")
    if not body:
        raise PayloadError("body is empty; expected JSON")
    try:
        # orjson refuses what we could not store anyway: invalid UTF-8, lone surrogates, NaN
        # and infinities, nesting deeper than 1024.
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not valid JSON: {exc.msg}") from None


def inbound_email(
    form: Mapping[str, str],
    provider: str,
    *,
    sender: str,
    recipient: str,
    body: str | None,
    header: Callable[[str], str | None],
) -> InboundMessage:
    """An inbound e-mail the vendor parsed into ``form``, ``header`` giving the value of one of
    its headers by lower-case name. Attachments are uploaded files, not URLs, so they are not
    part of the message."""
    return InboundMessage(
        channel=Channel.EMAIL,
        sender=sender,
        recipient=recipient,
        body=body,
        attachments=(),
        provider=provider,
        provider_message_id=mail_message_id(header("message-id"), form),
        sent_at=mail_date(header("date")),
        subject=mail_subject(form),
    )


def mail_body(form: Mapping[str, str], text_field: str, html_field: str) -> str | None:
    """An inbound e-mail's content from the vendor's parsed fields: the text part, else the
    HTML part. Mailers that write HTML often add a text part holding only a line break; the
    HTML is then the real content."""
    text_part = get_str(form, text_field)
    html_part = get_str(form, html_field)
    if text_part and (text_part.strip() or not html_part):
        return text(text_part, text_field, EMAIL_BODY_MAX)
    if html_part:
        return text(html_part, html_field, EMAIL_BODY_MAX)
    return None


def mail_subject(form: Mapping[str, str]) -> str | None:
    raw_subject = get_str(form, "subject")
    return detail_text(raw_subject, SUBJECT_MAX) if raw_subject else None


def mail_message_id(value: str | None, form: Mapping[str, str]) -> str:
    """The id an inbound e-mail is known by: its Message-ID header ``value``, else a digest of
    every field the vendor posted (some automated senders omit the header), which is equal for
    a redelivery of the same post and differs for any other mail."""
    if value:
        # Angle brackets are syntax, not part of the id (RFC 5322 msg-id).
        stripped = value.strip()
        if stripped.startswith("<") and stripped.endswith(">"):
            stripped = stripped[1:-1].strip()
        try:
            return identifier(stripped, "Message-ID")
        except PayloadError:
            # Too long for our column, or not plain ASCII: a digest is stable and still unique.
            return "sha256:" + _digest(stripped)
    fields = sorted(
        (key, value)
        for key, value in form.items()
        if isinstance(key, str) and isinstance(value, str)
    )
    return "sha256:" + _digest(json.dumps(fields, ensure_ascii=True, separators=(",", ":")))


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def mail_date(value: str | None) -> datetime | None:
    """The Date header of an inbound e-mail, in UTC. Only informative (when the sender says it
    sent the mail), so an unreadable one is dropped."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.utcoffset() is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def detail_text(value: object, max_chars: int = DETAIL_TEXT_MAX) -> str | None:
    """Provider text for an audit trail: made storable and bounded instead of refused, since it
    is commentary on a report rather than the report itself."""
    if not isinstance(value, str):
        return None
    cut = value[:max_chars]
    cleaned = cut.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd").strip()
    return cleaned or None


def detail_scalar(value: object) -> str | int | None:
    # bool is an int subclass; JSON numbers beyond 2**53 lose precision in most readers.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**53:
        return value
    return detail_text(value)


def without_query(url: str) -> str | None:
    """A link with its query, fragment and credentials removed: clicked links often carry
    one-time tokens (password resets, magic links) that must not land in our audit trail."""
    if not is_http_url(url):
        return None
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host, query="", fragment="").geturl()


def compact(detail: Mapping[str, object]) -> dict[str, Any]:
    return {key: value for key, value in detail.items() if value is not None}


def _has_lone_surrogate(value: str) -> bool:
    # A Python str can hold surrogate code points that no UTF-8 encoder accepts; letting the
    # codec find them is far faster than a per-character scan of a 256 KiB e-mail body.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
