"""schema.live._leaf_plan: which subscriptions are rendered without an executor."""

from __future__ import annotations

import pytest
from graphql import OperationDefinitionNode, parse

from resolvers.root import ROOTS
from schema.build import create_schema
from schema.live import _leaf_plan

SCHEMA = create_schema(ROOTS, introspection=True, max_depth=12, max_aliases=15, max_tokens=2000)


def plan_of(query: str) -> object:
    document = parse(query)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    return _leaf_plan(SCHEMA._schema, operation)


@pytest.mark.parametrize(
    "query",
    [
        "subscription { messageEvents { messageId status } }",
        'subscription { e: messageEvents(after: "0") { __typename k: kind detail occurredAt } }',
    ],
)
def test_plain_leaf_fields_get_a_plan(query: str) -> None:
    assert plan_of(query) is not None


@pytest.mark.parametrize(
    "query",
    [
        "subscription { messageEvents { message { id } } }",
        "subscription { messageEvents { ...F } } fragment F on MessageEvent { id }",
        "subscription { messageEvents { ... on MessageEvent { id } } }",
        "subscription { messageEvents { id @include(if: true) } }",
        "subscription { messageEvents @skip(if: false) { id } }",
        "subscription { messageEvents { id id } }",
        "subscription { messageEvents { a: id a: kind } }",
    ],
)
def test_anything_else_is_left_to_the_executor(query: str) -> None:
    assert plan_of(query) is None
