"""Shared rendering of subscription events: execute a selection set once per event for every
subscriber whose operation gives the same output, and send them all the same bytes.

graphql-core runs a subscription's selection set once per event *per subscriber*; with a
thousand subscribers that is a thousand identical executions (and encodings) of every event.
Two subscriptions render an event identically when they run the same document with the same
variables for the same account: the root field's own arguments (filters, ``after``) only
choose the events and never reach the per-event execution (the root field resolves to the
event itself), so variables used nowhere else are left out of the key. Filtering stays per
subscriber.

The websocket transport opts in per operation with ``LiveSink`` (a context variable, since
operations of one connection share their context object): the sink sends an already encoded
``next`` payload for that operation. Without a sink (other transports, ``schema.subscribe``)
nothing changes.

Sharing needs Strawberry's private execution details (the graphql-core ``info`` behind its
``Info``, its extensions' ``resolve`` hooks, its executor class), so it is a fast path
(``gateway.fastpaths``): with it off, the transport offers no sink and every subscriber's
events are executed by graphql-core through Strawberry, as for any subscription.

Rendering happens exactly as graphql-core's per-event execution does it (same executor class,
document, variables and context), and its result is encoded like the transport encodes a
``next`` payload. A result with errors is never shared: each subscriber then executes the
event on its own, so errors are processed, masked and logged per operation as usual.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, cast

import orjson
import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    Undefined,
    VariableNode,
    Visitor,
    get_nullable_type,
    is_leaf_type,
    visit,
)
from graphql.execution import ExecutionResult, Executor, execute_subscription_event
from graphql.execution.middleware import MiddlewareManager
from graphql.language.visitor import SKIP

from gateway.domain import records
from gateway.fastpaths import FastPath
from gateway.services.fanout import SharedRendering
from schema.types import MessageEvent

SendPayload = Callable[[bytes], Awaitable[None]]
SendPayloadNow = Callable[[bytes], bool]


class LiveSink:
    """Where a websocket operation's pre-rendered ``next`` payloads go.

    ``send`` awaits the socket; ``send_now`` (when the transport offers it) writes at once or
    declines, and is only used while nothing else of the operation is in flight.
    """

    __slots__ = ("operation_name", "path", "send", "send_now", "variables")

    def __init__(
        self,
        send: SendPayload,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        path: FastPath,
        *,
        send_now: SendPayloadNow | None = None,
    ) -> None:
        self.send = send
        self.send_now = send_now
        self.variables = dict(variables or {})
        self.operation_name = operation_name
        #: Counts the events rendered in common for this operation's feed.
        self.path = path


current_sink: ContextVar[LiveSink | None] = ContextVar("current_sink", default=None)


def encode_payload(data: object) -> bytes:
    """A ``next`` payload as the websocket transport encodes it (``GatewayGraphQL.encode_json``)."""
    return orjson.dumps({"data": data})


def shared_rendering(info: strawberry.Info, sink: LiveSink) -> SharedRendering | None:
    """The key and renderer of a subscription's events, or None when they cannot be shared."""
    query = info.query
    if query is None:
        return None
    raw = info._raw_info
    root_only = _root_only_variables(query, raw.operation, raw.fragments)
    shaping = {k: v for k, v in sink.variables.items() if k not in root_only}
    try:
        variables_key = orjson.dumps(shaping, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    key = (query, sink.operation_name, variables_key)
    document = DocumentNode(definitions=(raw.operation, *raw.fragments.values()))
    return SharedRendering(
        key=key,
        render=_Renderer(info, document, sink.variables, raw.operation, sink.path).render,
        send_now=sink.send_now,
    )


class _Renderer:
    """Executes one event for a subscription, the way graphql-core's subscribe would."""

    def __init__(
        self,
        info: strawberry.Info,
        document: DocumentNode,
        variables: dict[str, Any],
        operation: OperationDefinitionNode,
        path: FastPath,
    ) -> None:
        self._info = info
        self._path = path
        self._document = document
        self._variables = variables
        self._operation_name = operation.name.value if operation.name else None
        self._executor: Executor[Any] | None = None
        self._shareable = True
        self._leaves: _LeafPlan | None = None

    def _build(self) -> Executor[Any] | None:
        schema: Any = self._info.schema
        if any(ext._implements_resolve() for ext in schema.get_extensions()):
            # Field middleware could depend on the operation; keep per-subscriber execution.
            return None
        executor_class = cast(type[Executor[Any]], schema.execution_context_class)
        built = executor_class.build(
            self._info._raw_info.schema,
            self._document,
            None,
            self._info.context,
            self._variables,
            self._operation_name,
            middleware=MiddlewareManager(),
            operation_extensions=None,
        )
        return None if isinstance(built, list) else built

    async def render(self, event: records.MessageEvent) -> bytes | None:
        rendered = await self._render(event)
        if rendered is not None:
            self._path.engaged += 1
        return rendered

    async def _render(self, event: records.MessageEvent) -> bytes | None:
        if self._executor is None:
            if not self._shareable:
                return None
            self._executor = self._build()
            if self._executor is None:
                self._shareable = False
                return None
            self._leaves = _leaf_plan(self._info._raw_info.schema, self._executor.operation)
        if self._leaves is not None:
            data = self._leaves.render(MessageEvent.from_record(event))
            if data is not None:
                return encode_payload(data)
        executor = self._executor.build_per_event_executor(MessageEvent.from_record(event))
        result = execute_subscription_event(executor)
        if executor.is_awaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        if result.errors:
            return None
        return encode_payload(result.data)


class _LeafPlan:
    """A subscription whose selection set is only plain leaf fields of the event, rendered
    without an executor: what graphql-core would compute for it, field by field (the field's
    own resolver, then its type's ``serialize``), in selection order."""

    __slots__ = ("fields", "key", "root_resolve")

    def __init__(
        self,
        key: str,
        root_resolve: Callable[..., Any],
        fields: list[tuple[str, Callable[..., Any] | None, Any, bool]],
    ) -> None:
        self.key = key
        self.root_resolve = root_resolve
        self.fields = fields

    def render(self, root: object) -> dict[str, Any] | None:
        """The ``data`` of the event, or None when anything needs the executor (an error)."""
        try:
            source = self.root_resolve(root, None)
            out: dict[str, Any] = {}
            for name, resolve, leaf, nullable in self.fields:
                if resolve is None:  # __typename
                    out[name] = leaf
                    continue
                value = resolve(source, None)
                if value is None:
                    if not nullable:
                        return None
                    out[name] = None
                    continue
                serialized = leaf.serialize(value)
                if serialized is None or serialized is Undefined:
                    return None
                out[name] = serialized
        except Exception:
            return None
        return {self.key: out}


def _leaf_plan(schema: GraphQLSchema, operation: OperationDefinitionNode) -> _LeafPlan | None:
    """The plan for ``subscription { root { leaf leaf ... } }`` with plain fields only (no
    arguments, directives, fragments or repeated keys), or None."""
    root_type = schema.subscription_type
    selections = operation.selection_set.selections
    if root_type is None or len(selections) != 1 or operation.directives:
        return None
    root = selections[0]
    if not isinstance(root, FieldNode) or root.directives or root.selection_set is None:
        return None
    root_def = root_type.fields.get(root.name.value)
    if root_def is None or root_def.resolve is None:
        return None
    event_type = get_nullable_type(root_def.type)
    if not isinstance(event_type, GraphQLObjectType):
        return None
    fields: list[tuple[str, Callable[..., Any] | None, Any, bool]] = []
    for node in root.selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives or node.arguments:
            return None
        key = node.alias.value if node.alias else node.name.value
        if any(key == f[0] for f in fields):
            return None
        if node.name.value == "__typename":
            fields.append((key, None, event_type.name, False))
            continue
        field = event_type.fields.get(node.name.value)
        if field is None or node.selection_set is not None:
            return None
        leaf = get_nullable_type(field.type)
        # Only strawberry's plain attribute fields: their resolver needs no info and no args.
        if not is_leaf_type(leaf) or not getattr(field.resolve, "_is_default", False):
            return None
        fields.append((key, field.resolve, leaf, not isinstance(field.type, GraphQLNonNull)))
    if not fields:
        return None
    key = root.alias.value if root.alias else root.name.value
    return _LeafPlan(key, root_def.resolve, fields)


class _VariableUses(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def enter_variable_definition(self, *_: object) -> object:
        return SKIP

    def enter_variable(self, node: VariableNode, *_: object) -> None:
        name = node.name.value
        self.counts[name] = self.counts.get(name, 0) + 1


_ROOT_ONLY: OrderedDict[tuple[str, str | None], frozenset[str]] = OrderedDict()
_ROOT_ONLY_MAX = 256


def _root_only_variables(
    query: str, operation: OperationDefinitionNode, fragments: Mapping[str, Any]
) -> frozenset[str]:
    """Variables used once, directly as an argument of the operation's single root field."""
    cache_key = (query, operation.name.value if operation.name else None)
    found = _ROOT_ONLY.get(cache_key)
    if found is not None:
        _ROOT_ONLY.move_to_end(cache_key)
        return found
    selections = operation.selection_set.selections
    names: frozenset[str] = frozenset()
    if len(selections) == 1 and isinstance(selections[0], FieldNode):
        candidates = {
            arg.value.name.value
            for arg in selections[0].arguments or ()
            if isinstance(arg.value, VariableNode)
        }
        uses = _VariableUses()
        visit(operation, uses)
        for fragment in fragments.values():
            visit(fragment, uses)
        names = frozenset(n for n in candidates if uses.counts.get(n) == 1)
    _ROOT_ONLY[cache_key] = names
    if len(_ROOT_ONLY) > _ROOT_ONLY_MAX:
        _ROOT_ONLY.popitem(last=False)
    return names
