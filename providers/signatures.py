"""Webhook signatures: Twilio (HMAC-SHA1), SendGrid Event Webhook (ECDSA P-256), Mailgun
(HMAC-SHA256), Telnyx (Ed25519), Standard Webhooks.

Signing and verifying live side by side so the sandbox signs exactly what the gateway checks.
Every ``verify_*`` returns a bool and never raises: a webhook handler must be able to answer
401 to any garbage an attacker sends, not 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

__all__ = [
    "MAILGUN_TOLERANCE",
    "SENDGRID_SIGNATURE_HEADER",
    "SENDGRID_TIMESTAMP_HEADER",
    "TELNYX_SIGNATURE_HEADER",
    "TELNYX_TIMESTAMP_HEADER",
    "TWILIO_SIGNATURE_HEADER",
    "generate_sendgrid_keypair",
    "generate_telnyx_keypair",
    "mailgun_signature",
    "sendgrid_public_key",
    "sendgrid_sign",
    "standard_webhook_sign",
    "telnyx_public_key",
    "telnyx_sign",
    "twilio_signature",
    "verify_mailgun",
    "verify_sendgrid",
    "verify_standard_webhook",
    "verify_telnyx",
    "verify_twilio",
]

TWILIO_SIGNATURE_HEADER: Final = "X-Twilio-Signature"
SENDGRID_SIGNATURE_HEADER: Final = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER: Final = "X-Twilio-Email-Event-Webhook-Timestamp"
TELNYX_SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP_HEADER: Final = "telnyx-timestamp"

_WHSEC_PREFIX: Final = "whsec_"
#: Seconds a Mailgun timestamp may be off. Wider than SendGrid's five minutes: Mailgun warns that
#: its webhooks can be held up on its side, and a fresh token is remembered (see
#: providers.webhooks.mailgun) for as long as its timestamp is accepted.
MAILGUN_TOLERANCE: Final = 900.0


# --- Twilio ---------------------------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """Base64 HMAC-SHA1 of the full URL followed by every ``key + value``, keys sorted.

    A repeated key (e.g. ``MediaUrl``) contributes one ``key + value`` per value, values sorted,
    because form decoding does not preserve their order on every framework.
    """
    parts = [url]
    for key in sorted(params):
        value = params[key]
        values = [value] if isinstance(value, str) else sorted(value)
        parts.extend(key + item for item in values)
    digest = hmac.new(auth_token.encode(), "".join(parts).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(
    auth_token: str,
    url: str,
    params: Mapping[str, str | Sequence[str]],
    signature: str | None,
) -> bool:
    if not signature:
        return False
    expected = twilio_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode(), signature.encode())


# --- SendGrid Event Webhook -----------------------------------------------------------------


def generate_sendgrid_keypair() -> tuple[str, str]:
    """A fresh P-256 key pair: (base64 DER PKCS8 private key, base64 DER SPKI public key).

    SendGrid shows its verification key as base64 DER without PEM armour; we use the same shape
    so a real SendGrid key and a sandbox key are configured the same way.
    """
    private_key = ec.generate_private_key(ec.SECP256R1())
    private_der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(private_der).decode(), _public_b64(private_key.public_key())


def sendgrid_public_key(private_key_b64_der: str) -> str:
    """The base64 DER SubjectPublicKeyInfo matching a base64 DER PKCS8 private key."""
    return _public_b64(_load_private(private_key_b64_der).public_key())


def sendgrid_sign(private_key_b64_der: str, timestamp: str, payload: bytes) -> str:
    """Base64 DER ECDSA-SHA256 signature over ``timestamp`` + the raw request body."""
    signature = _load_private(private_key_b64_der).sign(
        timestamp.encode() + payload, ec.ECDSA(hashes.SHA256())
    )
    return base64.b64encode(signature).decode()


def verify_sendgrid(
    public_key_b64_der: str,
    timestamp: str | None,
    payload: bytes,
    signature: str | None,
    *,
    now: float,
    tolerance: float = 300,
) -> bool:
    """Check an Event Webhook POST; stale or future timestamps fail to stop replays."""

    def check(stamp: str, raw_signature: bytes) -> None:
        public_key = serialization.load_der_public_key(_b64decode(public_key_b64_der))
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ValueError("not an EC public key")
        public_key.verify(raw_signature, stamp.encode() + payload, ec.ECDSA(hashes.SHA256()))

    return _timestamped(timestamp, signature, check, now=now, tolerance=tolerance)


def _timestamped(
    timestamp: str | None,
    signature: str | None,
    check: Callable[[str, bytes], None],
    *,
    now: float,
    tolerance: float,
) -> bool:
    """The frame of the schemes that sign a timestamp with the raw body: both present, the
    timestamp fresh (an old request replayed, or one dated ahead, is refused even with a valid
    signature), and ``check(timestamp, the decoded signature)`` not raising. Whatever garbage
    comes in, the answer is False, never an error."""
    if not timestamp or not signature or not _fresh(timestamp, now, tolerance):
        return False
    try:
        check(timestamp, _b64decode(signature))
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _fresh(timestamp: str, now: float, tolerance: float) -> bool:
    """Whether epoch seconds ``timestamp`` lie within ``tolerance`` of ``now``, either way."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    return abs(now - sent_at) <= tolerance


