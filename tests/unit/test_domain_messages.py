import dataclasses
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain import (
    Channel,
    FieldProblem,
    Limits,
    NormalizedMessage,
    SendRequest,
    validate_send,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FIELDS = {"channel", "from", "to", "body", "attachments", "idempotencyKey", "sendAt", "metadata"}
FAST = settings(max_examples=200, deadline=None)
IMG = "https://cdn.example.com/a.png"


def sms(**changes: Any) -> SendRequest:
    base = SendRequest(Channel.SMS, from_="+14155550100", to="+14155552671", body="hello")
    return dataclasses.replace(base, **changes)


def mms(**changes: Any) -> SendRequest:
    return sms(**{"channel": Channel.MMS, "attachments": (IMG,), **changes})


def email(**changes: Any) -> SendRequest:
    base = SendRequest(Channel.EMAIL, from_="noreply@example.com", to="bob@example.org", body="hi")
    return dataclasses.replace(base, **changes)


def ok(req: SendRequest, **kwargs: Any) -> NormalizedMessage:
    result = validate_send(req, now=NOW, **kwargs)
    assert isinstance(result, NormalizedMessage), result
    return result


def problems(req: SendRequest, **kwargs: Any) -> dict[str, str]:
    result = validate_send(req, now=NOW, **kwargs)
    assert isinstance(result, list), result
    assert all(isinstance(p, FieldProblem) for p in result)
    found = {p.field: p.problem for p in result}
    assert len(found) == len(result), "one problem per field"
    return found


# --- accepted requests ---------------------------------------------------------------------------


def test_sms_is_normalized() -> None:
    msg = ok(sms(from_="(415) 555-0100", to="+1 415.555.2671", body="héllo €"))
    assert msg == NormalizedMessage(
        channel=Channel.SMS,
        sender="+14155550100",
        recipient="+14155552671",
        body="héllo €",
        attachments=(),
        idempotency_key=None,
        send_at=None,
        metadata=None,
        segments=1,
        encoding="GSM7",
    )


def test_sms_segments_follow_the_body() -> None:
    msg = ok(sms(body="ж" * 71))
    assert (msg.segments, msg.encoding) == (2, "UCS2")


def test_sms_accepts_empty_attachment_list() -> None:
    assert ok(sms(attachments=())).attachments == ()


def test_mms_without_body_has_zero_segments() -> None:
    msg = ok(mms(body=None))
    assert (msg.body, msg.segments, msg.encoding, msg.attachments) == (None, 0, "GSM7", (IMG,))
    assert ok(mms(body="")).fingerprint() == msg.fingerprint()


def test_email_is_normalized_without_segments() -> None:
    msg = ok(email(from_="NoReply@Example.COM", to=" Bob@EXAMPLE.org "))
    assert (msg.sender, msg.recipient) == ("noreply@example.com", "bob@example.org")
    assert (msg.segments, msg.encoding) == (None, None)


def test_email_may_carry_link_attachments() -> None:
    assert ok(email(attachments=(IMG,))).attachments == (IMG,)


def test_idempotency_key_is_stripped() -> None:
    assert ok(sms(idempotency_key="  order-42 \n")).idempotency_key == "order-42"


def test_default_region_reads_national_numbers() -> None:
    msg = ok(sms(from_="020 7183 8750", to="07400 123456"), default_region="GB")
    assert (msg.sender, msg.recipient) == ("+442071838750", "+447400123456")


def test_participants_are_the_unordered_pair() -> None:
    there = ok(sms())
    back = ok(sms(from_="+14155552671", to="+14155550100"))
    assert there.participants == back.participants == ("+14155550100", "+14155552671")


# --- sendAt -----------------------------------------------------------------------------------


def test_future_send_at_is_kept_in_utc() -> None:
    local = datetime(2025, 6, 2, 9, 30, tzinfo=timezone(timedelta(hours=-7)))
    msg = ok(sms(send_at=local))
    assert msg.send_at == local
    assert msg.send_at is not None and msg.send_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("offset", [timedelta(0), -timedelta(microseconds=1), -timedelta(days=3)])
def test_send_at_now_or_past_means_send_now(offset: timedelta) -> None:
    assert ok(sms(send_at=NOW + offset)).send_at is None


def test_schedule_horizon_is_inclusive() -> None:
    assert ok(sms(send_at=NOW + timedelta(days=365))).send_at == NOW + timedelta(days=365)
    found = problems(sms(send_at=NOW + timedelta(days=365, seconds=1)))
    assert found == {"sendAt": "must be at most 365 days in the future"}


def test_custom_horizon() -> None:
    limits = Limits(schedule_horizon=timedelta(hours=1))
    assert problems(sms(send_at=NOW + timedelta(hours=2)), limits=limits) == {
        "sendAt": "must be at most 1:00:00 in the future"
    }


def test_naive_now_is_read_as_utc() -> None:
    result = validate_send(sms(send_at=NOW + timedelta(hours=1)), now=NOW.replace(tzinfo=None))
    assert isinstance(result, NormalizedMessage)
    assert result.send_at == NOW + timedelta(hours=1)


# --- rejected requests --------------------------------------------------------------------------

REJECTIONS = [
    (sms(channel="FAX"), "channel", "must be one of SMS, MMS, EMAIL"),
    (sms(from_="not a phone"), "from", "not a valid phone number"),
    (sms(to=""), "to", "phone number is empty"),
    (sms(to="+1 415 555 0100 x7"), "to", "extensions are not supported"),
    (sms(to="(415) 555-0100"), "to", "must be different from the sender"),
    (sms(to="bob@example.org"), "to", "not a valid phone number"),
    (email(to="+14155550100"), "to", "@-sign"),
    (email(from_="alice@"), "from", "after the @-sign"),
    (email(to="NoReply@example.com"), "to", "must be different from the sender"),
    (sms(body=None), "body", "is required for SMS"),
    (sms(body=""), "body", "is required for SMS"),
    (sms(body=" \n\t"), "body", "must not be blank for SMS"),
    (email(body=None), "body", "is required for EMAIL"),
    (email(body="   "), "body", "must not be blank for EMAIL"),
    (sms(body="a" * 1601), "body", "must be at most 1600 characters for SMS"),
    (mms(body="a" * 1601), "body", "must be at most 1600 characters for MMS"),
    (email(body="a" * 262145), "body", "must be at most 262144 characters for EMAIL"),
    (sms(body="nul\x00byte"), "body", "must not contain NUL characters"),
    (mms(body="\x00"), "body", "must not contain NUL characters"),
    (sms(body="half \ud83d pair"), "body", "must be valid Unicode text"),
    (sms(body=42), "body", "must be a string"),
    (sms(attachments=(IMG,)), "attachments", "not supported for SMS; send as MMS"),
    (mms(attachments=None), "attachments", "MMS needs at least one attachment"),
    (mms(attachments=()), "attachments", "MMS needs at least one attachment"),
    (mms(attachments=(IMG,) * 11), "attachments", "must be at most 10"),
    (mms(attachments=(IMG, "ftp://x.org/a", "nope")), "attachments", "attachments[1] is not"),
    (mms(attachments=(IMG, None)), "attachments", "attachments[1] is not"),
    (mms(attachments=IMG), "attachments", "must be a list of URLs"),
    (sms(idempotency_key=""), "idempotencyKey", "must not be blank"),
    (sms(idempotency_key="  \t"), "idempotencyKey", "must not be blank"),
    (sms(idempotency_key="k" * 256), "idempotencyKey", "must be at most 255 characters"),
    (sms(idempotency_key="a\x00b"), "idempotencyKey", "must not contain control characters"),
    (sms(idempotency_key=7), "idempotencyKey", "must be a string"),
    (sms(send_at=datetime(2025, 6, 2, 9, 30)), "sendAt", "must include a timezone offset"),
    (sms(send_at="2025-06-02T09:30:00Z"), "sendAt", "must be a date-time"),
    (sms(metadata=["a"]), "metadata", "must be a JSON object"),
    (sms(metadata={"a": {1, 2}}), "metadata", "must contain only JSON values"),
    (sms(metadata={"a": float("nan")}), "metadata", "must contain only JSON values"),
    (
        sms(metadata={"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
        "metadata",
        "must be nested at most 32 levels deep",
    ),
    (sms(metadata={"a": {1: "b"}}), "metadata", "object keys must be strings"),
    (sms(metadata={"a": "x" * 16400}), "metadata", "must be at most 16384 bytes as JSON"),
    (sms(metadata={"a": "\udc00"}), "metadata", "must contain only JSON values"),
]


@pytest.mark.parametrize(("req", "field", "message"), REJECTIONS)
def test_each_rule_reports_on_its_field(req: SendRequest, field: str, message: str) -> None:
    found = problems(req)
    assert set(found) == {field}
    assert message in found[field]


def test_body_length_limits_are_inclusive() -> None:
    ok(sms(body="a" * 1600))
    ok(email(body="a" * 262144))


def test_attachment_count_limit_is_inclusive() -> None:
    assert len(ok(mms(attachments=(IMG,) * 10)).attachments) == 10


def test_metadata_size_counts_utf8_bytes_of_compact_json() -> None:
    limits = Limits(metadata_max_bytes=14)
    # {"k":"€€"} is 10 characters but 14 bytes: each € is 3 bytes of UTF-8.
    assert ok(sms(metadata={"k": "€€"}), limits=limits).metadata == {"k": "€€"}
    assert problems(sms(metadata={"k": "€€a"}), limits=limits) == {
        "metadata": "must be at most 14 bytes as JSON"
    }


def test_metadata_is_copied_so_the_caller_cannot_mutate_it() -> None:
    original: dict[str, Any] = {"tags": ["a"], "n": 1}
    msg = ok(sms(metadata=original))
    original["tags"].append("b")
    assert msg.metadata == {"tags": ["a"], "n": 1}


def test_every_problem_is_reported_at_once() -> None:
    req = SendRequest(
        Channel.SMS,
        from_="",
        to="x",
        body="",
        attachments=("ftp://a",),
        idempotency_key=" ",
        send_at=datetime(2030, 1, 1),
        metadata=[],  # type: ignore[arg-type]
    )
    assert set(problems(req)) == FIELDS - {"channel"}


def test_unknown_channel_skips_channel_specific_rules() -> None:
    assert set(problems(sms(channel="PIGEON", to="x", idempotency_key=""))) == {
        "channel",
        "idempotencyKey",
    }


# --- fingerprint ----------------------------------------------------------------------------------


def test_fingerprint_is_sha256_hex() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", ok(sms()).fingerprint())


def test_fingerprint_ignores_idempotency_key_and_spelling() -> None:
    plain = ok(sms(to="+14155552671"))
    spelled = ok(sms(to="(415) 555-2671", idempotency_key="abc"))
    assert plain.fingerprint() == spelled.fingerprint()


def test_fingerprint_ignores_email_case() -> None:
    assert ok(email(to="Bob@Example.org")).fingerprint() == ok(email()).fingerprint()


def test_fingerprint_ignores_send_at_zone_and_metadata_key_order() -> None:
    at = NOW + timedelta(hours=5)
    a = ok(sms(send_at=at, metadata={"x": 1, "y": [1, {"b": 2, "a": 1}]}))
    b = ok(
        sms(
            send_at=at.astimezone(timezone(timedelta(hours=9))),
            metadata={"y": [1, {"a": 1, "b": 2}], "x": 1},
        )
    )
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize(
    "other",
    [
        sms(body="hello!"),
        sms(to="+14155552672"),
        sms(from_="+14155552672"),
        sms(channel=Channel.MMS, attachments=(IMG,)),
        sms(send_at=NOW + timedelta(minutes=1)),
        sms(metadata={}),
        sms(metadata={"a": 1}),
    ],
)
def test_fingerprint_changes_with_content(other: SendRequest) -> None:
    assert ok(other).fingerprint() != ok(sms()).fingerprint()


def test_fingerprint_matches_documented_canonical_json() -> None:
    at = NOW + timedelta(days=1)
    msg = ok(mms(body="hi", send_at=at, metadata={"b": 1, "a": "é"}))
    canonical = json.dumps(
        {
            "channel": "MMS",
            "sender": "+14155550100",
            "recipient": "+14155552671",
            "body": "hi",
            "attachments": [IMG],
            "send_at": "2025-06-02T12:00:00+00:00",
            "metadata": {"a": "é", "b": 1},
            "segments": 1,
            "encoding": "GSM7",
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    assert msg.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()


# --- properties ---------------------------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_offsets = st.builds(
    timezone, st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23))
)
_phoneish = st.sampled_from(["+14155550100", "(415) 555-2671", "415.555.0100", "+442071838750"])
_emailish = st.sampled_from(["a@example.com", "B@Example.com", "b@example.com", "x@y"])
_urlish = st.sampled_from([IMG, "http://x.io/y", "ftp://x.io", ""]) | st.text(max_size=20)

arbitrary_requests = st.builds(
    SendRequest,
    channel=st.sampled_from(list(Channel)) | st.text(max_size=6),
    from_=_phoneish | _emailish | st.text(max_size=20),
    to=_phoneish | _emailish | st.text(max_size=20),
    body=st.none() | st.text(max_size=200) | st.just("a" * 1601),
    attachments=st.none() | st.lists(_urlish, max_size=12).map(tuple),
    idempotency_key=st.none() | st.text(max_size=300),
    send_at=st.none() | st.datetimes(timezones=st.none() | _offsets | st.just(UTC)),
    metadata=st.none() | st.dictionaries(st.text(max_size=5), _json, max_size=4),
)


_PHONES = ["+14155550100", "(415) 555-2671", "415.555.0100", "+442071838750", "+1 212 555 0199"]
_BODY_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
_EMAILS = ["a@example.com", "B@Example.com", "b@example.com", "ops@mail.example.net"]


@st.composite
def plausible_requests(draw: st.DrawFn) -> SendRequest:
    """Mostly valid requests, so that the accepting branch is exercised as much as the other."""
    channel = draw(st.sampled_from(list(Channel)))
    pool = _EMAILS if channel is Channel.EMAIL else _PHONES
    sender, recipient = draw(st.permutations(pool))[:2]
    urls = st.lists(st.sampled_from([IMG, "http://x.io/y.gif"]), min_size=1, max_size=10)
    attachments = None if channel is Channel.SMS else tuple(draw(urls))
    body = draw(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
    )
    return SendRequest(
        channel,
        from_=sender,
        to=recipient,
        body=body if body.strip() else body + ".",
        attachments=attachments,
        idempotency_key=draw(st.none() | st.uuids().map(str)),
        send_at=draw(
            st.none()
            | st.builds(
                lambda delta, tz: (NOW + delta).astimezone(tz),
                st.timedeltas(min_value=-timedelta(days=400), max_value=timedelta(days=365)),
                _offsets,
            )
        ),
        metadata=draw(st.none() | st.dictionaries(st.text(max_size=5), _json, max_size=4)),
    )


@FAST
@given(st.one_of(arbitrary_requests, plausible_requests()))
def test_arbitrary_requests_never_raise(req: SendRequest) -> None:
    result = validate_send(req, now=NOW)
    if isinstance(result, NormalizedMessage):
        assert result.channel in Channel
        assert result.sender != result.recipient
        assert result.send_at is None or result.send_at > NOW
        assert result.send_at is None or result.send_at.utcoffset() == timedelta(0)
        assert (result.segments is None) is (result.channel is Channel.EMAIL)
        assert len(result.fingerprint()) == 64
    else:
        assert result
        fields = [p.field for p in result]
        assert len(fields) == len(set(fields))
        assert set(fields) <= FIELDS
        assert all(p.problem for p in result)


@FAST
@given(
    st.sampled_from(["+1 (415) 555-2671", "415.555.2671", "+14155552671", "1-415-555-2671"]),
    st.sampled_from(["+1 (415) 555-2671", "415.555.2671", "+14155552671", "1-415-555-2671"]),
    st.text(min_size=1, max_size=50).filter(lambda b: b.strip() and "\x00" not in b),
    st.text(alphabet=st.characters(categories=["L", "N", "P", "Zs"]), max_size=10),
)
def test_fingerprint_depends_on_content_not_spelling(
    spelling_a: str, spelling_b: str, body: str, key: str
) -> None:
    a = ok(sms(to=spelling_a, body=body))
    b = ok(sms(to=spelling_b, body=body, idempotency_key=key.strip() or None))
    assert a.fingerprint() == b.fingerprint()
    assert ok(sms(to=spelling_a, body=body + ".")).fingerprint() != a.fingerprint()


@FAST
@given(st.text(alphabet="abcdefgXYZ", min_size=1, max_size=10), st.booleans())
def test_fingerprint_ignores_email_case_property(local: str, upper: bool) -> None:
    to = f"{local}@Example.org"
    variant = to.upper() if upper else to.lower()
    assert ok(email(to=variant)).fingerprint() == ok(email(to=to)).fingerprint()
