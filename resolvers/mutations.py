"""Root mutation fields: translate service outcomes into the contract's result unions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import strawberry
from graphql import GraphQLResolveInfo
from strawberry.types import Info

from gateway.domain.messages import FieldProblem as DomainProblem
from gateway.domain.messages import SendRequest
from gateway.domain.results import Accepted, Suppressed
from gateway.services.operator import Changed, OperatorOutcome, OperatorService, Refused
from gateway.services.sending import Invalid, SendOutcome
from resolvers.inputs import send_request, to_send_request
from schema.context import context_of
from schema.errors import bad_input
from schema.ids import decode_uuid
from schema.pacing import SenderAddress, SenderRateSet, SetSenderRateInput, SetSenderRateResult
from schema.quiet_hours import QuietHours, QuietHoursInput, QuietHoursSet, SetQuietHoursResult
from schema.results import (
    CancelMessageResult,
    FieldProblem,
    IdempotencyConflict,
    InvalidInput,
    MessageAccepted,
    NotCancelable,
    NotFound,
    RecipientSuppressed,
    RetryMessageResult,
    SendMessageInput,
    SendMessageResult,
)
from schema.types import Message


def invalid_input(problems: list[DomainProblem]) -> InvalidInput:
    return InvalidInput(problems=[FieldProblem(field=p.field, problem=p.problem) for p in problems])


def _result(outcome: SendOutcome) -> SendMessageResult:
    if isinstance(outcome, Accepted):
        return MessageAccepted(
            message=Message.from_record(outcome.message), replayed=outcome.replayed
        )
    if isinstance(outcome, Invalid):
        return invalid_input(outcome.problems)
    if isinstance(outcome, Suppressed):
        return RecipientSuppressed(reason=outcome.reason.value, since=outcome.since)
    original = Message.from_record(outcome.original) if outcome.original else None
    return IdempotencyConflict(reason=outcome.reason, original=original)


async def _send(
    info: Info | GraphQLResolveInfo[Any], requests: list[SendRequest]
) -> list[SendOutcome]:
    context, account, _ = context_of(info)
    return await context.services.sending.send(account.id, requests)


def _check_batch_size(info: Info | GraphQLResolveInfo[Any], size: int) -> None:
    limit = context_of(info)[0].services.max_batch_size
    if size > limit:
        raise bad_input(f"sendMessages takes at most {limit} inputs, got {size}")


# The typed resolvers define the schema, and run when the `coerced_sends` fast path is off.
# With it on, schema/coerced_sends.py executes the send mutations with the `_coerced` pair
# below (named in resolvers/root.py) instead, on graphql-core's coerced arguments (see there why).


async def send_message(info: strawberry.Info, input: SendMessageInput) -> SendMessageResult:
    [outcome] = await _send(info, [to_send_request(input)])
    return _result(outcome)


async def send_messages(
    info: strawberry.Info, inputs: list[SendMessageInput]
) -> list[SendMessageResult]:
    _check_batch_size(info, len(inputs))
    return [_result(o) for o in await _send(info, [to_send_request(i) for i in inputs])]


async def send_message_coerced(
    _root: object, info: GraphQLResolveInfo[Any], input: dict[str, Any]
) -> SendMessageResult:
    [outcome] = await _send(info, [send_request(input)])
    return _result(outcome)


async def send_messages_coerced(
    _root: object, info: GraphQLResolveInfo[Any], inputs: list[dict[str, Any]]
) -> list[SendMessageResult]:
    _check_batch_size(info, len(inputs))
    return [_result(o) for o in await _send(info, [send_request(i) for i in inputs])]


#: An operator action: ``OperatorService.cancel`` or ``OperatorService.retry``.
OperatorAction = Callable[[OperatorService, UUID, UUID], Awaitable[OperatorOutcome]]


async def _operate(
    info: strawberry.Info, id: strawberry.ID, action: OperatorAction
) -> CancelMessageResult | RetryMessageResult:
    context, account, _ = context_of(info)
    message_id = decode_uuid(id, "Message")
    if message_id is None:
        return NotFound(id=id)
    outcome = await action(context.services.operator, account.id, message_id)
    if isinstance(outcome, Changed):
        return MessageAccepted(message=Message.from_record(outcome.message), replayed=False)
    if isinstance(outcome, Refused):
        return NotCancelable(current=Message.from_record(outcome.current))
    return NotFound(id=id)


async def cancel_message(info: strawberry.Info, id: strawberry.ID) -> CancelMessageResult:
    return await _operate(info, id, OperatorService.cancel)


async def retry_message(info: strawberry.Info, id: strawberry.ID) -> RetryMessageResult:
    return await _operate(info, id, OperatorService.retry)


async def set_quiet_hours(info: strawberry.Info, input: QuietHoursInput) -> SetQuietHoursResult:
    context, account, _ = context_of(info)
    outcome = await context.services.quiet_hours.set(
        account.id, input.start, input.end, input.default_time_zone
    )
    if isinstance(outcome, list):
        return invalid_input(outcome)
    return QuietHoursSet(quiet_hours=QuietHours.from_domain(outcome))


async def set_sender_rate(info: strawberry.Info, input: SetSenderRateInput) -> SetSenderRateResult:
    context, account, _ = context_of(info)
    outcome = await context.services.sender_rates.set_rate(
        account.id, input.address, input.segments_per_second
    )
    if isinstance(outcome, list):
        return invalid_input(outcome)
    return SenderRateSet(sender_address=SenderAddress.from_domain(outcome))
