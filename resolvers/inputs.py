"""GraphQL input -> domain request: the one mapping of ``SendMessageInput``.

``send_request`` reads the input by its GraphQL field names, the shape graphql-core gives a
coerced ``SendMessageInput`` value. Strawberry's typed resolvers hand over the input as its
Python class instead; ``to_send_request`` lays that out under the same GraphQL names first,
so both ways of resolving the send mutations share this one mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strawberry.schema.name_converter import NameConverter
from strawberry.types import get_object_definition

from gateway.domain.messages import SendRequest
from schema.results import SendMessageInput


def send_request(data: Mapping[str, Any]) -> SendRequest:
    """The request from a ``SendMessageInput`` value keyed by its GraphQL field names.

    Every field has been checked and coerced already (enum member, parsed DateTime, JSON);
    an omitted optional field is absent or None.
    """
    attachments = data.get("attachments")
    return SendRequest(
        channel=data["channel"],
        from_=data["from"],
        to=data["to"],
        body=data.get("body"),
        attachments=tuple(attachments) if attachments is not None else None,
        idempotency_key=data.get("idempotencyKey"),
        send_at=data.get("sendAt"),
        metadata=data.get("metadata"),
        bypass_quiet_hours=bool(data.get("bypassQuietHours")),
    )


# (Python attribute, GraphQL name) of every field, named as the schema names them.
_FIELDS = tuple(
    (field.python_name, NameConverter().get_graphql_name(field))
    for field in get_object_definition(SendMessageInput, strict=True).fields
)


def by_graphql_name(data: SendMessageInput) -> dict[str, Any]:
    """The input's fields under their GraphQL names, as graphql-core would have coerced them."""
    return {name: getattr(data, attribute) for attribute, name in _FIELDS}


def to_send_request(data: SendMessageInput) -> SendRequest:
    return send_request(by_graphql_name(data))
