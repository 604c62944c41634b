"""Form bodies as the vendors post them: Twilio's urlencoded callbacks, SendGrid's multipart
Inbound Parse."""

from __future__ import annotations

from urllib.parse import unquote_plus

from starlette.requests import Request

from .records import PayloadError

#: A decoded form: the first value of each field, and every value of each field.
Form = tuple[dict[str, str], dict[str, list[str]]]


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


async def multipart_fields(content_type: str | None, body: bytes) -> dict[str, str]:
    """Text fields of a multipart (or urlencoded) form; uploaded files are not kept."""
    if (content_type or "").startswith("application/x-www-form-urlencoded"):
        return decode_form(body)[0]

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", (content_type or "").encode("latin-1"))]
    parsed = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    try:
        form = await parsed.form(max_files=50, max_fields=200)
    except Exception as exc:  # python-multipart raises several types for bad input
        raise PayloadError(f"unreadable multipart form: {type(exc).__name__}") from exc
    try:
        return {k: v for k, v in form.multi_items() if isinstance(v, str)}
    finally:
        await form.close()  # uploaded files are spooled to disk
