"""Quiet hours: the daily window in which an account sends nothing, in the recipient's time.

The window is a wall-clock time of day, from ``start`` (inclusive) to ``end`` (exclusive), and
may wrap past midnight (21:00 to 08:00). A phone number's local time comes from the time zones
of its region in phonenumbers' data; where a number spans several zones, a message may go only
when it is outside the window in every one of them. E-mail addresses, and numbers whose zone
is not known, follow the account's default zone.

Pure and cached: the same recipients and the same window ends come by again and again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_time_zones

from .channels import Channel
from .messages import FieldProblem

DEFAULT_ZONE = "UTC"
#: The ``reason`` of a message held for quiet hours, in its audit trail.
REASON = "quiet_hours"
#: Longest zone name kept (the longest IANA name is about 30 characters).
ZONE_NAME_MAX = 64

_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
#: A number whose zones leave no common time outside the window within this span is held as
#: if its zone were unknown (the window covers the whole day across its zones).
_SEARCH_SPAN = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """An account's setting: off unless both ends are set."""

    start: time | None = None
    end: time | None = None
    default_zone: str = DEFAULT_ZONE

    @property
    def enabled(self) -> bool:
        return self.start is not None and self.end is not None


OFF = QuietHours()


@dataclass(frozen=True, slots=True)
class QuietDeferral:
    """A message that must wait for the end of quiet hours: until when, and in which zones
    its recipient's time was read."""

    until: datetime
    zones: tuple[str, ...]

    def detail(self) -> dict[str, Any]:
        """What its audit-trail event says about it."""
        return {"reason": REASON, "until": self.until.isoformat(), "timeZones": list(self.zones)}


def parse_quiet_hours(
    start: str | None, end: str | None, default_zone: str
) -> QuietHours | list[FieldProblem]:
    """The setting from its API form (``HH:MM`` ends, both or neither; an IANA zone name)."""
    problems: list[FieldProblem] = []
    start_at = _clock("start", start, problems)
    end_at = _clock("end", end, problems)
    if (start is None) != (end is None):
        missing = "end" if end is None else "start"
        problems.append(FieldProblem(missing, "start and end are set together, or neither (off)"))
    elif start_at is not None and start_at == end_at:
        problems.append(FieldProblem("end", "must differ from start"))
    if zone_of(default_zone) is None:
        problems.append(
            FieldProblem("defaultTimeZone", "must be an IANA time zone, e.g. Europe/Amsterdam")
        )
    if problems:
        return problems
    return QuietHours(start_at, end_at, default_zone)


def format_clock(value: time | None) -> str | None:
    return None if value is None else value.strftime("%H:%M")


def _clock(field: str, raw: str | None, problems: list[FieldProblem]) -> time | None:
    if raw is None:
        return None
    found = _CLOCK.fullmatch(raw)
    if found is None:
        problems.append(FieldProblem(field, "must be a time of day as HH:MM (00:00 to 23:59)"))
        return None
    return time(int(found.group(1)), int(found.group(2)))


@lru_cache(maxsize=1024)
def zone_of(name: str) -> ZoneInfo | None:
    """The zone of an IANA name; None for a name this system does not know."""
    if not name or len(name) > ZONE_NAME_MAX:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@lru_cache(maxsize=65536)
def phone_zones(number: str) -> tuple[str, ...]:
    """The zones of an E.164 number's region that this system knows; () when none is known."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return ()
    names = phone_time_zones.time_zones_for_number(parsed)
    return tuple(
        sorted(
            name
            for name in names
            if name != phone_time_zones.UNKNOWN_TIMEZONE and zone_of(name) is not None
        )
    )


def quiet_deferral(
    hours: QuietHours, channel: Channel, recipient: str, at: datetime
) -> QuietDeferral | None:
    """When a message to ``recipient`` due at ``at`` may go, if ``at`` is inside the window;
    None when it may go at ``at``."""
    if not hours.enabled:
        return None
    if channel is not Channel.EMAIL:
        zones = phone_zones(recipient)
        if zones:
            until = _outside_everywhere(hours, zones, at)
            if until is not None:
                return None if until == at else QuietDeferral(until, zones)
    zones = (hours.default_zone,)
    until = _outside_everywhere(hours, zones, at)
    return None if until is None or until == at else QuietDeferral(until, zones)


def _outside_everywhere(hours: QuietHours, names: tuple[str, ...], at: datetime) -> datetime | None:
    """The first instant from ``at`` on that is outside the window in every zone; None when
    there is none soon (the zones' windows cover the whole day between them)."""
    zones = [zone for zone in map(zone_of, names) if zone is not None]
    if not zones:
        return None
    moment = at
    while moment - at <= _SEARCH_SPAN:
        ends = [_window_end(hours, zone, moment) for zone in zones if _inside(hours, moment, zone)]
        if not ends:
            return moment
        # Always forward, so that the search ends whatever the zones' rules hold.
        moment = max(max(ends), moment + timedelta(seconds=1))
    return None


def _inside(hours: QuietHours, moment: datetime, zone: ZoneInfo) -> bool:
    assert hours.start is not None and hours.end is not None
    wall = moment.astimezone(zone).time()
    if hours.start < hours.end:
        return hours.start <= wall < hours.end
    return wall >= hours.start or wall < hours.end


def _window_end(hours: QuietHours, zone: ZoneInfo, moment: datetime) -> datetime:
    """The end of the window that ``moment`` is inside of, in ``zone``."""
    assert hours.start is not None and hours.end is not None
    local = moment.astimezone(zone)
    day = local.date()
    if hours.start > hours.end and local.time() >= hours.start:
        day += timedelta(days=1)  # wrapped past midnight: it ends tomorrow
    instants = _instants_of(zone, day, hours.end)
    return next((instant for instant in instants if instant > moment), instants[-1])


@lru_cache(maxsize=4096)
def _instants_of(zone: ZoneInfo, day: date, wall: time) -> tuple[datetime, ...]:
    """The instants (UTC, ascending) at which the clocks of ``zone`` first read ``wall`` or
    later on ``day``: two on a day that repeats ``wall`` (clocks go back), and on a day that
    skips it (clocks go forward) the one at which they jump past it."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first < second:
        return first, second
    if first == second:
        return (first,)
    # Skipped: ``second`` (read with the offset after the jump) lies before it, ``first``
    # after it. Transitions fall on whole seconds: search them for the jump.
    before, after = int(second.timestamp()), int(first.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        reads = datetime.fromtimestamp(middle, zone).replace(tzinfo=None)
        if reads >= naive:
            after = middle
        else:
            before = middle
    return (datetime.fromtimestamp(after, UTC),)
