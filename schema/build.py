"""The Schema object: the extensions every operation runs through, around the root types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import strawberry
import structlog
from graphql import GraphQLError, GraphQLFieldResolver
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
)
from strawberry.types import ExecutionContext

from gateway.fastpaths import FastPaths
from gateway.observability import GraphQLMetricsExtension
from gateway.outages import describe, is_unavailable
from schema.coerced_sends import resolve_on_coerced_inputs
from schema.executor import executor_class
from schema.extension_group import ExtensionGroup
from schema.extensions import MaskInternalErrors, RequireAccount, SubscriptionsOverWebsockets
from schema.guards import RateLimit, tag_complexity_errors
from schema.validation import CachedValidation, ValidationCacheStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Roots:
    """The root types, whose fields name their resolvers (``resolvers.root`` builds them)."""

    query: type
    mutation: type
    subscription: type
    #: Mutation fields (by GraphQL name) to run on graphql-core's coerced arguments instead.
    on_coerced_inputs: Mapping[str, GraphQLFieldResolver] = field(default_factory=dict)


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
    roots: Roots,
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
    fast = fast_paths if fast_paths is not None else FastPaths()
    schema = GatewaySchema(
        query=roots.query,
        mutation=roots.mutation,
        subscription=roots.subscription,
        extensions=extensions,
        execution_context_class=executor_class(fast.acyclic_execution),
    )
    resolve_on_coerced_inputs(schema, roots.on_coerced_inputs, fast.coerced_sends)
    return schema
