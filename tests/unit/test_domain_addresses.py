import re

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.domain import (
    AddressError,
    conversation_key,
    is_http_url,
    normalize_email,
    normalize_phone,
)

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
FAST = settings(max_examples=200, deadline=None)

# --- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+1 (415) 555-0100",
        "415.555.0100",
        "+14155550100",
        "(415) 555-0100",
        "1-415-555-0100",
        "  415 555 0100\t",
        "tel:+1-415-555-0100",
        "\uff0b\uff11 \uff14\uff11\uff15 \uff15\uff15\uff15 \uff10\uff11\uff10\uff10",
    ],
)
def test_phone_spellings_of_one_number_normalize_equal(raw: str) -> None:
    assert normalize_phone(raw) == "+14155550100"


def test_phone_default_region_applies_to_national_numbers_only() -> None:
    assert normalize_phone("020 7183 8750", default_region="GB") == "+442071838750"
    assert normalize_phone("+1 415 555 0100", default_region="GB") == "+14155550100"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "phone number is empty"),
        ("   ", "phone number is empty"),
        ("hello", "not a valid phone number"),
        ("+1 415 555", "not a valid phone number"),
        ("+1 000 555 0100", "not a valid phone number"),
        ("+999 1234 5678", "not a valid phone number"),
        ("1" * 65, "longer than 64"),
        ("+1 415 555 0100 ext. 12", "extensions are not supported"),
    ],
)
def test_phone_rejections_explain_the_problem(raw: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        normalize_phone(raw)


def test_address_error_is_a_value_error() -> None:
    assert issubclass(AddressError, ValueError)


def test_phone_rejects_non_text_with_address_error() -> None:
    with pytest.raises(AddressError):
        normalize_phone(14155550100)  # type: ignore[arg-type]


_SEPARATORS = st.sampled_from(["", " ", "-", ".", "  "])


@st.composite
def us_number_spellings(draw: st.DrawFn) -> tuple[str, str]:
    """One valid US number, and a randomly punctuated way of writing it."""
    line = draw(st.integers(0, 9999))
    digits = f"415555{line:04d}"
    area, exchange, subscriber = digits[:3], digits[3:6], digits[6:]
    if draw(st.booleans()):
        area = f"({area})"
    prefix = draw(st.sampled_from(["", "+1 ", "+1", "1 ", "1-", "+1-"]))
    sep1, sep2 = draw(_SEPARATORS), draw(_SEPARATORS)
    padding = draw(st.sampled_from(["", " ", "\t", "\n "]))
    return f"+1{digits}", f"{padding}{prefix}{area}{sep1}{exchange}{sep2}{subscriber}{padding}"


@FAST
@given(us_number_spellings())
def test_any_punctuation_of_a_number_normalizes_to_its_e164(case: tuple[str, str]) -> None:
    expected, spelling = case
    assert normalize_phone(spelling) == expected


_REGIONS = sorted(
    region
    for region in phonenumbers.SUPPORTED_REGIONS
    if phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
)
_FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


@FAST
@given(st.sampled_from(_REGIONS), st.sampled_from(_FORMATS))
def test_every_region_and_format_round_trips(region: str, fmt: int) -> None:
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert number is not None
    assume(phonenumbers.is_valid_number(number))
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    written = phonenumbers.format_number(number, fmt)
    assert normalize_phone(written, default_region=region) == expected


def _parsed(raw: str) -> str | None:
    """What the general parser makes of ``raw``: its E.164 form, or None when not valid (or
    longer than E.164 allows)."""
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or number.extension:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if E164.match(e164) else None


def _e164_written_numbers() -> list[str]:
    """Every region's example numbers of every type in E.164 form, and the same numbers with
    each digit put in front (national prefixes and leading zeros among them) or a digit
    dropped: the numbers the E.164 shortcut must read exactly as the parser does."""
    written: set[str] = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in _NUMBER_TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            code = str(number.country_code)
            national = e164[1 + len(code) :]
            written.add(e164)
            written.update(f"+{code}{digit}{national}" for digit in "0123456789")
            written.update(f"+{code}{digit}{national[:-1]}" for digit in "0123456789")
            written.add(f"+{code}00{national}")
    return sorted(written)


_NUMBER_TYPES = [
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
    phonenumbers.PhoneNumberType.PAGER,
    phonenumbers.PhoneNumberType.UAN,
]


def test_numbers_written_in_e164_normalize_as_the_parser_reads_them() -> None:
    """A number already written in E.164 skips the general parser when it is valid as
    written; over every region's numbers and their near misses, the outcome is the parser's."""
    diverging = []
    for raw in _e164_written_numbers():
        try:
            ours: str | None = normalize_phone.__wrapped__(raw, "US")
        except AddressError:
            ours = None
        if ours != _parsed(raw):
            diverging.append((raw, ours, _parsed(raw)))
    assert diverging == []


def test_a_valid_e164_number_skips_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    def unused(*args: object) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(phonenumbers, "parse", unused)
    assert normalize_phone.__wrapped__("+14155550100", "US") == "+14155550100"
    assert normalize_phone.__wrapped__("+442071838750", "US") == "+442071838750"
    with pytest.raises(AssertionError, match="parsed"):
        normalize_phone.__wrapped__("+1 415 555 0100", "US")
    # A zero after the country code is not part of the national number's value: such a
    # number is the parser's to judge (here: not a valid one).
    with pytest.raises(AssertionError, match="parsed"):
        normalize_phone.__wrapped__("+1002015550123", "US")


def _check_phone_outcome(raw: str, region: str = "US") -> None:
    try:
        normalized = normalize_phone(raw, region)
    except AddressError as exc:
        assert str(exc)
        return
    assert E164.match(normalized)
    assert normalize_phone(normalized, region) == normalized


@FAST
@given(st.text(max_size=80))
def test_arbitrary_text_yields_e164_or_address_error(raw: str) -> None:
    _check_phone_outcome(raw)


@FAST
@given(st.text(alphabet="0123456789+-(). xet:#*;", max_size=40), st.sampled_from(_REGIONS))
def test_phone_like_text_yields_e164_or_address_error(raw: str, region: str) -> None:
    _check_phone_outcome(raw, region)


@FAST
@given(st.text(max_size=10))
def test_unknown_default_region_is_an_address_error_not_a_crash(region: str) -> None:
    _check_phone_outcome("415 555 0100", region)


# --- e-mail -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["alice@example.com", "Alice@Example.COM", "ALICE@EXAMPLE.COM", "  alice@example.com  "],
)
def test_email_case_variants_normalize_equal(raw: str) -> None:
    assert normalize_email(raw) == "alice@example.com"


