"""Sender addresses and their pacing rates in the API: ``senderAddresses`` and
``setSenderRate``."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gateway.domain.pacing import SenderKind, SenderRate
from schema.results import InvalidInput

strawberry.enum(
    SenderKind,
    name="SenderKind",
    description=(
        "What a sender is paced as: a long code, a toll-free number (NANP 800, 833, 844, 855, "
        "866, 877, 888), a short code (5 or 6 digits), or an e-mail domain."
    ),
)


@strawberry.type(
    description=(
        "A sender number or e-mail address of the account, and the rate its messages leave at "
        "(summed over every worker)."
    )
)
class SenderAddress:
    address: str
    kind: SenderKind
    segments_per_second: float = strawberry.field(
        description=(
            "Segments per second (e-mail: messages per second, shared by every address of the "
            "domain)."
        )
    )
    rate_is_default: bool = strawberry.field(
        description="True when the rate is its kind's default rather than one set for it."
    )

    @classmethod
    def from_domain(cls, rate: SenderRate) -> SenderAddress:
        return cls(
            address=rate.address,
            kind=rate.kind,
            segments_per_second=rate.segments_per_second,
            rate_is_default=rate.is_default,
        )


@strawberry.input(description="The pacing rate of one of the account's sender addresses.")
class SetSenderRateInput:
    address: str = strawberry.field(
        description="A sender number or e-mail address of the account (`add-address`)."
    )
    segments_per_second: float | None = strawberry.field(
        default=None,
        description="Above 0, at most 10000; null: back to the default of its kind.",
    )


@strawberry.type
class SenderRateSet:
    sender_address: SenderAddress


SetSenderRateResult = Annotated[
    SenderRateSet | InvalidInput, strawberry.union("SetSenderRateResult")
]
