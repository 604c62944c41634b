"""GraphQL errors raised on purpose for bad input (never masked as INTERNAL)."""

from __future__ import annotations

from graphql import GraphQLError


def bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def check_page_size(name: str, value: int | None, maximum: int = 100) -> None:
    if value is not None and not 0 <= value <= maximum:
        raise bad_input(f"`{name}` must be between 0 and {maximum}")
