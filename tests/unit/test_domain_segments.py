import itertools

import gsm0338
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain import SegmentInfo, count_segments, split_segments

FAST = settings(max_examples=300, deadline=None)
_CODEC = gsm0338.Codec()

# Independent of the implementation's tables: the reference codec is the oracle for GSM-7.
GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"  # noqa: E501
GSM_EXTENSION = "\f^{}\\[~]|€"


def septets(text: str) -> int:
    encoded, _ = _CODEC.encode(text)
    return len(encoded)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_reference_alphabet_matches_the_codec() -> None:
    assert all(septets(ch) == 1 for ch in GSM_BASIC)
    assert all(septets(ch) == 2 for ch in GSM_EXTENSION)


def test_empty_body_has_no_segments() -> None:
    assert count_segments("") == SegmentInfo("GSM7", 0, 0, ())
    assert split_segments("") == []


@pytest.mark.parametrize(
    ("body", "encoding", "segments", "units"),
    [
        ("a", "GSM7", 1, 1),
        ("a" * 160, "GSM7", 1, 160),
        ("a" * 161, "GSM7", 2, 161),
        ("a" * 306, "GSM7", 2, 306),
        ("a" * 307, "GSM7", 3, 307),
        ("€" * 80, "GSM7", 1, 160),
        ("€" * 80 + "a", "GSM7", 2, 161),
        # Same 306 septets as two full parts, but the € cannot straddle the boundary.
        ("a" * 152 + "€" + "a" * 152, "GSM7", 3, 306),
        ("ж" * 70, "UCS2", 1, 70),
        ("ж" * 71, "UCS2", 2, 71),
        ("ж" * 134, "UCS2", 2, 134),
        ("ж" * 135, "UCS2", 3, 135),
        ("😀" * 35, "UCS2", 1, 70),
        ("😀" * 35 + "a", "UCS2", 2, 71),
        # The emoji's surrogate pair would straddle unit 67, so it opens the second part.
        ("ж" * 66 + "😀" + "ж" * 3, "UCS2", 2, 71),
        ("a" * 159 + "ж", "UCS2", 3, 160),
    ],
)
def test_boundaries(body: str, encoding: str, segments: int, units: int) -> None:
    info = count_segments(body)
    assert (info.encoding, info.segments, info.units) == (encoding, segments, units)
    assert len(split_segments(body)) == segments


def test_escape_pair_moves_whole_to_the_next_part() -> None:
    parts = split_segments("a" * 152 + "€" + "a" * 152)
    assert [septets(p) for p in parts] == [152, 153, 1]
    assert parts[1].startswith("€")


def test_surrogate_pair_moves_whole_to_the_next_part() -> None:
    parts = split_segments("ж" * 66 + "😀" + "ж" * 3)
    assert parts == ["ж" * 66, "😀жжж"]


def test_extension_characters_cost_two_septets() -> None:
    info = count_segments(GSM_EXTENSION)
    assert info.encoding == "GSM7"
    assert info.units == 2 * len(GSM_EXTENSION)


def test_whole_basic_alphabet_is_gsm7() -> None:
    info = count_segments(GSM_BASIC)
    assert (info.encoding, info.units, info.non_gsm_characters) == ("GSM7", len(GSM_BASIC), ())


@pytest.mark.parametrize(
    ("body", "culprits"),
    [
        ("Ça va? ça va.", ("ç",)),
        ("héllo wörld ж ж 😀 ж", ("ж", "😀")),
        ("smart \u201cquotes\u201d \u2018here\u2019", ("\u201c", "\u201d", "\u2018", "\u2019")),
        ("tab\there", ("\t",)),
        ("escape \x1b itself", ("\x1b",)),
        ("á", ("á",)),
    ],
)
def test_non_gsm_characters_are_distinct_in_first_seen_order(
    body: str, culprits: tuple[str, ...]
) -> None:
    info = count_segments(body)
    assert info.encoding == "UCS2"
    assert info.non_gsm_characters == culprits


def test_segment_info_is_immutable() -> None:
    info = count_segments("hi")
    with pytest.raises(AttributeError):
        info.segments = 2  # type: ignore[misc]


gsm_text = st.text(
    alphabet=st.one_of(st.sampled_from(GSM_BASIC), st.sampled_from(GSM_EXTENSION)), max_size=500
)
ucs2_text = st.builds(
    lambda prefix, odd, suffix: prefix + odd + suffix,
    gsm_text,
    st.characters(codec="utf-8").filter(lambda ch: septets_or_none(ch) is None),
    st.text(max_size=200),
)
any_text = st.one_of(gsm_text, ucs2_text, st.text(max_size=400))


def septets_or_none(ch: str) -> int | None:
    if ch == "\x1b":
        return None
    try:
        return septets(ch)
    except UnicodeEncodeError:
        return None


@FAST
@given(any_text)
def test_split_reassembles_and_agrees_with_count(body: str) -> None:
    parts = split_segments(body)
    assert "".join(parts) == body
    assert len(parts) == count_segments(body).segments
    assert all(parts)


@FAST
@given(any_text)
def test_encoding_and_units_match_the_reference_codecs(body: str) -> None:
    info = count_segments(body)
    if info.encoding == "GSM7":
        assert "\x1b" not in body
        assert info.units == septets(body)
        assert info.non_gsm_characters == ()
    else:
        assert info.units == utf16_units(body)
        assert info.non_gsm_characters
        assert len(set(info.non_gsm_characters)) == len(info.non_gsm_characters)
        assert all(septets_or_none(ch) is None for ch in info.non_gsm_characters)
        assert {ch for ch in body if septets_or_none(ch) is None} == set(info.non_gsm_characters)


@FAST
@given(any_text)
def test_every_part_fits_and_no_pair_is_split(body: str) -> None:
    info = count_segments(body)
    parts = split_segments(body)
    measure = septets if info.encoding == "GSM7" else utf16_units
    single, multi = (160, 153) if info.encoding == "GSM7" else (70, 67)
    limit = single if len(parts) == 1 else multi
    assert all(measure(part) <= limit for part in parts)
    if info.encoding == "GSM7":
        # Encoding parts one by one gives the same septets as the whole: no escape was split.
        assert b"".join(_CODEC.encode(part)[0] for part in parts) == _CODEC.encode(body)[0]
    else:
        # Strict UTF-16 encoding of each part fails on a half surrogate pair.
        assert b"".join(part.encode("utf-16-le") for part in parts) == body.encode("utf-16-le")


@FAST
@given(any_text)
def test_parts_are_packed_greedily(body: str) -> None:
    parts = split_segments(body)
    if len(parts) < 2:
        return
    gsm = count_segments(body).encoding == "GSM7"
    measure = septets if gsm else utf16_units
    limit = 153 if gsm else 67
    for part, following in itertools.pairwise(parts):
        assert measure(part + following[0]) > limit
