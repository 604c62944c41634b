"""Root query fields."""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

import strawberry
from strawberry.dataloader import DataLoader

from gateway.domain.channels import Channel as DomainChannel
from gateway.domain.messages import validate_send
from gateway.domain.segments import count_segments
from gateway.services.clock import utcnow
from resolvers.inputs import to_send_request
from schema.context import context_of
from schema.ids import decode_id, decode_uuid
from schema.pacing import SenderAddress
from schema.quiet_hours import QuietHours
from schema.results import FieldProblem, MessagePreview, SendMessageInput
from schema.types import Conversation, Message, Node

R = TypeVar("R")


async def _load(loader: DataLoader[UUID, R | None], id: strawberry.ID, type_name: str) -> R | None:
    """The record behind a global ``id``; None when it is not an id of ``type_name``."""
    key = decode_uuid(id, type_name)
    return None if key is None else await loader.load(key)


async def message(info: strawberry.Info, id: strawberry.ID) -> Message | None:
    _, _, loaders = context_of(info)
    found = await _load(loaders.message, id, "Message")
    return Message.from_record(found) if found else None


async def conversation(info: strawberry.Info, id: strawberry.ID) -> Conversation | None:
    _, _, loaders = context_of(info)
    found = await _load(loaders.conversation, id, "Conversation")
    return Conversation.from_record(found) if found else None


async def node(info: strawberry.Info, id: strawberry.ID) -> Node | None:
    decoded = decode_id(id)
    if decoded is None:
        return None
    if decoded[0] == "Message":
        return await message(info, id)
    return await conversation(info, id)


def preview_message(info: strawberry.Info, input: SendMessageInput) -> MessagePreview:
    context, _, _ = context_of(info)
    request = to_send_request(input)
    checked = validate_send(
        request, now=utcnow(), default_region=context.services.default_phone_region
    )
    body = request.body or ""
    non_gsm = list(count_segments(body).non_gsm_characters) if body else []
    if isinstance(checked, list):
        return MessagePreview(
            valid=False,
            problems=[FieldProblem(field=p.field, problem=p.problem) for p in checked],
            normalized_from=None,
            normalized_to=None,
            segments=None,
            encoding=None,
            non_gsm_characters=non_gsm if request.channel != DomainChannel.EMAIL else [],
        )
    return MessagePreview(
        valid=True,
        problems=[],
        normalized_from=checked.sender,
        normalized_to=checked.recipient,
        segments=checked.segments,
        encoding=checked.encoding,
        non_gsm_characters=non_gsm if checked.channel != DomainChannel.EMAIL else [],
    )


async def quiet_hours(info: strawberry.Info) -> QuietHours:
    context, account, _ = context_of(info)
    return QuietHours.from_domain(await context.services.quiet_hours.of(account.id))


async def sender_addresses(info: strawberry.Info) -> list[SenderAddress]:
    context, account, _ = context_of(info)
    rates = await context.services.sender_rates.senders(account.id)
    return [SenderAddress.from_domain(rate) for rate in rates]
