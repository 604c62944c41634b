"""Quiet-hours windows placed around the present, so that tests never wait for a real night."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def window_around_now(
    zone: str, *, started: timedelta = timedelta(hours=1), ends: timedelta = timedelta(hours=1)
) -> tuple[str, str]:
    """(start, end) as ``HH:MM`` in ``zone``: a window that began ``started`` ago and ends
    ``ends`` from now (rounded to the minute), which may wrap past midnight."""
    local = datetime.now(UTC).astimezone(ZoneInfo(zone))
    return _clock(local - started), _clock(local + ends)


def window_ended(zone: str) -> tuple[str, str]:
    """A window that ended an hour ago (and starts again in twenty)."""
    return window_around_now(zone, started=timedelta(hours=4), ends=-timedelta(hours=1))


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M")
