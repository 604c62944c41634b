"""An operation's executor without the reference cycle graphql-core 3.3 builds into it.

graphql-core's ``Executor`` gives resolvers two helpers (``info.async_helpers``: gather and
track asynchronous work) as a tuple of the executor's own bound methods, which it keeps in an
attribute of the executor: executor -> helpers -> bound method -> executor. That cycle holds
everything the executor reaches (the context with the request, the response and the loaders,
the variables, the collected fields), so none of a finished operation is freed by reference
counting: all of it, dozens of objects per request, waits for the cyclic garbage collector.
Under load those survive the young collections (the operation is still running when they
run), and the full collection that finally frees them walks all of them at once: a pause that
every request waiting in that process sees as latency (figures in bench/RESULTS.md,
"Measurements behind the code").

This fast path (``gateway.fastpaths``) replaces the two helpers by functions that reach the
executor through a weak reference, so a finished operation is freed at once. What the helpers
do is unchanged: ``gather`` never needed the executor, and ``track`` is only called while the
executor runs (the executor's own methods call it, holding it). The attribute it replaces and
the methods it calls are graphql-core internals, hence the version guard.

With the fast path off the schema keeps Strawberry's executor.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Sequence
from typing import Any

from graphql import GraphQLResolveInfoHelpers
from graphql.pyutils import gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.fastpaths import FastPath


def executor_class(path: FastPath) -> type[StrawberryGraphQLCoreExecutionContext] | None:
    """The executor class for a schema: the acyclic one while the path is on, else None
    (Strawberry's own)."""
    if not path.enabled:
        return None

    class AcyclicExecutor(StrawberryGraphQLCoreExecutionContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.async_helpers = weak_helpers(self)
            path.engaged += 1

    return AcyclicExecutor


def _gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    return gather_with_cancel(*values)


def weak_helpers(executor: StrawberryGraphQLCoreExecutionContext) -> GraphQLResolveInfoHelpers:
    """The resolvers' helpers of ``executor``, holding it only weakly."""
    ref = weakref.ref(executor)

    def track(values: Sequence[Any]) -> None:
        running = ref()
        # None only once the operation is over: there is nothing left for the work to delay.
        if running is not None:
            running.track_async_work(values)

    return GraphQLResolveInfoHelpers(gather=_gather, track=track)
