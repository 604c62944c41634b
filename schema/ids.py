"""Public ids and pagination cursors.

Ids are typed (``msg_…``, ``conv_…``) so ``node(id:)`` knows what to look up, and opaque
enough that clients do not build them. Anything malformed decodes to None, which the resolvers
answer exactly like an unknown id.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from uuid import UUID

# Re-exported: the schema's modules take every id helper from here.
from gateway.domain.ids import PREFIXES as PREFIXES
from gateway.domain.ids import encode_id as encode_id

_DELIVERY = "whd_"
_ENDPOINT_EVENT = "whev_"


def decode_id(public_id: str, kind: str | None = None) -> tuple[str, UUID] | None:
    """(kind, uuid) of a public id, or None when it is not one (of ``kind``, if given)."""
    if len(public_id) > 64:
        return None
    for name, prefix in PREFIXES.items():
        if (kind is None or kind == name) and public_id.startswith(prefix):
            try:
                return name, UUID(hex=public_id[len(prefix) :])
            except ValueError:
                return None
    return None


def decode_uuid(public_id: str | None, kind: str) -> UUID | None:
    if public_id is None:
        return None
    decoded = decode_id(public_id, kind)
    return decoded[1] if decoded else None


class InvalidCursor(ValueError):
    pass


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(cursor: str) -> str:
    if len(cursor) > 200:
        raise InvalidCursor("cursor too long")
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("malformed cursor") from exc


def encode_id_cursor(tag: str, value: UUID) -> str:
    return _b64(f"{tag}:{value.hex}")


def decode_id_cursor(tag: str, cursor: str) -> UUID:
    kind, _, rest = _unb64(cursor).partition(":")
    if kind != tag:
        raise InvalidCursor("cursor belongs to another list")
    try:
        return UUID(hex=rest)
    except ValueError as exc:
        raise InvalidCursor("malformed cursor") from exc


def encode_time_cursor(tag: str, at: datetime, value: UUID) -> str:
    return _b64(f"{tag}:{at.isoformat()}|{value.hex}")


def decode_time_cursor(tag: str, cursor: str) -> tuple[datetime, UUID]:
    kind, _, rest = _unb64(cursor).partition(":")
    stamp, _, hex_id = rest.partition("|")
    if kind != tag:
        raise InvalidCursor("cursor belongs to another list")
    try:
        at = datetime.fromisoformat(stamp)
        value = UUID(hex=hex_id)
    except ValueError as exc:
        raise InvalidCursor("malformed cursor") from exc
    if at.tzinfo is None:
        raise InvalidCursor("malformed cursor")
    try:
        # Offsets can push a valid-looking stamp outside what databases can represent.
        at = at.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidCursor("malformed cursor") from exc
    return at, value


def _encode_serial(prefix: str, value: int) -> str:
    return f"{prefix}{value}"


def _decode_serial(prefix: str, public_id: str, what: str) -> int:
    digits = public_id.removeprefix(prefix)
    if (
        digits == public_id
        or not digits.isascii()
        or not digits.isdigit()
        or len(digits) > 19
        or int(digits) > MAX_EVENT_ID
    ):
        raise InvalidCursor(f"not a {what} id")
    return int(digits)


def encode_delivery_id(delivery_id: int) -> str:
    """A webhook delivery's public id, which is also its cursor in its endpoint's list."""
    return _encode_serial(_DELIVERY, delivery_id)


def decode_delivery_id(public_id: str) -> int:
    return _decode_serial(_DELIVERY, public_id, "webhook delivery")


def encode_endpoint_event_id(event_id: int) -> str:
    """An endpoint event's public id, which is also its cursor in its endpoint's log."""
    return _encode_serial(_ENDPOINT_EVENT, event_id)


def decode_endpoint_event_id(public_id: str) -> int:
    return _decode_serial(_ENDPOINT_EVENT, public_id, "webhook endpoint event")


def encode_event_cursor(event_id: int) -> str:
    return str(event_id)


MAX_EVENT_ID = 2**63 - 1


def decode_event_cursor(cursor: str) -> int:
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 19:
        raise InvalidCursor("event cursors are the `cursor` field of a MessageEvent")
    value = int(cursor)
    if value > MAX_EVENT_ID:  # a BIGINT column cannot be compared with it
        raise InvalidCursor("event cursors are the `cursor` field of a MessageEvent")
    return value
