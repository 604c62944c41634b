"""The root types and the Schema object."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
import structlog
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
)
from strawberry.types import ExecutionContext

from gateway.fastpaths import FastPaths
from gateway.observability import GraphQLMetricsExtension
from gateway.outages import describe, is_unavailable
from resolvers import mutations, pages, queries, subscriptions
from schema.coerced_sends import resolve_sends_on_coerced_inputs
from schema.extension_group import ExtensionGroup
from schema.extensions import MaskInternalErrors, RequireAccount, SubscriptionsOverWebsockets
from schema.guards import RateLimit, tag_complexity_errors
from schema.results import (
    CancelMessageResult,
    MessagePreview,
    RetryMessageResult,
    SendMessageResult,
)
from schema.types import (
    Conversation,
    ConversationConnection,
    Message,
    MessageConnection,
    MessageEvent,
    Node,
)
from schema.validation import CachedValidation, ValidationCacheStore

log = structlog.get_logger(__name__)


@strawberry.type
class Query:
    node: Node | None = strawberry.field(resolver=queries.node)
    message: Message | None = strawberry.field(resolver=queries.message)
    conversation: Conversation | None = strawberry.field(resolver=queries.conversation)
    conversations: ConversationConnection = strawberry.field(
        resolver=pages.conversations, description="Most recently active first."
    )
    preview_message: MessagePreview = strawberry.field(resolver=queries.preview_message)
    dead_letters: MessageConnection = strawberry.field(
        resolver=pages.dead_letters,
        description="FAILED messages whose retries are exhausted, newest first.",
    )


@strawberry.type
class Mutation:
    send_message: SendMessageResult = strawberry.mutation(resolver=mutations.send_message)
    send_messages: list[SendMessageResult] = strawberry.mutation(
        resolver=mutations.send_messages,
        description="Up to 1000 inputs in one call; results in input order.",
    )
    cancel_message: CancelMessageResult = strawberry.mutation(
        resolver=mutations.cancel_message, description="Cancel a SCHEDULED or QUEUED message."
    )
    retry_message: RetryMessageResult = strawberry.mutation(
        resolver=mutations.retry_message,
        description="Send a FAILED (dead-lettered) message again.",
    )


@strawberry.type
class Subscription:
    message_events: AsyncGenerator[MessageEvent, None] = strawberry.subscription(
        resolver=subscriptions.message_events,
        description=(
            "Live audit-trail events of the caller's account, filtered by conversation or "
            "message.\nWith `after` (an event cursor), events after it are replayed from storage "
            "first, then live\nevents follow with no gap and no duplicate."
        ),
    )


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Every error passes here, parse errors included (ParserCache raises them before any
        # other extension sees them): the place to give complexity errors their code.
        tag_complexity_errors(errors)
        # Deliberate errors (bad input, no key) are answers, not incidents: keep them out of
        # the error log. A backing service being down is one line at warning: its stack says
        # nothing more. Other unexpected ones are logged with their stack by the default handler.
        unexpected = []
        for error in errors:
            original = error.original_error
            if original is None or isinstance(original, GraphQLError):
                continue
            if is_unavailable(original):
                log.warning("backing_service_unavailable", error=describe(original))
            else:
                unexpected.append(error)
        if unexpected:
            super().process_errors(unexpected, execution_context)


def create_schema(
    *,
    fast_paths: FastPaths | None = None,
    introspection: bool = True,
    max_depth: int = 12,
    max_aliases: int = 30,
    max_tokens: int = 5000,
) -> strawberry.Schema:
    validation = ValidationCacheStore(max_depth=max_depth, max_aliases=max_aliases)
    members: list[Any] = [
        # Factories, not instances: a fresh extension per operation. The caches are shared.
        lambda: ParserCache(maxsize=512),
        lambda: CachedValidation(validation),
        # After validation, in this order: each sees the errors set before it.
        RequireAccount,
        SubscriptionsOverWebsockets,
        RateLimit,
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        MaskInternalErrors,
        GraphQLMetricsExtension,
    ]
    if not introspection:
        members.append(DisableIntrospection)
    # One registered extension running all of them: see schema/extension_group.py.
    extensions = [lambda: ExtensionGroup(members)]
    schema = GatewaySchema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions
    )
    fast = fast_paths if fast_paths is not None else FastPaths()
    resolve_sends_on_coerced_inputs(schema, fast.coerced_sends)
    return schema
