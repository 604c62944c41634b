"""workers.codec: events and inbox changes survive the pub/sub wire format unchanged, ids
cached or not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from gateway.domain.inbox import InboxChange, InboxChangeKind
from gateway.domain.records import MessageEvent
from gateway.domain.statuses import MessageStatus
from workers import codec
from workers.codec import decode_event, decode_inbox_change, encode_event, encode_inbox_change


def event(**changes: object) -> MessageEvent:
    fields: dict[str, object] = {
        "id": 7,
        "account_id": uuid.uuid4(),
        "message_id": uuid.uuid4(),
        "conversation_id": uuid.uuid4(),
        "status": MessageStatus.DELIVERED,
        "kind": "delivery_receipt",
        "detail": {"provider": "twilio", "n": [1, None]},
        "occurred_at": datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC),
    }
    fields.update(changes)
    return MessageEvent(**fields)  # type: ignore[arg-type]


def test_every_status_and_field_round_trips() -> None:
    account = uuid.uuid4()
    for n, status in enumerate(MessageStatus):
        original = event(id=n, account_id=account, status=status, detail=None if n % 2 else {})
        decoded = decode_event(encode_event(original))
        assert decoded == original
        assert decoded.status is status
        assert decoded.occurred_at.utcoffset() is not None


def test_the_id_cache_stays_bounded_and_correct() -> None:
    originals = [event(id=n) for n in range(codec._IDS_MAX + 10)]
    for original in originals:
        assert decode_event(encode_event(original)) == original
        assert len(codec._IDS) <= codec._IDS_MAX
    # Ids seen before the cache was emptied are parsed again, not mixed up.
    assert decode_event(encode_event(originals[0])) == originals[0]


def test_every_inbox_change_kind_round_trips() -> None:
    for kind in InboxChangeKind:
        original = InboxChange(uuid.uuid4(), uuid.uuid4(), kind, uuid.uuid4())
        decoded = decode_inbox_change(encode_inbox_change(original))
        assert decoded == original
        assert decoded.kind is kind
