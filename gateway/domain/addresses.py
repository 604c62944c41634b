"""Address normalization: one canonical spelling per phone number or mailbox.

Canonical forms matter beyond validation: they are conversation keys and part of the
idempotency fingerprint, so two spellings of one address must never diverge.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneMetadata

_PHONE_MAX_INPUT = 64
_URL_MAX = 2048
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
#: A short code as carriers assign them: five or six digits, national, never in E.164 form.
_SHORT_CODE = re.compile(r"[0-9]{5,6}")


class AddressError(ValueError):
    """An address that cannot be used; ``str(error)`` is meant for the API caller."""


# Pure, and parsing with phonenumbers is costly next to the rest of an accept: senders and
# recipients repeat, so remember answers.
@lru_cache(maxsize=65536)
def normalize_phone(raw: str, default_region: str = "US") -> str:
    if not isinstance(raw, str):
        raise AddressError("phone number must be text")
    text = raw.strip()
    if not text:
        raise AddressError("phone number is empty")
    if len(text) > _PHONE_MAX_INPUT:
        raise AddressError(f"phone number is longer than {_PHONE_MAX_INPUT} characters")
    written = _valid_as_written(text)
    if written is not None:
        return written
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        raise AddressError("not a valid phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise AddressError("not a valid phone number")
    # E.164 has no room for an extension; silently dropping it would reach the wrong person.
    if number.extension:
        raise AddressError("phone number extensions are not supported")
    e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not _E164.fullmatch(e164):
        raise AddressError("not a valid phone number")
    return e164


def _valid_as_written(text: str) -> str | None:
    """``text`` if it is a valid number written in E.164 form, the form API callers mostly
    use; None for anything else, which the general parser then reads.

    Reads the number the way ``phonenumbers.parse`` reads a ``+`` number (the country code is
    the shortest prefix that is one) but only where that parse has nothing more to do: a
    national number with a leading zero (kept as a count of zeros) or one that begins like its
    region's national prefix (which the parser may strip) goes to the parser, so whatever this
    returns is what the parser and the formatter would have made of it."""
    if not _E164.fullmatch(text):
        return None
    digits = text[1:]
    for size in range(1, min(len(digits), 3) + 1):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    if len(national) < 2 or national.startswith("0"):
        return None
    region = phonenumbers.region_code_for_country_code(code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None:
        return None
    prefix = metadata.national_prefix_for_parsing
    if prefix and re.match(prefix, national):
        return None
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return text if phonenumbers.is_valid_number(number) else None


def normalize_number(raw: str, default_region: str = "US") -> str:
    """A number of ours (one we send from, or inbound messages are written to): E.164, or a
    short code (five or six digits without ``+``), which has no E.164 form and is kept as its
    digits. Recipients of what we send are always :func:`normalize_phone`'d."""
    if isinstance(raw, str) and _SHORT_CODE.fullmatch(raw.strip()):
        return raw.strip()
    return normalize_phone(raw, default_region)


@lru_cache(maxsize=65536)
def normalize_email(raw: str) -> str:
    if not isinstance(raw, str):
        raise AddressError("e-mail address must be text")
    try:
        validated = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from None
    # The library keeps the local part's case (RFC 5321 allows case-sensitive mailboxes), but
    # the API contract is lower-cased addresses so that case variants share one conversation.
    return validated.normalized.lower()


def is_http_url(raw: str) -> bool:
    if not isinstance(raw, str) or not raw or len(raw) > _URL_MAX:
        return False
    # urlsplit silently drops tabs and newlines, so such a URL would not be the one we checked.
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs") for ch in raw):
        return False
    try:
        parts = urlsplit(raw)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def conversation_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)
