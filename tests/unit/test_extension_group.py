"""ExtensionGroup runs its members' hooks as Strawberry would run them one by one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import strawberry
from strawberry.extensions import SchemaExtension

from schema.extension_group import ExtensionGroup

calls: list[str] = []


def _member(name: str) -> type[SchemaExtension]:
    class Member(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            calls.append(f"{name}:operation:enter")
            try:
                yield
            except RuntimeError:
                calls.append(f"{name}:operation:saw-error")
                raise
            calls.append(f"{name}:operation:exit")

        async def on_validate(self) -> AsyncIterator[None]:
            calls.append(f"{name}:validate:{self.execution_context.query is not None}")
            yield

    return Member


class Boom(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        raise RuntimeError("boom")
        yield  # pragma: no cover


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        calls.append("resolve")
        return "hi"


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()


async def test_members_run_in_order_and_exit_in_reverse() -> None:
    members = [_member("a"), _member("b")]
    schema = strawberry.Schema(query=Query, extensions=[lambda: ExtensionGroup(members)])
    result = await schema.execute("{ hello }")
    assert result.errors is None
    assert calls == [
        "a:operation:enter",
        "b:operation:enter",
        "a:validate:True",
        "b:validate:True",
        "resolve",
        "b:operation:exit",
        "a:operation:exit",
    ]


async def test_an_error_in_a_member_reaches_the_others() -> None:
    members = [_member("a"), Boom]
    schema = strawberry.Schema(query=Query, extensions=[lambda: ExtensionGroup(members)])
    result = await schema.execute("{ hello }")
    assert result.errors and "boom" in result.errors[0].message
    assert "a:operation:saw-error" in calls
    assert "resolve" not in calls


def test_a_hook_that_is_not_a_generator_is_refused() -> None:
    class Plain(SchemaExtension):
        def on_parse(self) -> None:  # type: ignore[override]
            return None

    group = ExtensionGroup([Plain])
    with pytest.raises(TypeError, match="must be a generator"):
        list(group._hooks("on_parse"))
