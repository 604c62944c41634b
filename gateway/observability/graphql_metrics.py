"""Strawberry schema extension feeding the GraphQL Prometheus metrics.

Register it as a class: ``strawberry.Schema(query=..., extensions=[GraphQLMetricsExtension])``.
Queries and mutations are counted and timed when the operation ends; subscriptions are counted
once, when their execution starts (their lifetime is not a latency).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension

from gateway.observability.metrics import GRAPHQL_LATENCY, GRAPHQL_OPERATIONS

UNKNOWN: Final = "unknown"
SUBSCRIPTION: Final = "subscription"
_INTROSPECTION_FIELDS: Final = frozenset({"__typename", "__schema", "__type"})


def _find_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if operation_name is None:
            return definition
        if definition.name is not None and definition.name.value == operation_name:
            return definition
    return None


def _first_field_name(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: set[str],
) -> str | None:
    """Name (not alias) of the first field, looking through inline and named fragments."""
    for selection in selection_set.selections:
        found: str | None = None
        if isinstance(selection, FieldNode):
            return selection.name.value
        if isinstance(selection, InlineFragmentNode):
            found = _first_field_name(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                seen.add(name)
                found = _first_field_name(fragments[name].selection_set, fragments, seen)
        if found is not None:
            return found
    return None


def operation_labels(
    document: DocumentNode | None, operation_name: str | None, schema: GraphQLSchema | None
) -> tuple[str, str]:
    """``(operation_type, root_field)`` for metrics, ``"unknown"`` where undeterminable.

    The root field is only reported if the schema's root type has it, so that invalid
    documents cannot create arbitrary label values.
    """
    if document is None:
        return UNKNOWN, UNKNOWN
    operation = _find_operation(document, operation_name)
    if operation is None:
        return UNKNOWN, UNKNOWN
    operation_type = operation.operation.value
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    field = _first_field_name(operation.selection_set, fragments, set())
    if field is None:
        return operation_type, UNKNOWN
    if field in _INTROSPECTION_FIELDS:
        return operation_type, field
    root_type = schema.get_root_type(operation.operation) if schema is not None else None
    if root_type is None or field not in root_type.fields:
        return operation_type, UNKNOWN
    return operation_type, field


class GraphQLMetricsExtension(SchemaExtension):
    """Counts (and times) GraphQL operations by type, first root field and outcome."""

    _counted: bool = False

    def _labels(self) -> tuple[str, str]:
        try:
            ec = self.execution_context
            gql_schema = getattr(ec.schema, "_schema", None)
            return operation_labels(
                ec.graphql_document,
                ec.operation_name,
                gql_schema if isinstance(gql_schema, GraphQLSchema) else None,
            )
        except Exception:  # never let metrics break an operation
            return UNKNOWN, UNKNOWN

    def _has_errors(self) -> bool:
        ec = self.execution_context
        if ec.pre_execution_errors:
            return True
        return bool(getattr(ec.result, "errors", None))

    def on_operation(self) -> Iterator[None]:
        self._counted = False
        start = time.perf_counter()
        yield from _noting_failure(lambda failed: self._end(time.perf_counter() - start, failed))

    def on_execute(self) -> Iterator[None]:
        yield from _noting_failure(self._count_subscription)

    def _count_subscription(self, failed: bool) -> None:
        operation_type, root_field = self._labels()
        if operation_type == SUBSCRIPTION:
            self._count(operation_type, root_field, failed)
            self._counted = True

    def _end(self, elapsed: float, failed: bool) -> None:
        if self._counted:
            return
        operation_type, root_field = self._labels()
        self._count(operation_type, root_field, failed)
        if operation_type != SUBSCRIPTION:
            GRAPHQL_LATENCY.labels(operation_type, root_field).observe(elapsed)

    def _count(self, operation_type: str, root_field: str, failed: bool) -> None:
        outcome = "error" if failed or self._has_errors() else "ok"
        GRAPHQL_OPERATIONS.labels(operation_type, root_field, outcome).inc()


def _noting_failure(then: Callable[[bool], None]) -> Iterator[None]:
    """A hook's single step: ``then`` is told whether what ran inside it raised."""
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        then(failed)
