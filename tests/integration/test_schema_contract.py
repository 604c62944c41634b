"""Our GraphQL schema honours the public contract (../shared/api/contract.graphql).

The contract allows additions (types, fields, optional arguments, enum values, union members)
but no renames, removals or type changes. ``contract_mismatches`` lists every violation, so
a failing run shows them all at once; the second group of tests proves the checker notices
each kind of violation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
    is_non_null_type,
    is_specified_scalar_type,
)
from graphql.pyutils import Undefined

from resolvers.root import ROOTS
from schema.build import create_schema


def _contract_path() -> Path:
    """The shared contract: beside the checkout (as CI lays it out) or the workspace copy."""
    root = Path(__file__).resolve().parents[2]
    candidates = [
        *([Path(os.environ["GATEWAY_CONTRACT"])] if "GATEWAY_CONTRACT" in os.environ else []),
        root.parent / "shared" / "api" / "contract.graphql",
        Path("/work/shared/api/contract.graphql"),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"API contract not found; looked at {[str(c) for c in candidates]}")


CONTRACT_PATH = _contract_path()

_KINDS: list[tuple[type[GraphQLNamedType], str]] = [
    (GraphQLScalarType, "scalar"),
    (GraphQLObjectType, "object type"),
    (GraphQLInterfaceType, "interface"),
    (GraphQLUnionType, "union"),
    (GraphQLEnumType, "enum"),
    (GraphQLInputObjectType, "input type"),
]


def _kind(named: GraphQLNamedType) -> str:
    # isinstance, not type(): Strawberry builds subclasses (e.g. CustomGraphQLEnumType).
    for cls, kind in _KINDS:
        if isinstance(named, cls):
            return kind
    return type(named).__name__


def _is_optional(arg: GraphQLArgument | GraphQLInputField) -> bool:
    """Can a client leave it out? (nullable, or non-null with a default)."""
    has_default = arg.default is not None or arg.default_value is not Undefined
    return has_default or not is_non_null_type(arg.type)


def _compare_inputs(
    owner: str,
    kind: Literal["argument", "input field"],
    expected: Mapping[str, GraphQLArgument | GraphQLInputField],
    actual: Mapping[str, GraphQLArgument | GraphQLInputField],
) -> list[str]:
    """The arguments of the field ``owner`` or the fields of the input type ``owner``: both obey
    the same rules."""

    def locate(name: str) -> tuple[str, str]:
        if kind == "argument":
            return owner, f"argument {name!r}"
        return f"{owner}.{name}", kind

    problems: list[str] = []
    for name, wanted in expected.items():
        where, what = locate(name)
        if name not in actual:
            problems.append(f"{where}: {what} is missing")
        elif str(actual[name].type) != str(wanted.type):
            problems.append(
                f"{where}: {what} has type {actual[name].type}, contract says {wanted.type}"
            )
    for name in actual.keys() - expected.keys():
        # An added one is allowed only if existing operations keep working without it.
        if not _is_optional(actual[name]):
            where, what = locate(name)
            problems.append(f"{where}: extra {what} is required ({actual[name].type})")
    return problems


def _compare_fields(
    type_name: str,
    expected: dict[str, GraphQLField],
    actual: dict[str, GraphQLField],
) -> list[str]:
    problems: list[str] = []
    for name, field in expected.items():
        where = f"{type_name}.{name}"
        if name not in actual:
            problems.append(f"{where}: field is missing")
            continue
        if str(actual[name].type) != str(field.type):
            problems.append(
                f"{where}: field has type {actual[name].type}, contract says {field.type}"
            )
        problems += _compare_inputs(where, "argument", field.args, actual[name].args)
    return problems


def _compare_type(expected: GraphQLNamedType, actual: GraphQLNamedType) -> list[str]:
    name = expected.name
    problems: list[str] = []
    if isinstance(expected, GraphQLObjectType | GraphQLInterfaceType):
        assert isinstance(actual, GraphQLObjectType | GraphQLInterfaceType)
        problems += _compare_fields(name, expected.fields, actual.fields)
        wanted = {i.name for i in expected.interfaces}
        have = {i.name for i in actual.interfaces}
        if wanted != have:
            problems.append(f"{name}: implements {sorted(have)}, contract says {sorted(wanted)}")
    elif isinstance(expected, GraphQLInputObjectType):
        assert isinstance(actual, GraphQLInputObjectType)
        problems += _compare_inputs(name, "input field", expected.fields, actual.fields)
    elif isinstance(expected, GraphQLEnumType):
        assert isinstance(actual, GraphQLEnumType)
        missing = sorted(expected.values.keys() - actual.values.keys())
        if missing:
            problems.append(f"{name}: enum values {missing} are missing")
    elif isinstance(expected, GraphQLUnionType):
        assert isinstance(actual, GraphQLUnionType)
        missing = sorted({t.name for t in expected.types} - {t.name for t in actual.types})
        if missing:
            problems.append(f"{name}: union members {missing} are missing")
    return problems


def contract_mismatches(contract: GraphQLSchema, ours: GraphQLSchema) -> list[str]:
    """Every way ``ours`` fails to provide ``contract`` (empty list: compatible)."""
    problems: list[str] = []
    for operation in ("query_type", "mutation_type", "subscription_type"):
        wanted: GraphQLObjectType | None = getattr(contract, operation)
        have: GraphQLObjectType | None = getattr(ours, operation)
        if wanted is not None and (have is None or have.name != wanted.name):
            problems.append(
                f"root {operation}: is {have.name if have else None}, contract says {wanted.name}"
            )
    for name, expected in sorted(contract.type_map.items()):
        if name.startswith("__") or is_specified_scalar_type(expected):
            continue
        actual = ours.type_map.get(name)
        if actual is None:
            problems.append(f"{name}: type is missing ({_kind(expected)} in the contract)")
            continue
        if _kind(actual) != _kind(expected):
            problems.append(f"{name}: is an {_kind(actual)}, contract says {_kind(expected)}")
            continue
        problems += _compare_type(expected, actual)
    return problems


def _report(problems: list[str]) -> str:
    return f"{len(problems)} contract mismatch(es):\n  " + "\n  ".join(problems)


@pytest.fixture(scope="module")
def contract_sdl() -> str:
    return CONTRACT_PATH.read_text()


@pytest.fixture(scope="module")
def ours() -> GraphQLSchema:
    return create_schema(ROOTS)._schema


# ------------------------------------------------------------------------------ the contract


def test_schema_satisfies_the_contract(contract_sdl: str, ours: GraphQLSchema) -> None:
    problems = contract_mismatches(build_schema(contract_sdl), ours)
    assert not problems, _report(problems)


def test_printed_schema_round_trips_and_satisfies_the_contract(contract_sdl: str) -> None:
    # What clients see through introspection / codegen: the printed SDL, rebuilt from text.
    printed = build_schema(str(create_schema(ROOTS)))
    problems = contract_mismatches(build_schema(contract_sdl), printed)
    assert not problems, _report(problems)


def test_custom_scalars_exist(ours: GraphQLSchema) -> None:
    for name in ("DateTime", "JSON"):
        assert name in ours.type_map, f"scalar {name} is missing"
        assert _kind(ours.type_map[name]) == "scalar", f"{name} is not a scalar"


def test_schema_without_introspection_has_the_same_types(ours: GraphQLSchema) -> None:
    # Production may switch introspection off; the executable schema must not change.
    closed = create_schema(ROOTS, introspection=False)._schema
    assert sorted(closed.type_map) == sorted(ours.type_map)


# ------------------------------------------------------------------- the checker itself


def test_checker_accepts_the_contract_itself(contract_sdl: str) -> None:
    contract = build_schema(contract_sdl)
    assert contract_mismatches(contract, build_schema(contract_sdl)) == []


def _modify(sdl: str, old: str, new: str) -> str:
    assert sdl.count(old) == 1, f"contract text changed: {old!r} is not unique"
    return sdl.replace(old, new)


# (what to change in the contract, a substring the report must contain)
CONTRACT_EDITS: list[tuple[str, str, str]] = [
    ("  attempts: Int!\n", "  attempts: Int\n", "Message.attempts: field has type Int!"),
    ("  attempts: Int!\n", "  attemptCount: Int!\n", "Message.attemptCount: field is missing"),
    (
        "  segments: Int\n  encoding: String\n  error:",
        "  segments: Int!\n  encoding: String\n  error:",
        "Message.segments: field has type Int, contract says Int!",
    ),
    (
        "  messageCount: Int!\n",
        "  messageCount: Int!\n  unread: Boolean!\n",
        "Conversation.unread: field is missing",
    ),
    (
        "deadLetters(first: Int, after: String)",
        "deadLetters(first: Int, after: ID)",
        "Query.deadLetters: argument 'after' has type String, contract says ID",
    ),
    (
        "deadLetters(first: Int, after: String)",
        "deadLetters(first: Int, after: String, status: MessageStatus)",
        "Query.deadLetters: argument 'status' is missing",
    ),
    (
        '  idempotencyKey: String\n  """Deliver',
        '  idempotencyKey: ID\n  """Deliver',
        "SendMessageInput.idempotencyKey: input field has type String, contract says ID",
    ),
    (
        "enum Channel { SMS MMS EMAIL }",
        "enum Channel { SMS MMS EMAIL WHATSAPP }",
        "Channel: enum values ['WHATSAPP'] are missing",
    ),
    (
        "union SendMessageResult = MessageAccepted | InvalidInput | IdempotencyConflict",
        "union SendMessageResult = MessageAccepted | InvalidInput | IdempotencyConflict | NotFound",
        "SendMessageResult: union members ['NotFound'] are missing",
    ),
    (
        "type DeliveryError {",
        "interface DeliveryError {",
        "DeliveryError: is an object type, contract says interface",
    ),
    (
        "type NotFound { id: ID! }",
        "type NotFound implements Node { id: ID! }",
        "NotFound: implements [], contract says ['Node']",
    ),
    ("scalar JSON", "scalar JSON\n\nscalar Cursor", "Cursor: type is missing (scalar"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    CONTRACT_EDITS,
    ids=[f"{i}-{expected.split(':')[0]}" for i, (_, _, expected) in enumerate(CONTRACT_EDITS)],
)
def test_checker_reports_a_modified_contract(
    contract_sdl: str, ours: GraphQLSchema, old: str, new: str, expected: str
) -> None:
    modified = build_schema(_modify(contract_sdl, old, new))
    problems = contract_mismatches(modified, ours)
    assert any(expected in p for p in problems), _report(problems)


