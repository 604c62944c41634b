"""Webhook signatures: published vectors, hand-computed vectors, and every way to fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from providers.signatures import (
    generate_sendgrid_keypair,
    generate_telnyx_keypair,
    sendgrid_public_key,
    sendgrid_sign,
    standard_webhook_sign,
    telnyx_public_key,
    telnyx_sign,
    twilio_signature,
    verify_sendgrid,
    verify_standard_webhook,
    verify_telnyx,
    verify_twilio,
)

# --- Twilio ---------------------------------------------------------------------------------

TOKEN = "12345"
STATUS_URL = "https://gw.example.com/webhooks/twilio/status?mid=abc123&x=1"
STATUS_PARAMS: dict[str, str | list[str]] = {
    "To": "+14155550100",
    "From": "+14155550199",
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "MessageStatus": "delivered",
    "MediaUrl": ["https://cdn.example.com/b.png", "https://cdn.example.com/a.png"],
}


def hand_computed_twilio(token: str, url: str, params: dict[str, str | list[str]]) -> str:
    """Twilio's documented algorithm, written out independently of the implementation."""
    data = url
    for key in sorted(params):
        value = params[key]
        for item in sorted(value) if isinstance(value, list) else [value]:
            data += key + item
    mac = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def test_twilio_published_example() -> None:
    # The worked example of Twilio's security documentation.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature(TOKEN, url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_query_string_and_repeated_params_match_hand_computation() -> None:
    expected = hand_computed_twilio(TOKEN, STATUS_URL, STATUS_PARAMS)
    # The expansion spelled out: the URL verbatim (query string included), then key+value
    # pairs with keys sorted and each repeated key's values sorted.
    spelled = (
        STATUS_URL
        + "From+14155550199"
        + "MediaUrlhttps://cdn.example.com/a.png"
        + "MediaUrlhttps://cdn.example.com/b.png"
        + "MessageSidSM0123456789abcdef0123456789abcdef"
        + "MessageStatusdelivered"
        + "To+14155550100"
    )
    by_hand = base64.b64encode(
        hmac.new(TOKEN.encode(), spelled.encode(), hashlib.sha1).digest()
    ).decode()
    assert expected == by_hand
    assert twilio_signature(TOKEN, STATUS_URL, STATUS_PARAMS) == expected
    assert verify_twilio(TOKEN, STATUS_URL, STATUS_PARAMS, expected)


def test_twilio_value_order_of_repeated_params_does_not_matter() -> None:
    reordered = {**STATUS_PARAMS, "MediaUrl": list(reversed(STATUS_PARAMS["MediaUrl"]))}
    signature = twilio_signature(TOKEN, STATUS_URL, STATUS_PARAMS)
    assert verify_twilio(TOKEN, STATUS_URL, reordered, signature)


@pytest.mark.parametrize(
    ("token", "url", "params"),
    [
        ("54321", STATUS_URL, STATUS_PARAMS),
        (TOKEN, STATUS_URL.replace("mid=abc123", "mid=abc124"), STATUS_PARAMS),
        (TOKEN, STATUS_URL.replace("https://", "http://"), STATUS_PARAMS),
        (TOKEN, STATUS_URL, {**STATUS_PARAMS, "MessageStatus": "failed"}),
        (TOKEN, STATUS_URL, {**STATUS_PARAMS, "MediaUrl": ["https://cdn.example.com/a.png"]}),
        (TOKEN, STATUS_URL, {**STATUS_PARAMS, "Extra": "1"}),
    ],
    ids=["token", "query", "scheme", "param", "repeated-param", "added-param"],
)
def test_twilio_tampering_fails(token: str, url: str, params: dict[str, str | list[str]]) -> None:
    signature = twilio_signature(TOKEN, STATUS_URL, STATUS_PARAMS)
    assert not verify_twilio(token, url, params, signature)


@pytest.mark.parametrize("signature", [None, "", "not-a-signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="])
def test_twilio_missing_or_wrong_signature_fails(signature: str | None) -> None:
    assert not verify_twilio(TOKEN, STATUS_URL, STATUS_PARAMS, signature)


# --- SendGrid -------------------------------------------------------------------------------

NOW = 1_700_000_000.0
EVENTS = b'[{"email":"a@example.com","event":"delivered","sg_event_id":"e1"}]\r\n'


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_sendgrid_keypair()


def test_sendgrid_published_vector() -> None:
    # The key, signature and payload of the vendor SDKs' Event Webhook example.
    public_key = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBce"
        "pxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
    )
    signature = (
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlx"
        "FDWYNH2j/0="
    )
    payload = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'
    timestamp = "1588788367"
    assert verify_sendgrid(public_key, timestamp, payload, signature, now=1588788367)
    assert not verify_sendgrid(public_key, timestamp, payload + b" ", signature, now=1588788367)


def test_sendgrid_round_trip(keypair: tuple[str, str]) -> None:
    private_key, public_key = keypair
    timestamp = str(int(NOW))
    signature = sendgrid_sign(private_key, timestamp, EVENTS)
    assert verify_sendgrid(public_key, timestamp, EVENTS, signature, now=NOW)
    assert sendgrid_public_key(private_key) == public_key
    # The signature covers the timestamp too, not only the body.
    assert not verify_sendgrid(public_key, str(int(NOW) + 1), EVENTS, signature, now=NOW)


