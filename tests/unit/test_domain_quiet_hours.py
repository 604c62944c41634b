"""gateway.domain.quiet_hours: the window in the recipient's local time, and until when a
message due inside it waits (past midnight, several zones, DST days, e-mail, unknown zones)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from gateway.domain import quiet_hours as quiet
from gateway.domain.channels import Channel
from gateway.domain.messages import FieldProblem
from gateway.domain.quiet_hours import (
    OFF,
    QuietDeferral,
    QuietHours,
    parse_quiet_hours,
    phone_zones,
    quiet_deferral,
)

NIGHT = QuietHours(time(21, 0), time(8, 0))  # the usual one: wraps past midnight
LONDON = "+442079460018"
LOS_ANGELES = "+14155550199"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def until(hours: QuietHours, at: datetime, to: str = "ops@example.com") -> datetime | None:
    channel = Channel.EMAIL if "@" in to else Channel.SMS
    found = quiet_deferral(hours, channel, to, at)
    return None if found is None else found.until


# ----------------------------------------------------------------------------- the setting


def test_the_api_form_parses_to_the_setting() -> None:
    assert parse_quiet_hours("21:00", "08:00", "Europe/Amsterdam") == QuietHours(
        time(21), time(8), "Europe/Amsterdam"
    )
    assert parse_quiet_hours(None, None, "UTC") == OFF
    assert not OFF.enabled and NIGHT.enabled


@pytest.mark.parametrize(
    ("start", "end", "zone", "problems"),
    [
        ("21:00", None, "UTC", [("end", "start and end are set together, or neither (off)")]),
        (None, "08:00", "UTC", [("start", "start and end are set together, or neither (off)")]),
        ("08:00", "08:00", "UTC", [("end", "must differ from start")]),
        ("24:00", "8:00", "UTC", [("start", "HH:MM"), ("end", "HH:MM")]),
        ("21:00", "08:00", "Mars/Olympus", [("defaultTimeZone", "IANA time zone")]),
        ("21:00", "08:00", "../../etc/passwd", [("defaultTimeZone", "IANA time zone")]),
        ("21:00", "08:00", "", [("defaultTimeZone", "IANA time zone")]),
    ],
)
def test_bad_settings_name_every_field_at_fault(
    start: str | None, end: str | None, zone: str, problems: list[tuple[str, str]]
) -> None:
    found = parse_quiet_hours(start, end, zone)
    assert isinstance(found, list)
    assert all(isinstance(p, FieldProblem) for p in found)
    assert [p.field for p in found] == [field for field, _ in problems]
    for problem, (_, words) in zip(found, problems, strict=True):
        assert words in problem.problem


# -------------------------------------------------------------------------- the window math


def test_off_never_holds() -> None:
    assert until(OFF, utc(2026, 1, 15, 23, 0)) is None


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 1, 15, 20, 59), None),  # just before
        (utc(2026, 1, 15, 21, 0), utc(2026, 1, 16, 8, 0)),  # start is inside
        (utc(2026, 1, 15, 23, 30), utc(2026, 1, 16, 8, 0)),  # before midnight: ends tomorrow
        (utc(2026, 1, 16, 0, 0), utc(2026, 1, 16, 8, 0)),  # after midnight: ends today
        (utc(2026, 1, 16, 7, 59, 59), utc(2026, 1, 16, 8, 0)),
        (utc(2026, 1, 16, 8, 0), None),  # end is outside
        (utc(2026, 1, 16, 12, 0), None),
    ],
)
def test_a_window_past_midnight(at: datetime, expected: datetime | None) -> None:
    assert until(NIGHT, at) == expected


def test_a_window_within_one_day() -> None:
    lunch = QuietHours(time(12, 0), time(13, 30))
    assert until(lunch, utc(2026, 1, 15, 11, 59)) is None
    assert until(lunch, utc(2026, 1, 15, 12, 0)) == utc(2026, 1, 15, 13, 30)
    assert until(lunch, utc(2026, 1, 15, 13, 30)) is None
    assert until(lunch, utc(2026, 1, 15, 23, 0)) is None


def test_e_mail_follows_the_default_zone() -> None:
    amsterdam = QuietHours(time(21), time(8), "Europe/Amsterdam")  # UTC+1 in January
    assert until(amsterdam, utc(2026, 1, 15, 19, 59)) is None
    assert until(amsterdam, utc(2026, 1, 15, 20, 0)) == utc(2026, 1, 16, 7, 0)
    assert until(amsterdam, utc(2026, 1, 16, 7, 0)) is None


def test_a_number_follows_its_own_zone_not_the_default() -> None:
    assert phone_zones(LONDON) == ("Europe/London",)
    assert phone_zones(LOS_ANGELES) == ("America/Los_Angeles",)
    tokyo_default = QuietHours(time(21), time(8), "Asia/Tokyo")
    # 22:00 UTC: 14:00 in Los Angeles (PST), 22:00 in London, 07:00 next morning in Tokyo.
    at = utc(2026, 1, 15, 22, 0)
    assert until(tokyo_default, at, LOS_ANGELES) is None
    assert until(tokyo_default, at, LONDON) == utc(2026, 1, 16, 8, 0)
    assert until(tokyo_default, at) == utc(2026, 1, 15, 23, 0)  # e-mail: Tokyo's 08:00


def test_a_number_without_a_known_zone_follows_the_default() -> None:
    freephone = "+80012345678"  # international freephone: no region, so no zone
    assert phone_zones(freephone) == ()
    amsterdam = QuietHours(time(21), time(8), "Europe/Amsterdam")
    assert until(amsterdam, utc(2026, 1, 15, 20, 0), freephone) == utc(2026, 1, 16, 7, 0)
    assert phone_zones("not a number") == ()


def test_several_zones_hold_until_the_window_is_over_in_every_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zones = ("America/Los_Angeles", "America/New_York")
    monkeypatch.setattr(quiet, "phone_zones", lambda _number: zones)
    # 04:00 UTC: 23:00 in New York, 20:00 in Los Angeles (not yet quiet there).
    at = utc(2026, 1, 15, 4, 0)
    assert quiet_deferral(NIGHT, Channel.SMS, "+1", at) == QuietDeferral(
        utc(2026, 1, 15, 16, 0),
        zones,  # 08:00 in Los Angeles, the later of the two ends
    )
    # 13:00 UTC: 08:00 in New York, 05:00 in Los Angeles: still quiet in one of them.
    assert until(NIGHT, utc(2026, 1, 15, 13, 0), "+1") == utc(2026, 1, 15, 16, 0)
    # 16:00 UTC to 02:00 UTC (21:00 in New York): outside the window in both.
    assert until(NIGHT, utc(2026, 1, 15, 16, 0), "+1") is None
    assert until(NIGHT, utc(2026, 1, 16, 1, 59), "+1") is None
    assert until(NIGHT, utc(2026, 1, 16, 2, 0), "+1") == utc(2026, 1, 16, 16, 0)


def test_zones_whose_windows_cover_the_whole_day_fall_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 21:00 to 08:00 in UTC, UTC+8 and UTC-8 leaves no hour outside all three.
    zones = ("Asia/Shanghai", "America/Los_Angeles", "UTC")
    monkeypatch.setattr(quiet, "phone_zones", lambda _number: zones)
    found = quiet_deferral(NIGHT, Channel.SMS, "+1", utc(2026, 1, 15, 22, 0))
    assert found == QuietDeferral(utc(2026, 1, 16, 8, 0), ("UTC",))
    assert quiet_deferral(NIGHT, Channel.SMS, "+1", utc(2026, 1, 15, 12, 0)) is None


# New York moves its clocks forward at 02:00 on 2026-03-08 (07:00 UTC) and back at 02:00 on
# 2026-11-01 (06:00 UTC), so 02:00-02:59 is skipped in March and 01:00-01:59 repeats in November.
NEW_YORK = "+12125550123"


def test_a_window_ending_in_the_skipped_hour_ends_when_the_clocks_jump() -> None:
    assert phone_zones(NEW_YORK) == ("America/New_York",)
    hours = QuietHours(time(22), time(2, 30))
    # 01:00 EST: the clocks read 03:00 EDT at 07:00 UTC, past 02:30.
    assert until(hours, utc(2026, 3, 8, 6, 0), NEW_YORK) == utc(2026, 3, 8, 7, 0)
    assert until(hours, utc(2026, 3, 8, 7, 0), NEW_YORK) is None


def test_a_window_ending_in_the_repeated_hour_ends_at_each_pass() -> None:
    hours = QuietHours(time(22), time(1, 30))
    # 01:00 EDT, the first pass: its 01:30 comes at 05:30 UTC.
    assert until(hours, utc(2026, 11, 1, 5, 0), NEW_YORK) == utc(2026, 11, 1, 5, 30)
    # 01:10 EST, the second pass (the clocks read 01:xx again): its 01:30 is an hour later.
    assert until(hours, utc(2026, 11, 1, 6, 10), NEW_YORK) == utc(2026, 11, 1, 6, 30)


def test_a_night_across_a_dst_change_ends_at_local_morning() -> None:
    # 21:00 EST on 03-07 to 08:00 EDT on 03-08: a night one hour short.
    assert until(NIGHT, utc(2026, 3, 8, 2, 0), NEW_YORK) == utc(2026, 3, 8, 12, 0)
    # 21:00 EDT on 10-31 to 08:00 EST on 11-01: one hour long.
    assert until(NIGHT, utc(2026, 11, 1, 1, 0), NEW_YORK) == utc(2026, 11, 1, 13, 0)


def test_the_deferral_names_its_reason_time_and_zones() -> None:
    found = quiet_deferral(NIGHT, Channel.SMS, LONDON, utc(2026, 1, 15, 22, 0))
    assert found is not None
    assert found.detail() == {
        "reason": "quiet_hours",
        "until": "2026-01-16T08:00:00+00:00",
        "timeZones": ["Europe/London"],
    }
