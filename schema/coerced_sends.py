"""The send mutations run on graphql-core's coerced arguments.

Strawberry turns every input object into its Python class, with per-field type introspection,
before it calls a resolver; for ``sendMessages`` that is a large share of the operation, and
graphql-core has already checked and coerced the arguments. This fast path
(``gateway.fastpaths``) points the two send fields of the graphql-core schema behind
Strawberry's (a private attribute) at resolvers that take the coerced values as they are
(``resolvers.root`` names them, in ``schema.build.Roots``).
Only execution changes: the schema, its validation and argument coercion stay Strawberry's,
and both ways map the input with the one ``resolvers.inputs.send_request``.

With the fast path off the schema is left alone and Strawberry calls the typed resolvers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLFieldResolver

from gateway.fastpaths import FastPath

T = TypeVar("T")


def resolve_on_coerced_inputs(
    schema: strawberry.Schema, resolvers: Mapping[str, GraphQLFieldResolver], path: FastPath
) -> None:
    """Run these mutation fields (by GraphQL name) with these resolvers, when the path is on."""
    if not path.enabled:
        return
    mutation = schema._schema.mutation_type
    assert mutation is not None
    for name, resolve in resolvers.items():
        mutation.fields[name].resolve = _counted(resolve, path)


def _counted(resolve: Callable[..., Awaitable[T]], path: FastPath) -> Callable[..., Awaitable[T]]:
    async def counted(root: object, info: Any, **arguments: Any) -> T:
        path.engaged += 1
        return await resolve(root, info, **arguments)

    return counted