def test_sendgrid_wrong_key_fails(keypair: tuple[str, str]) -> None:
    private_key, _ = keypair
    _, other_public = generate_sendgrid_keypair()
    timestamp = str(int(NOW))
    signature = sendgrid_sign(private_key, timestamp, EVENTS)
    assert not verify_sendgrid(other_public, timestamp, EVENTS, signature, now=NOW)


def test_sendgrid_tampered_body_fails(keypair: tuple[str, str]) -> None:
    private_key, public_key = keypair
    timestamp = str(int(NOW))
    signature = sendgrid_sign(private_key, timestamp, EVENTS)
    tampered = EVENTS.replace(b"delivered", b"bounce")
    assert not verify_sendgrid(public_key, timestamp, tampered, signature, now=NOW)


Sign = Callable[[str, str, bytes], str]
Verify = Callable[..., bool]
#: The schemes that sign a timestamp header with the raw body: key pair, signer, verifier.
TIMESTAMPED = pytest.mark.parametrize(
    ("keypair_of", "sign", "verify"),
    [
        (generate_sendgrid_keypair, sendgrid_sign, verify_sendgrid),
        (generate_telnyx_keypair, telnyx_sign, verify_telnyx),
    ],
    ids=["sendgrid", "telnyx"],
)


@TIMESTAMPED
@pytest.mark.parametrize("age", [301.0, -301.0, 86_400.0])
def test_stale_or_future_timestamp_fails(
    keypair_of: Callable[[], tuple[str, str]], sign: Sign, verify: Verify, age: float
) -> None:
    private_key, public_key = keypair_of()
    timestamp = str(int(NOW - age))
    signature = sign(private_key, timestamp, EVENTS)
    assert not verify(public_key, timestamp, EVENTS, signature, now=NOW)
    # Inside the tolerance the same signature is fine.
    assert verify(public_key, timestamp, EVENTS, signature, now=NOW - age + 299)


@TIMESTAMPED
@pytest.mark.parametrize(
    ("public_key", "timestamp", "signature"),
    [
        ("!!!not base64!!!", "ok", "ok"),
        ("bm90IGEga2V5", "ok", "ok"),  # valid base64, not a key
        ("ok", None, "ok"),
        ("ok", "", "ok"),
        ("ok", "yesterday", "ok"),
        ("ok", "ok", None),
        ("ok", "ok", ""),
        ("ok", "ok", "%%%garbage%%%"),
        ("ok", "ok", "bm90IGEgc2lnbmF0dXJl"),  # valid base64, not a signature
    ],
)
def test_garbled_input_is_false_never_an_exception(
    keypair_of: Callable[[], tuple[str, str]],
    sign: Sign,
    verify: Verify,
    public_key: str,
    timestamp: str | None,
    signature: str | None,
) -> None:
    private_key, good_public = keypair_of()
    good_timestamp = str(int(NOW))
    good_signature = sign(private_key, good_timestamp, EVENTS)
    assert not verify(
        good_public if public_key == "ok" else public_key,
        good_timestamp if timestamp == "ok" else timestamp,
        EVENTS,
        good_signature if signature == "ok" else signature,
        now=NOW,
    )


def test_sendgrid_keys_are_base64_der(keypair: tuple[str, str]) -> None:
    private_key, public_key = keypair
    # SubjectPublicKeyInfo of a P-256 key is 91 bytes of DER, starting with a SEQUENCE.
    der = base64.b64decode(public_key, validate=True)
    assert der[0] == 0x30 and len(der) == 91
    assert base64.b64decode(private_key, validate=True)[0] == 0x30


# --- Telnyx ---------------------------------------------------------------------------------

TELNYX_EVENT = b'{"data":{"event_type":"message.finalized","id":"e1"},"meta":{"attempt":1}}'
# RFC 8032, section 7.1, TEST 2: an Ed25519 secret key and its public key.
RFC_SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
RFC_PUBLIC = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"


def b64(hex_digits: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digits)).decode()


@pytest.fixture(scope="module")
def telnyx_keys() -> tuple[str, str]:
    return generate_telnyx_keypair()


def test_telnyx_keys_are_base64_of_32_raw_bytes_as_rfc_8032_derives_them() -> None:
    assert telnyx_public_key(b64(RFC_SECRET)) == b64(RFC_PUBLIC)
    private_key, public_key = generate_telnyx_keypair()
    assert len(base64.b64decode(public_key, validate=True)) == 32
    assert len(base64.b64decode(private_key, validate=True)) == 32
    assert telnyx_public_key(private_key) == public_key


def test_telnyx_signs_the_timestamp_a_bar_and_the_raw_body() -> None:
    timestamp = str(int(NOW))
    signature = base64.b64decode(telnyx_sign(b64(RFC_SECRET), timestamp, TELNYX_EVENT))
    # Checked with the key and the message written out, not through our verifier.
    key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(RFC_PUBLIC))
    key.verify(signature, f"{timestamp}|".encode() + TELNYX_EVENT)
    assert len(signature) == 64


