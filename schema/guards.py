"""Refusing operations before they run: rate limits, and the code of complexity errors."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension

from gateway.outages import RETRY_AFTER_SECONDS, UNAVAILABLE_MESSAGE, unavailable_extensions

# Messages of Strawberry's depth/alias limiters and graphql-core's token limit.
_TOO_COMPLEX = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|contains more than \d+ tokens"
    r"|nested too deeply"
)


def tag_complexity_errors(errors: list[GraphQLError]) -> None:
    for error in errors:
        if _TOO_COMPLEX.search(error.message):
            error.extensions = {**(error.extensions or {}), "code": "QUERY_TOO_COMPLEX"}


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == name), None)


def _root_fields(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> Iterator[FieldNode]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if not selection.name.value.startswith("__"):
                yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                yield from _root_fields(fragments[name].selection_set, fragments, seen | {name})


def _weight(field: FieldNode, variables: dict[str, Any]) -> int:
    """sendMessages weighs as many as its inputs; everything else weighs one."""
    if field.name.value != "sendMessages":
        return 1
    for argument in field.arguments or ():
        if argument.name.value != "inputs":
            continue
        value = argument.value
        if isinstance(value, ListValueNode):
            return max(1, len(value.values))
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            return max(1, len(given)) if isinstance(given, list) else 1
    return 1


def operation_costs(
    document: DocumentNode, operation_name: str | None, variables: dict[str, Any] | None
) -> dict[str, int]:
    """Root field name -> weight; aliases of one field add up (``a: sendMessage b: ...``)."""
    operation = _operation(document, operation_name)
    if operation is None:
        return {}
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    costs: Counter[str] = Counter()
    for field in _root_fields(operation.selection_set, fragments):
        costs[field.name.value] += _weight(field, variables or {})
    return dict(costs)


class RateLimit(SchemaExtension):
    """Per key and per root field limits, checked once the operation is known to be valid.

    Placed after ValidationCache and RequireAccount: an invalid or unauthenticated operation
    already carries its errors and is not counted.
    """

    async def on_validate(self) -> AsyncIterator[None]:
        ec = self.execution_context
        context = ec.context
        limiter = context.services.rate_limiter
        if not ec.pre_execution_errors and limiter.enabled and ec.graphql_document is not None:
            costs = operation_costs(ec.graphql_document, ec.operation_name, ec.variables)
            if costs:
                decision = await limiter.check(context.key_id, costs)
                if decision.unavailable:
                    ec.pre_execution_errors = [
                        GraphQLError(UNAVAILABLE_MESSAGE, extensions=unavailable_extensions())
                    ]
                    response = getattr(context, "response", None)
                    if response is not None and hasattr(response, "status_code"):
                        response.status_code = 503
                        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
                elif not decision.allowed:
                    ec.pre_execution_errors = [
                        GraphQLError(
                            f"rate limit exceeded for {decision.field}; "
                            f"retry in {decision.retry_after:g} s",
                            extensions={"code": "RATE_LIMITED", "retryAfter": decision.retry_after},
                        )
                    ]
                    response = getattr(context, "response", None)
                    if response is not None and hasattr(response, "status_code"):
                        response.status_code = 429
                        response.headers["Retry-After"] = str(math.ceil(decision.retry_after))
        yield