def _load_private(private_key_b64_der: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_der_private_key(_b64decode(private_key_b64_der), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the SendGrid signing key must be an EC (P-256) private key")
    return key


def _public_b64(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _b64decode(value: str) -> bytes:
    # validate=True: silently skipping junk characters would let mangled input decode.
    return base64.b64decode(value.strip(), validate=True)


# --- Mailgun (event webhooks and Routes) ----------------------------------------------------


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    """Hex HMAC-SHA256 of ``timestamp`` and ``token`` joined with no separator, keyed by the
    webhook signing key ("Securing Webhooks" in Mailgun's user manual)."""
    signed = (timestamp + token).encode()
    return hmac.new(signing_key.encode(), signed, hashlib.sha256).hexdigest()


def verify_mailgun(
    signing_key: str,
    timestamp: str | None,
    token: str | None,
    signature: str | None,
    *,
    now: float,
    tolerance: float = MAILGUN_TOLERANCE,
) -> bool:
    """Check the ``timestamp``/``token``/``signature`` triple of a Mailgun post; a timestamp
    further than ``tolerance`` from ``now`` fails, so an old captured triple is worthless."""
    if not timestamp or not token or not signature or not _fresh(timestamp, now, tolerance):
        return False
    expected = mailgun_signature(signing_key, timestamp, token)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


# --- Telnyx ---------------------------------------------------------------------------------


def generate_telnyx_keypair() -> tuple[str, str]:
    """A fresh Ed25519 key pair: (base64 private key, base64 public key), each its 32 raw
    bytes, the shape in which Telnyx shows an account's public key."""
    private_key = ed25519.Ed25519PrivateKey.generate()
    raw = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode(), _ed25519_public_b64(private_key)


def telnyx_public_key(private_key_b64: str) -> str:
    """The base64 public key matching a base64 (32 raw bytes) Ed25519 private key."""
    return _ed25519_public_b64(_ed25519_private(private_key_b64))


def telnyx_sign(private_key_b64: str, timestamp: str, payload: bytes) -> str:
    """Base64 Ed25519 signature over ``{timestamp}|`` followed by the raw request body."""
    signature = _ed25519_private(private_key_b64).sign(_telnyx_signed(timestamp, payload))
    return base64.b64encode(signature).decode()


def verify_telnyx(
    public_key_b64: str,
    timestamp: str | None,
    payload: bytes,
    signature: str | None,
    *,
    now: float,
    tolerance: float = 300,
) -> bool:
    """Check a Telnyx webhook (``telnyx-signature-ed25519`` over ``telnyx-timestamp`` and the
    raw body); a timestamp more than ``tolerance`` seconds off fails, to stop replays."""

    def check(stamp: str, raw_signature: bytes) -> None:
        public_key = ed25519.Ed25519PublicKey.from_public_bytes(_b64decode(public_key_b64))
        public_key.verify(raw_signature, _telnyx_signed(stamp, payload))

    return _timestamped(timestamp, signature, check, now=now, tolerance=tolerance)


def _telnyx_signed(timestamp: str, payload: bytes) -> bytes:
    return timestamp.encode() + b"|" + payload


def _ed25519_private(private_key_b64: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(_b64decode(private_key_b64))


def _ed25519_public_b64(private_key: ed25519.Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode()


# --- Standard Webhooks (generic JSON provider format) ---------------------------------------


def standard_webhook_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}." + body>`` keyed by the whsec_ secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_whsec_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = 300,
) -> bool:
    """Check ``webhook-id``/``webhook-timestamp``/``webhook-signature`` (case-insensitive).

    The signature header may list several space-separated ``v1,...`` values (secret rotation);
    one match is enough. Every candidate is compared in constant time.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp_text = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not msg_id or not timestamp_text or not signatures:
        return False
    try:
        timestamp = int(timestamp_text)
        expected = standard_webhook_sign(secret, msg_id, timestamp, body).encode()
    except ValueError:  # includes binascii.Error from a garbled secret
        return False
    if abs(now - timestamp) > tolerance:
        return False
    valid = False
    for candidate in signatures.split():
        # No early exit: the time taken does not reveal which candidate matched.
        valid |= candidate.startswith("v1,") and hmac.compare_digest(expected, candidate.encode())
    return valid


def _whsec_key(secret: str) -> bytes:
    encoded = secret.removeprefix(_WHSEC_PREFIX)
    return base64.b64decode(encoded, validate=True)
