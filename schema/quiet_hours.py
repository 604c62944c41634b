"""The account's quiet hours in the API: what ``quietHours`` reads and ``setQuietHours`` sets."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gateway.domain.quiet_hours import DEFAULT_ZONE, format_clock
from gateway.domain.quiet_hours import QuietHours as Setting
from schema.results import InvalidInput


@strawberry.type(
    description=(
        "A daily window in which nothing is sent to a recipient, read in the recipient's local "
        "time. A message due inside it waits until it ends (SCHEDULED)."
    )
)
class QuietHours:
    enabled: bool
    start: str | None = strawberry.field(
        description="Local time of day the window starts (HH:MM, inclusive); null when off."
    )
    end: str | None = strawberry.field(
        description="Local time of day the window ends (HH:MM, exclusive); null when off."
    )
    default_time_zone: str = strawberry.field(
        description="IANA zone of e-mail recipients and of numbers whose own zone is not known."
    )

    @classmethod
    def from_domain(cls, hours: Setting) -> QuietHours:
        return cls(
            enabled=hours.enabled,
            start=format_clock(hours.start),
            end=format_clock(hours.end),
            default_time_zone=hours.default_zone,
        )


@strawberry.input(description="Replaces the account's quiet hours; no start and end: off.")
class QuietHoursInput:
    start: str | None = strawberry.field(
        default=None, description="HH:MM, local time; set together with end."
    )
    end: str | None = strawberry.field(
        default=None, description="HH:MM, local time; before start for a window past midnight."
    )
    default_time_zone: str = strawberry.field(
        default=DEFAULT_ZONE, description="IANA zone name, e.g. Europe/Amsterdam."
    )


@strawberry.type
class QuietHoursSet:
    quiet_hours: QuietHours


SetQuietHoursResult = Annotated[
    QuietHoursSet | InvalidInput, strawberry.union("SetQuietHoursResult")
]
