"""Run several schema extensions as one.

Strawberry sets up every hook of every registered extension for each operation (looks the
hook up, inspects it, wraps it in a context manager, enters it on an exit stack), whether or
not the extension defines that hook. With eight small extensions that bookkeeping cost about
a tenth of a ``sendMessage``'s CPU. The group registers as one extension and enters its
members' hooks itself, with the same semantics: members in list order, exits in reverse
order, exceptions passed through every member's hook.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types.execution import StreamExecutionResult

_DEFINED: dict[tuple[type[SchemaExtension], str], tuple[bool, bool]] = {}


def _defined(cls: type[SchemaExtension], hook: str) -> tuple[bool, bool]:
    """(defined by the class, is an async generator) of one hook of a member class."""
    known = _DEFINED.get((cls, hook))
    if known is not None:
        return known
    fn = getattr(cls, hook)
    if fn is getattr(SchemaExtension, hook):
        known = (False, False)
    elif inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        known = (True, inspect.isasyncgenfunction(fn))
    else:
        raise TypeError(f"{cls.__name__}.{hook} must be a generator to join a group")
    _DEFINED[(cls, hook)] = known
    return known


class ExtensionGroup(SchemaExtension):
    def __init__(self, members: Sequence[Callable[[], SchemaExtension]]) -> None:
        self._members = [make() for make in members]

    def _hooks(self, hook: str) -> Iterator[tuple[Any, bool]]:
        for member in self._members:
            defined, is_async = _defined(type(member), hook)
            if defined:
                yield getattr(member, hook), is_async

    def _enter_sync(self, stack: contextlib.ExitStack, hook: str, *args: Any) -> None:
        for fn, is_async in self._hooks(hook):
            if is_async:
                raise RuntimeError(f"{hook} of a group member is async in a sync phase")
            stack.enter_context(contextlib.contextmanager(fn)(*args))

    def on_operation(self) -> Iterator[None]:
        for member in self._members:
            member.execution_context = self.execution_context
        with contextlib.ExitStack() as stack:
            self._enter_sync(stack, "on_operation")
            yield

    def on_parse(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            self._enter_sync(stack, "on_parse")
            yield

    async def on_validate(self) -> AsyncIterator[None]:
        # Async: a member (the rate limit) awaits in this phase.
        async with contextlib.AsyncExitStack() as stack:
            for fn, is_async in self._hooks("on_validate"):
                if is_async:
                    await stack.enter_async_context(contextlib.asynccontextmanager(fn)())
                else:
                    stack.enter_context(contextlib.contextmanager(fn)())
            yield

    def on_execute(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            self._enter_sync(stack, "on_execute")
            yield

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            self._enter_sync(stack, "on_stream_result", result)
            yield
