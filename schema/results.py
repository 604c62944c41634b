"""Inputs and the result types of mutations: expected failures are union members, not errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from gateway.domain.channels import Channel
from schema.types import Message


@strawberry.input
class SendMessageInput:
    channel: Channel
    from_: str = strawberry.field(name="from")
    to: str
    body: str | None = None
    attachments: list[str] | None = None
    idempotency_key: str | None = strawberry.field(
        default=None,
        description=(
            "Same key + same input within the retention window returns the first result "
            "(replayed: true); same key + different input is IdempotencyConflict."
        ),
    )
    send_at: datetime | None = strawberry.field(
        default=None, description="Deliver at this time instead of now (SCHEDULED until then)."
    )
    metadata: JSON | None = None
    bypass_quiet_hours: bool | None = strawberry.field(
        default=False,
        description=(
            "A transactional message (e.g. a one-time code): sent inside the recipient's quiet "
            "hours too."
        ),
    )


@strawberry.type
class MessageAccepted:
    message: Message
    replayed: bool = strawberry.field(
        description=(
            "True when this answer replays an earlier request with the same idempotency key."
        )
    )


@strawberry.type
class FieldProblem:
    field: str
    problem: str


@strawberry.type
class InvalidInput:
    problems: list[FieldProblem]


@strawberry.type
class IdempotencyConflict:
    reason: str
    original: Message | None


@strawberry.type(
    description=(
        "Refused: the recipient is suppressed for this sender and channel (see `suppressions`);\n"
        "nothing was stored or sent."
    )
)
class RecipientSuppressed:
    reason: str = strawberry.field(
        description="A SuppressionReason value, e.g. STOP_KEYWORD or HARD_BOUNCE."
    )
    since: datetime


@strawberry.type
class NotFound:
    id: strawberry.ID


@strawberry.type
class NotCancelable:
    current: Message


SendMessageResult = Annotated[
    MessageAccepted | InvalidInput | IdempotencyConflict | RecipientSuppressed,
    strawberry.union("SendMessageResult"),
]
CancelMessageResult = Annotated[
    MessageAccepted | NotFound | NotCancelable, strawberry.union("CancelMessageResult")
]
RetryMessageResult = Annotated[
    MessageAccepted | NotFound | NotCancelable, strawberry.union("RetryMessageResult")
]


@strawberry.type(description="What sending this input would cost, without sending it.")
class MessagePreview:
    valid: bool
    problems: list[FieldProblem]
    normalized_from: str | None
    normalized_to: str | None
    segments: int | None
    encoding: str | None
    non_gsm_characters: list[str] = strawberry.field(
        description="Characters that force UCS-2 encoding."
    )