def test_checker_reports_renamed_root_types(contract_sdl: str, ours: GraphQLSchema) -> None:
    sdl = _modify(contract_sdl, "type Subscription {", "type Events {")
    sdl += "\nschema { query: Query, mutation: Mutation, subscription: Events }\n"
    problems = contract_mismatches(build_schema(sdl), ours)
    assert "root subscription_type: is Subscription, contract says Events" in problems, _report(
        problems
    )


def test_checker_reports_every_mismatch_at_once(contract_sdl: str, ours: GraphQLSchema) -> None:
    sdl = _modify(contract_sdl, "  attempts: Int!\n", "  attempts: Int\n")
    sdl = _modify(sdl, "enum Channel { SMS MMS EMAIL }", "enum Channel { SMS MMS EMAIL FAX }")
    sdl = _modify(sdl, "type NotFound { id: ID! }", "type NotFound { id: ID!, kind: String }")
    problems = contract_mismatches(build_schema(sdl), ours)
    assert len(problems) == 3, _report(problems)


def test_checker_refuses_required_additions() -> None:
    contract = build_schema(
        "type Query { a(x: Int): Int } input I { x: Int } type Mutation { m(i: I): Int }"
    )
    compatible = build_schema(
        "type Query { a(x: Int, y: Int, z: Int! = 1): Int, b: Int } "
        "input I { x: Int, y: Int } type Mutation { m(i: I): Int }"
    )
    breaking = build_schema(
        "type Query { a(x: Int, y: Int!): Int } input I { x: Int, y: Int! } "
        "type Mutation { m(i: I): Int }"
    )
    assert contract_mismatches(contract, compatible) == []
    assert sorted(contract_mismatches(contract, breaking)) == [
        "I.y: extra input field is required (Int!)",
        "Query.a: extra argument 'y' is required (Int!)",
    ]