def test_telnyx_round_trip_and_what_breaks_it(telnyx_keys: tuple[str, str]) -> None:
    private_key, public_key = telnyx_keys
    timestamp = str(int(NOW))
    signature = telnyx_sign(private_key, timestamp, TELNYX_EVENT)
    assert verify_telnyx(public_key, timestamp, TELNYX_EVENT, signature, now=NOW)
    # Another key, another body, another timestamp: each fails.
    _, other_public = generate_telnyx_keypair()
    assert not verify_telnyx(other_public, timestamp, TELNYX_EVENT, signature, now=NOW)
    tampered = TELNYX_EVENT.replace(b"finalized", b"sent")
    assert not verify_telnyx(public_key, timestamp, tampered, signature, now=NOW)
    assert not verify_telnyx(public_key, str(int(NOW) + 1), TELNYX_EVENT, signature, now=NOW)


# --- Standard Webhooks ----------------------------------------------------------------------

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STAMP = 1614265330
BODY = b'{"test": 2432232314}'


def headers(signature: str, *, msg_id: str = MSG_ID, stamp: int = STAMP) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }


def test_standard_webhook_published_vector() -> None:
    # The example of the Standard Webhooks specification.
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert standard_webhook_sign(SECRET, MSG_ID, STAMP, BODY) == expected


def test_standard_webhook_matches_hand_computation() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{MSG_ID}.{STAMP}.".encode() + BODY, hashlib.sha256)
    expected = "v1," + base64.b64encode(mac.digest()).decode()
    assert standard_webhook_sign(SECRET, MSG_ID, STAMP, BODY) == expected


def test_standard_webhook_round_trip() -> None:
    now = time.time()
    stamp = int(now)
    signature = standard_webhook_sign(SECRET, MSG_ID, stamp, BODY)
    assert verify_standard_webhook(SECRET, headers(signature, stamp=stamp), BODY, now=now)
    # Header names are case-insensitive on the wire.
    upper = {key.title(): value for key, value in headers(signature, stamp=stamp).items()}
    assert verify_standard_webhook(SECRET, upper, BODY, now=now)


def test_standard_webhook_wrong_secret_fails() -> None:
    signature = standard_webhook_sign(SECRET, MSG_ID, STAMP, BODY)
    other = "whsec_" + base64.b64encode(b"another secret of some length").decode()
    assert not verify_standard_webhook(other, headers(signature), BODY, now=STAMP)


def test_standard_webhook_tampered_body_or_id_fails() -> None:
    signature = standard_webhook_sign(SECRET, MSG_ID, STAMP, BODY)
    assert not verify_standard_webhook(SECRET, headers(signature), BODY + b" ", now=STAMP)
    assert not verify_standard_webhook(
        SECRET, headers(signature, msg_id="msg_other"), BODY, now=STAMP
    )


def test_standard_webhook_stale_or_future_timestamp_fails() -> None:
    signature = standard_webhook_sign(SECRET, MSG_ID, STAMP, BODY)
    assert verify_standard_webhook(SECRET, headers(signature), BODY, now=STAMP + 300)
    assert not verify_standard_webhook(SECRET, headers(signature), BODY, now=STAMP + 301)
    assert not verify_standard_webhook(SECRET, headers(signature), BODY, now=STAMP - 301)


def test_standard_webhook_several_signatures_one_valid() -> None:
    good = standard_webhook_sign(SECRET, MSG_ID, STAMP, BODY)
    bad = standard_webhook_sign(
        "whsec_" + base64.b64encode(b"rotated-out").decode(), MSG_ID, STAMP, BODY
    )
    assert verify_standard_webhook(SECRET, headers(f"{bad} {good}"), BODY, now=STAMP)
    assert verify_standard_webhook(SECRET, headers(f"v2,abc {good} {bad}"), BODY, now=STAMP)
    assert not verify_standard_webhook(SECRET, headers(f"{bad} v1,bogus"), BODY, now=STAMP)
    # The right digest under an unknown version tag does not count.
    assert not verify_standard_webhook(SECRET, headers(good.replace("v1,", "v2,")), BODY, now=STAMP)


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"webhook-id": MSG_ID, "webhook-timestamp": str(STAMP)},
        {"webhook-id": MSG_ID, "webhook-signature": "v1,x"},
        {"webhook-timestamp": str(STAMP), "webhook-signature": "v1,x"},
        {"webhook-id": MSG_ID, "webhook-timestamp": "soon", "webhook-signature": "v1,x"},
    ],
)
def test_standard_webhook_missing_headers_fail(broken: dict[str, str]) -> None:
    assert not verify_standard_webhook(SECRET, broken, BODY, now=STAMP)


def test_standard_webhook_garbled_secret_is_false() -> None:
    signature = standard_webhook_sign(SECRET, MSG_ID, STAMP, BODY)
    assert not verify_standard_webhook("whsec_***", headers(signature), BODY, now=STAMP)
