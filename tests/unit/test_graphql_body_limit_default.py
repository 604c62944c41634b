"""GRAPHQL_MAX_BODY_BYTES's default fits the largest sendMessages of SMS the domain allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.domain.channels import Channel
from gateway.domain.messages import DEFAULT_LIMITS, NormalizedMessage, SendRequest, validate_send
from gateway.settings import Settings

SEND_MANY = """
mutation Many($inputs: [SendMessageInput!]!) {
  sendMessages(inputs: $inputs) {
    __typename
    ... on MessageAccepted { replayed message { id status segments encoding } }
    ... on InvalidInput { problems { field problem } }
    ... on IdempotencyConflict { reason original { id } }
  }
}
"""
WIDE = "\U0001f600"  # four bytes in UTF-8: the widest a character gets


def largest_sms_input(now: datetime) -> dict[str, Any]:
    """An SMS input with every field at its limit, in the characters that take most bytes."""
    limits = DEFAULT_LIMITS
    wrapper = len(orjson.dumps({"k": ""}))
    metadata = {"k": WIDE * ((limits.metadata_max_bytes - wrapper) // len(WIDE.encode()))}
    assert len(orjson.dumps(metadata)) <= limits.metadata_max_bytes
    return {
        "channel": "SMS",
        "from": "+1 415 555 0100".ljust(64),
        "to": "+1 415 555 0199".ljust(64),
        "body": WIDE * limits.sms_body_max,
        "idempotencyKey": WIDE * limits.idempotency_key_max,
        "sendAt": (now + timedelta(days=30)).isoformat(),
        "metadata": metadata,
    }


def test_the_largest_allowed_sms_input_is_valid() -> None:
    now = datetime.now(UTC)
    data = largest_sms_input(now)
    request = SendRequest(
        channel=Channel.SMS,
        from_=data["from"],
        to=data["to"],
        body=data["body"],
        idempotency_key=data["idempotencyKey"],
        send_at=datetime.fromisoformat(data["sendAt"]),
        metadata=data["metadata"],
    )
    assert isinstance(validate_send(request, now=now), NormalizedMessage)


def test_the_default_fits_a_full_batch_of_the_largest_sms_inputs() -> None:
    settings = Settings()
    one = largest_sms_input(datetime.now(UTC))
    batch = {"query": SEND_MANY, "variables": {"inputs": [one] * settings.max_batch_size}}
    size = len(orjson.dumps(batch))
    assert size <= settings.graphql_max_body_bytes, size
    # The README's figure: about 24 KB an input.
    assert 23_000_000 < size < 26_000_000, size
