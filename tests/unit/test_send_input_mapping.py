"""resolvers.inputs: one mapping from ``SendMessageInput`` to a send request, checked against
the input type of the built schema (a field added there and forgotten in the mapping fails)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import GraphQLInputObjectType, GraphQLNonNull

from gateway.domain.channels import Channel
from resolvers.inputs import by_graphql_name, send_request, to_send_request
from resolvers.root import ROOTS
from schema.build import create_schema
from schema.results import SendMessageInput

INPUT = create_schema(ROOTS)._schema.get_type("SendMessageInput")
assert isinstance(INPUT, GraphQLInputObjectType)


def distinct_values() -> dict[str, Any]:
    """A value of its own for every field of the input type, under its GraphQL name."""
    # A one-item list fits every field: the mapping passes values through (lists as tuples).
    return {name: [f"value of {name}"] for name in INPUT.fields}


@pytest.mark.parametrize("name", sorted(INPUT.fields))
def test_every_field_of_the_input_type_reaches_the_request(name: str) -> None:
    full = distinct_values()
    without = {k: v for k, v in full.items() if k != name}
    if isinstance(INPUT.fields[name].type, GraphQLNonNull):
        with pytest.raises(KeyError):  # a required field is read, by its GraphQL name
            send_request(without)
    else:
        assert send_request(without) != send_request(full), f"{name} is not mapped"


def test_the_typed_input_is_laid_out_under_the_schemas_field_names() -> None:
    typed = SendMessageInput(
        channel=Channel.SMS,
        from_="+15550001111",
        to="+15550002222",
        body="hi",
        attachments=["https://example.com/a.png"],
        idempotency_key="k-1",
        send_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        metadata={"order": 7},
        bypass_quiet_hours=True,
    )
    laid_out = by_graphql_name(typed)
    assert set(laid_out) == set(INPUT.fields)
    assert to_send_request(typed) == send_request(
        {
            "channel": Channel.SMS,
            "from": "+15550001111",
            "to": "+15550002222",
            "body": "hi",
            "attachments": ["https://example.com/a.png"],
            "idempotencyKey": "k-1",
            "sendAt": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
            "metadata": {"order": 7},
            "bypassQuietHours": True,
        }
    )
    assert to_send_request(typed).bypass_quiet_hours


def test_omitted_optional_fields_map_to_none_either_way() -> None:
    typed = SendMessageInput(channel=Channel.EMAIL, from_="a@example.com", to="b@example.com")
    coerced = {"channel": Channel.EMAIL, "from": "a@example.com", "to": "b@example.com"}
    assert to_send_request(typed) == send_request(coerced)
    assert send_request(coerced).attachments is None
    assert not send_request(coerced).bypass_quiet_hours
    # A client may send null for the flag too: it means the default, no bypass.
    assert not send_request({**coerced, "bypassQuietHours": None}).bypass_quiet_hours