def test_email_keeps_international_addresses() -> None:
    assert normalize_email("Jörg@Bücher.DE") == "jörg@bücher.de"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "must have an @-sign"),
        ("alice", "must have an @-sign"),
        ("alice@", "There must be something after the @-sign"),
        ("alice@localhost", "should have a period"),
        ("alice@example.test", "special-use or reserved name"),
        ("a b@example.com", "invalid characters"),
        ("Alice <alice@example.com>", "display name"),
    ],
)
def test_email_rejections_carry_the_library_message(raw: str, message: str) -> None:
    with pytest.raises(AddressError, match=message) as info:
        normalize_email(raw)
    assert str(info.value)


def test_email_rejects_non_text_with_address_error() -> None:
    with pytest.raises(AddressError):
        normalize_email(None)  # type: ignore[arg-type]


_LOCAL = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+_-",
    min_size=1,
    max_size=20,
)
_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_TLD = st.sampled_from(["com", "org", "net", "io", "de", "co.uk"])


@st.composite
def email_case_variants(draw: st.DrawFn) -> tuple[str, str]:
    address = f"{draw(_LOCAL)}@{draw(_LABEL)}.{draw(_TLD)}"
    flips = draw(st.lists(st.booleans(), min_size=len(address), max_size=len(address)))
    variant = "".join(
        ch.swapcase() if flip else ch for ch, flip in zip(address, flips, strict=True)
    )
    return address, variant


@FAST
@given(email_case_variants())
def test_email_case_never_matters(case: tuple[str, str]) -> None:
    address, variant = case
    assert normalize_email(variant) == normalize_email(address) == address.lower()


@FAST
@given(st.one_of(st.text(max_size=60), st.emails()))
def test_arbitrary_text_yields_lowercase_address_or_address_error(raw: str) -> None:
    try:
        normalized = normalize_email(raw)
    except AddressError as exc:
        assert str(exc)
        return
    assert normalized == normalized.lower()
    assert normalize_email(normalized) == normalized


# --- URLs and conversation keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com/a/b.png?x=1#frag",
        "HTTPS://cdn.example.com:8443/img.jpg",
        "https://user:pw@example.com/",
        "https://[2001:db8::1]/pic.gif",
        "https://bücher.de/bild.png",
    ],
)
def test_http_urls_accepted(url: str) -> None:
    assert is_http_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com/a.png",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://",
        "https:///path",
        "http://:80/",
        "https://exa mple.com/",
        "https://example.com/a b.png",
        "https://example.com/\n",
        "https://exam\tple.com/",
        " https://example.com/",
        "https://example.com:99999/",
        "https://[::1/",
        "https://example.com/" + "a" * 2029,
    ],
)
def test_non_http_urls_rejected(url: str) -> None:
    assert not is_http_url(url)


def test_url_length_limit_is_inclusive() -> None:
    base = "https://example.com/"
    assert is_http_url(base + "a" * (2048 - len(base)))
    assert not is_http_url(base + "a" * (2049 - len(base)))


def test_non_text_is_not_a_url() -> None:
    assert not is_http_url(None)  # type: ignore[arg-type]


_PATH = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~/%?=&", max_size=60)


@FAST
@given(st.sampled_from(["http", "https", "HTTP"]), _LABEL, _TLD, _PATH)
def test_well_formed_http_urls_accepted(scheme: str, label: str, tld: str, path: str) -> None:
    assert is_http_url(f"{scheme}://{label}.{tld}/{path}")


@FAST
@given(_LABEL, _PATH, st.sampled_from([" ", "\t", "\n", "\r", "\x00", "\u2028", "\x7f"]))
def test_whitespace_or_control_characters_anywhere_reject(label: str, path: str, bad: str) -> None:
    url = f"https://{label}.com/{path}"
    for position in (0, len(url) // 2, len(url)):
        assert not is_http_url(url[:position] + bad + url[position:])


@FAST
@given(st.text(max_size=80))
def test_url_check_never_raises(raw: str) -> None:
    assert isinstance(is_http_url(raw), bool)


@FAST
@given(st.text(max_size=20), st.text(max_size=20))
def test_conversation_key_is_the_unordered_pair(a: str, b: str) -> None:
    key = conversation_key(a, b)
    assert key == conversation_key(b, a)
    assert sorted(key) == list(key)
    assert sorted(key) == sorted((a, b))


def test_a_number_of_ours_may_be_a_short_code_and_anything_else_is_a_phone_number() -> None:
    from gateway.domain.addresses import normalize_number

    assert normalize_number("12345") == "12345"
    assert normalize_number(" 654321 ") == "654321"
    assert normalize_number("+1 (415) 555-0100") == "+14155550100"
    for not_a_code in ("1234", "1234567", "+12345", "12a45", ""):
        with pytest.raises(AddressError):
            normalize_number(not_a_code)
