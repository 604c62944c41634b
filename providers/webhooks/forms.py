"""Form bodies as the vendors post them: Twilio's urlencoded callbacks, SendGrid's multipart
Inbound Parse, Mailgun's Routes posts (urlencoded, or multipart with attachments).

One reader for every form, synchronous, so a signature among the form's own fields (Mailgun's)
is checked in the verify step without awaiting anything. The body it reads is already bounded
by the route's body limit, read whole before any of it is decoded."""

from __future__ import annotations

import email.parser
import email.policy
from typing import Final
from urllib.parse import unquote_plus

from .records import PayloadError

#: A decoded form: the first value of each field, and every value of each field.
Form = tuple[dict[str, str], dict[str, list[str]]]
#: Parts of a multipart form read at most (fields and uploaded files together): an inbound
#: e-mail has some twenty fields and its attachments; more is not a vendor's post.
MAX_PARTS: Final = 250


def form_pairs(text: str) -> list[tuple[str, str]]:
    """What ``parse_qsl(text, keep_blank_values=True)`` returns, decoding only the names and
    values that need it: every status callback is a form of some twenty fields, most of them
    plain."""
    pairs: list[tuple[str, str]] = []
    for part in text.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key, errors="replace")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="replace")
        pairs.append((key, value))
    return pairs


def decode_form(body: bytes) -> Form:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("form body is not UTF-8") from exc
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in form_pairs(text):
        single.setdefault(key, value)
        multi.setdefault(key, []).append(value)
    return single, multi


def decode_any_form(content_type: str | None, body: bytes) -> Form:
    """A urlencoded or multipart/form-data body, decoded without awaiting anything. Uploaded
    files are not kept; a form of more than :data:`MAX_PARTS` parts is refused."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        return decode_form(body)
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not parsed.is_multipart() or parsed.defects:
        raise PayloadError("unreadable multipart form")
    parts = parsed.get_payload()
    if isinstance(parts, list) and len(parts) > MAX_PARTS:
        raise PayloadError(f"multipart form of more than {MAX_PARTS} parts")
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        raw = part.get_payload(decode=True)
        value = _text(raw if isinstance(raw, bytes) else b"", part.get_content_charset())
        single.setdefault(name, value)
        multi.setdefault(name, []).append(value)
    return single, multi


def _text(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", "replace")
