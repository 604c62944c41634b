"""GraphQL types of suppressions: the entries, their pages, and the results of adding and
removing one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

import strawberry
from strawberry.scalars import JSON

from gateway.domain.channels import Channel
from gateway.domain.suppressions import Suppression as SuppressionRecord
from gateway.domain.suppressions import SuppressionReason
from schema.ids import encode_id
from schema.results import InvalidInput, NotFound
from schema.types import PageInfo


@strawberry.type(description="A recipient this account does not send to.")
class Suppression:
    id: strawberry.ID
    address: str
    channel: Channel | None = strawberry.field(description="null: every channel.")
    from_: str | None = strawberry.field(
        name="from", description="The sender address it applies to; null: every sender."
    )
    reason: SuppressionReason
    since: datetime
    detail: JSON | None = strawberry.field(
        description="Where it came from: the inbound message, the provider's event, a note."
    )

    @classmethod
    def from_record(cls, record: SuppressionRecord) -> Suppression:
        return cls(
            id=strawberry.ID(encode_id("Suppression", record.id)),
            address=record.address,
            channel=record.channel,
            from_=record.sender,
            reason=record.reason,
            since=record.created_at,
            detail=cast(JSON, record.detail),
        )


@strawberry.type
class SuppressionEdge:
    cursor: str
    node: Suppression


@strawberry.type
class SuppressionConnection:
    edges: list[SuppressionEdge]
    page_info: PageInfo


@strawberry.input
class AddSuppressionInput:
    address: str
    channel: Channel | None = strawberry.field(default=None, description="null: every channel.")
    from_: str | None = strawberry.field(
        default=None, name="from", description="Only for this sender address; null: every one."
    )
    note: str | None = strawberry.field(default=None, description="Kept in its detail.")


@strawberry.type
class SuppressionAdded:
    suppression: Suppression
    created: bool = strawberry.field(
        description="False when an entry of the same scope existed already (it is kept as is)."
    )


@strawberry.type
class SuppressionRemoved:
    suppression: Suppression


@strawberry.type(
    description=("The recipient opted out themselves (STOP_KEYWORD): removing it needs a `reason`.")
)
class RemovalReasonRequired:
    suppression: Suppression


AddSuppressionResult = Annotated[
    SuppressionAdded | InvalidInput, strawberry.union("AddSuppressionResult")
]
RemoveSuppressionResult = Annotated[
    SuppressionRemoved | RemovalReasonRequired | NotFound | InvalidInput,
    strawberry.union("RemoveSuppressionResult"),
]
