"""SMS segmentation the way carriers bill it.

A message that fits one PDU uses the whole payload; a longer one is sent as concatenated
parts, each losing room to the user-data header (160 -> 153 septets, 70 -> 67 code units).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from gsm0338.charset import BASIC_CHARACTER_SET, BASIC_CHARACTER_SET_EXTENSION

GSM7 = "GSM7"
UCS2 = "UCS2"

_GSM7_SINGLE = 160
_GSM7_MULTI = 153
_UCS2_SINGLE = 70
_UCS2_MULTI = 67

_ESCAPE = "\x1b"
# ESC is the prefix of extension pairs, not a character a sender can put in text: a literal one
# would make the handset swallow the following character.
_GSM7_BASIC: frozenset[str] = frozenset(
    unicodedata.lookup(name) for name in BASIC_CHARACTER_SET.values()
) - {_ESCAPE}
_GSM7_EXTENSION: frozenset[str] = frozenset(
    unicodedata.lookup(name) for name in BASIC_CHARACTER_SET_EXTENSION.values()
)

# The common body, basic-set characters only, is recognised in one pass of the regex engine:
# each of its characters is one septet and no part boundary can split a pair.
_BASIC_ONLY = re.compile("[" + "".join(re.escape(ch) for ch in sorted(_GSM7_BASIC)) + "]*")


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str
    segments: int
    units: int
    non_gsm_characters: tuple[str, ...]


def _septets(ch: str) -> int:
    return 2 if ch in _GSM7_EXTENSION else 1


def _utf16_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _non_gsm(body: str) -> tuple[str, ...]:
    seen = dict.fromkeys(ch for ch in body if ch not in _GSM7_BASIC and ch not in _GSM7_EXTENSION)
    return tuple(seen)


def _cut_points(body: str, cost: Callable[[str], int], limit: int) -> list[int]:
    # Cutting only between characters keeps escape pairs and surrogate pairs whole: a character
    # that would straddle the limit moves to the next part, leaving the previous one short.
    starts = [0]
    used = 0
    for index, ch in enumerate(body):
        weight = cost(ch)
        if used + weight > limit:
            starts.append(index)
            used = 0
        used += weight
    return starts


def _scheme(non_gsm: tuple[str, ...]) -> tuple[str, Callable[[str], int], int, int]:
    if non_gsm:
        return UCS2, _utf16_units, _UCS2_SINGLE, _UCS2_MULTI
    return GSM7, _septets, _GSM7_SINGLE, _GSM7_MULTI


def count_segments(body: str) -> SegmentInfo:
    if _BASIC_ONLY.fullmatch(body):
        units = len(body)
        segments = 0 if not body else 1 if units <= _GSM7_SINGLE else -(-units // _GSM7_MULTI)
        return SegmentInfo(GSM7, segments, units, ())
    non_gsm = _non_gsm(body)
    encoding, cost, single, multi = _scheme(non_gsm)
    units = sum(cost(ch) for ch in body)
    if not body:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        segments = len(_cut_points(body, cost, multi))
    return SegmentInfo(encoding, segments, units, non_gsm)


def split_segments(body: str) -> list[str]:
    if not body:
        return []
    _, cost, single, multi = _scheme(_non_gsm(body))
    if sum(cost(ch) for ch in body) <= single:
        return [body]
    starts = _cut_points(body, cost, multi)
    return [body[start:end] for start, end in zip(starts, [*starts[1:], len(body)], strict=True)]
