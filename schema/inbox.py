"""GraphQL types of inbox state: the result of marking a conversation read."""

from __future__ import annotations

from typing import Annotated

import strawberry

from schema.results import NotFound
from schema.types import Conversation


@strawberry.type
class ConversationRead:
    conversation: Conversation


MarkConversationReadResult = Annotated[
    ConversationRead | NotFound, strawberry.union("MarkConversationReadResult")
]
