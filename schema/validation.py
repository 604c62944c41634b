"""Validation, done once per distinct document.

Strawberry's ValidationCache keys its cache on the parsed document and the rule classes. The
depth and alias limiters build a new rule class for every operation, and hashing a document
walks all of it, so that cache never hit here and validation dominated a small mutation.
This one builds the limiter rules once per schema and keys on the query text.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, ValidationRule, validate
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule


class ValidationCacheStore:
    def __init__(self, *, max_depth: int, max_aliases: int, maxsize: int = 512) -> None:
        self.rules: tuple[type[ValidationRule], ...] = (
            depth_rule(max_depth, None, None),
            alias_rule(max_aliases),
        )
        self._maxsize = maxsize
        self._cache: OrderedDict[tuple[Any, ...], list[GraphQLError]] = OrderedDict()

    def validate(self, execution_context: Any) -> list[GraphQLError]:
        rules = (*execution_context.validation_rules, *self.rules)
        query = execution_context.query
        key = (query if query is not None else id(execution_context.graphql_document), rules)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        errors = validate(
            execution_context.schema._schema, execution_context.graphql_document, rules
        )
        self._cache[key] = errors
        if len(self._cache) > self._maxsize:
            self._cache.popitem(last=False)
        return errors


class CachedValidation(SchemaExtension):
    def __init__(self, store: ValidationCacheStore) -> None:
        self._store = store

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        if ec.pre_execution_errors is None and ec.graphql_document is not None:
            ec.pre_execution_errors = self._store.validate(ec)
            # ``operation_name`` falls back to the first operation's name: only the name the
            # request gave says whether one was chosen (tests/integration/
            # test_graphql_over_http.py fails if this stops seeing it).
            if not ec.pre_execution_errors and _provided_name(ec) is None:
                ec.pre_execution_errors = _unnamed_choice(ec.graphql_document)
        yield


def _provided_name(ec: Any) -> str | None:
    name: str | None = getattr(ec, "_provided_operation_name", ec.operation_name)
    return name


def _unnamed_choice(document: DocumentNode) -> list[GraphQLError]:
    """GraphQL's "GetOperation": with several operations and no operation name, none may be
    chosen (Strawberry would run the first)."""
    operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
    if operations > 1:
        return [GraphQLError("Must provide operation name if query contains multiple operations.")]
    return []
