"""Hypothesis-driven fuzzing of ``/graphql`` over real HTTP, on both backends.

Hostile operations and variables (random and special strings: NUL, lone surrogates escaped in
JSON, RTL marks, emoji, 100 KB strings; deeply nested selections, lists and JSON; invalid ids
and cursors; huge and negative numbers; wrong variable types; random operation names), random
JSON and bytes as request bodies, and GET with random query strings.

The oracle, for every response: a status in ``ALLOWED_STATUSES`` (never a 5xx but the
execution timeout's 504; 406 too where the Accept header admits no JSON type); JSON (or a
plain-text 4xx for requests that are not GraphQL); no stack trace and no SQL unless the
request itself contained the text; and no ``INTERNAL`` error at all: hostile input is the
client's fault, so every INTERNAL found is a bug.

Afterwards (fixture teardown) the process is healthy, a normal send works, and the fuzzing
account holds exactly the messages some response reported as ``MessageAccepted``.

Requests found by fuzzing that break the oracle are pinned in ``KNOWN_HOSTILE_REQUESTS``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from persistence.accounts import ACCOUNTS
from persistence.rows import MESSAGES
from schema.ids import encode_id
from tests.conftest import GraphQLClient, RunningGateway

ALLOWED_STATUSES = frozenset({200, 400, 401, 413, 429, 504})
#: Accept headers that admit neither application/json nor application/graphql-response+json
#: (``application/graphql+json`` is an early draft's name, not a type the gateway answers in).
UNACCEPTABLE = frozenset({"text/html", "application/graphql+json"})
LEAKS = ("Traceback", 'File "', "SELECT ", "INSERT ", "sqlalchemy", "asyncpg", "sqlite3")

# Replaced, in the request text, by ids of the fuzzing account's own conversation and message.
CONVERSATION = "__fuzz_conversation__"
MESSAGE = "__fuzz_message__"
VALID_KEY = "__valid_key__"

FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
    # No shrinking: every shrink step is a request, and the failure message already says
    # which request broke what.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)

SEND_SELECTION = """
  __typename
  ... on MessageAccepted { replayed message { id status body metadata segments encoding } }
  ... on InvalidInput { problems { field problem } }
  ... on IdempotencyConflict { reason original { id } }
"""


# --- requests and the oracle ------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text inserted verbatim: nesting or numbers no JSON encoder would produce."""

    text: str


def to_json(value: Any) -> str:
    """ASCII JSON: NUL, surrogates and emoji travel as \\u escapes; NaN stays NaN."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def query_value(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@dataclass(frozen=True)
class Probe:
    """One hostile HTTP request."""

    method: str  # "POST" (``body``) or "GET" (``query_string``)
    body: bytes = b""
    query_string: str = ""
    auth: str | None = VALID_KEY  # VALID_KEY, None (no header) or the header's value
    accept: str = "application/json"

    @classmethod
    def post(cls, payload: Any, **kw: Any) -> Probe:
        return cls("POST", body=to_json(payload).encode(), **kw)

    @classmethod
    def get(cls, params: list[tuple[str, str]], **kw: Any) -> Probe:
        query = "&".join(f"{query_value(k)}={query_value(v)}" for k, v in params)
        return cls("GET", query_string=query, **kw)

    def sent_text(self) -> str:
        raw = self.body if self.method == "POST" else unquote_to_bytes(self.query_string)
        return raw.decode("utf-8", "replace")

    def echoable_text(self) -> str:
        """What an answer may quote back: the request, with and without JSON escaping."""
        text = self.sent_text()
        return text + "\n" + text.replace('\\"', '"').replace("\\\\", "\\")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints failing examples with this: keep 100 KB bodies out of reports.
        printer.text(f"Probe<{self.describe()}>")

    def describe(self) -> str:
        text = self.sent_text()
        shown = text if len(text) <= 800 else f"{text[:500]} ... {text[-300:]} ({len(text)} chars)"
        return f"{self.method} {shown!r} auth={self.auth!r} accept={self.accept!r}"


def accepted_ids(data: Any) -> set[str]:
    """Ids of every MessageAccepted anywhere in a response's data."""
    found: set[str] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("__typename") == "MessageAccepted":
                message = node.get("message")
                found.add(
                    message["id"]
                    if isinstance(message, dict) and isinstance(message.get("id"), str)
                    else "<accepted, id not selected>"
                )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def check(probe: Probe, response: httpx.Response) -> Any:
    """The oracle; returns the JSON body (or None for a plain-text answer)."""
    where = probe.describe()
    status = response.status_code
    text = response.text
    if probe.accept in UNACCEPTABLE:
        # No JSON media type admitted: 406, unless the request is refused before that.
        assert status in ALLOWED_STATUSES | {406, 405}, (
            f"HTTP {status} ({text[:300]!r}) for {where}"
        )
    elif probe.method == "GET" and status == 405:
        # A mutation over GET (any of a repeated `query` parameter may hold one) is refused
        # and pointed at POST, as GraphQL over HTTP says.
        assert response.headers.get("allow") == "POST", f"405 without Allow: POST for {where}"
    else:
        assert status in ALLOWED_STATUSES, f"HTTP {status} ({text[:300]!r}) for {where}"
    sent = probe.echoable_text()
    for leak in LEAKS:
        assert leak not in text or leak in sent, f"{leak!r} leaked: {text[:800]!r} for {where}"
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = response.json()
        assert isinstance(body, dict), f"JSON that is not an object: {text[:300]!r} for {where}"
        errors = body.get("errors") or []
        assert isinstance(errors, list)
        for error in errors:
            assert isinstance(error, dict) and isinstance(error.get("message"), str), error
            code = (error.get("extensions") or {}).get("code")
            assert code != "INTERNAL" and error["message"] != "Internal error", (
                f"INTERNAL error {error} for {where}"
            )
        return body
    if content_type.startswith("text/html"):
        # GraphiQL, for a browser asking for it.
        assert probe.method == "GET" and status == 200, f"HTML {status} for {where}"
        return None
    assert 400 <= status < 500, f"plain {status} {text[:300]!r} for {where}"
    return None


class Fuzzer:
    """Sends probes as the fuzzing account and keeps the ids of every accepted message."""

    def __init__(
        self, gateway: RunningGateway, client: GraphQLClient, conversation_id: str, message_id: str
    ) -> None:
        self.gateway = gateway
        self.client = client
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.accepted: set[str] = {message_id}
        self.requests = 0

    def __repr__(self) -> str:
        return f"Fuzzer({self.gateway.backend}, account={self.client.account!r})"

    def _fill(self, text: str) -> str:
        return text.replace(CONVERSATION, self.conversation_id).replace(MESSAGE, self.message_id)

    async def run(self, probe: Probe) -> Any:
        headers = {"Accept": probe.accept}
        if probe.auth == VALID_KEY:
            headers["Authorization"] = f"Bearer {self.client.key}"
        elif probe.auth is not None:
            headers["Authorization"] = probe.auth.strip()  # no edge whitespace in HTTP
        url = f"{self.gateway.base_url}/graphql"
        if probe.method == "GET":
            response = await self.gateway.http.get(
                f"{url}?{self._fill(probe.query_string)}", headers=headers
            )
        else:
            headers["Content-Type"] = "application/json"
            body = self._fill(probe.body.decode("latin-1")).encode("latin-1")
            response = await self.gateway.http.post(url, content=body, headers=headers)
        self.requests += 1
        result = check(probe, response)
        if isinstance(result, dict):
            self.accepted |= accepted_ids(result.get("data"))
        return result


async def stored_message_ids(gateway: RunningGateway, account: str) -> set[str]:
    async with gateway.container.engine.connect() as conn:
        rows = await conn.execute(
            select(MESSAGES.c.id)
            .join(ACCOUNTS, ACCOUNTS.c.id == MESSAGES.c.account_id)
            .where(ACCOUNTS.c.name == account)
        )
    return {encode_id("Message", row.id) for row in rows}


SEND = f"""
mutation Send($input: SendMessageInput!) {{ sendMessage(input: $input) {{ {SEND_SELECTION} }} }}
"""


def sms(body: str = "hello", to: str = "+14155550199") -> dict[str, Any]:
    return {"channel": "SMS", "from": "+14155550100", "to": to, "body": body}


@pytest.fixture
async def fuzzer(gateway: RunningGateway) -> AsyncIterator[Fuzzer]:
    """A fresh account with one conversation; afterwards, the invariants of the whole run."""
    client = await gateway.new_client("fuzz-" + uuid.uuid4().hex[:10])
    seed = (await client.execute(SEND, {"input": sms("seed")}))["sendMessage"]
    assert seed["__typename"] == "MessageAccepted", seed
    message_id = seed["message"]["id"]
    found = await client.execute(
        "query M($id: ID!) { message(id: $id) { conversation { id } } }", {"id": message_id}
    )
    conversation_id = found["message"]["conversation"]["id"]
    state = Fuzzer(gateway, client, conversation_id, message_id)

    yield state

    health = await gateway.http.get(f"{gateway.base_url}/health")
    assert health.status_code == 200, health.text
    stored = await stored_message_ids(gateway, client.account)
    assert stored == state.accepted, {
        "written although no response accepted them": sorted(stored - state.accepted),
        "accepted but not stored": sorted(state.accepted - stored),
    }
    await send_normally(client)


async def send_normally(client: GraphQLClient) -> None:
    """A plain send is accepted (waiting out the per-second limit the fuzzing may have hit)."""
    for _ in range(5):
        response = await client.post(SEND, {"input": sms("after the fuzzing")})
        if response.status_code != 429:
            break
        await asyncio.sleep(float(response.headers["retry-after"]))
    assert response.status_code == 200, response.text
    result = response.json()["data"]["sendMessage"]
    assert result["__typename"] == "MessageAccepted", result


# --- strategies -------------------------------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())  # surrogates and controls included
SPECIAL_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202e\u200f",
    "\ufeff",
    "😀",
    "👩‍👩‍👧‍👦",
    "\ud800",
    "\udfff",
    "a\ud83db",
    "'",
    '"',
    "\\",
    "\n\r\t",
    "' OR '1'='1",
    "'; DROP TABLE messages; --",
    "%s%n%x",
    "${jndi:ldap://127.0.0.1/x}",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "null",
    "NaN",
    "-1",
    "9" * 40,
    "+",
    "+14155550199",
    "(415) 555-0199",
    "a@b.example",
    "msg_",
    "conv_",
    "msg_" + "f" * 32,
    "conv_" + "0" * 32,
    "__schema",
]
STRINGS = st.one_of(
    st.sampled_from(SPECIAL_STRINGS),
    st.text(ANY_CHARACTER, max_size=30),
    st.text(max_size=30),
)
HUGE_STRINGS = st.sampled_from(["x", "é", "😀", "\x00", "\ud800", "ab\u202e"]).map(
    lambda piece: piece * (100_000 // len(piece) + 1)
)
# One string in sixteen is about 100 KB.
HOSTILE_STRINGS = st.integers(0, 15).flatmap(lambda n: HUGE_STRINGS if n == 0 else STRINGS)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(4301, 6000).map(lambda n: Raw("9" * n)),  # past Python's int parsing limit
)
DEEP_JSON = st.one_of(
    st.integers(1, 3000).map(lambda n: Raw("[" * n + "]" * n)),
    st.integers(1, 3000).map(lambda n: Raw('{"a":' * n + "1" + "}" * n)),
)


def json_values(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), NUMBERS, strings)
    nested = st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(STRINGS, inner, max_size=4),
        max_leaves=10,
    )
    return st.one_of(nested, DEEP_JSON)


JSON_VALUES = json_values(HOSTILE_STRINGS)
SMALL_JSON_VALUES = json_values(STRINGS)  # for query strings: URLs have a length limit
NAMES = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,15}", fullmatch=True)
HEX = st.text("0123456789abcdefABCDEF-", max_size=40)
PHONES = st.one_of(
    st.sampled_from(["+14155550100", "(415) 555-0199", "415.555.0123", "+442071838750"]),
    st.integers(0, 9999).map(lambda n: f"+1415555{n:04d}"),
)
EMAILS = st.sampled_from(["a@b.example", "Someone@Example.COM", "x+y@sub.example.org"])
ADDRESSES = st.one_of(PHONES, EMAILS, HOSTILE_STRINGS, JSON_VALUES)
DATETIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-13-45T99:99:99Z",
            "2026-11-27T10:00:00",
            "now",
            "1e309",
        ]
    ),
    HOSTILE_STRINGS,
)
URLS = st.one_of(
    st.sampled_from(
        [
            "https://example.com/a.png",
            "http://127.0.0.1/x.gif",
            "ftp://example.com/x",
            "javascript:alert(1)",
            "https://\ud800.example/",
            "file:///etc/passwd",
        ]
    ),
    HOSTILE_STRINGS,
)
CURSOR_TEXTS = st.one_of(
    st.builds(
        lambda tag, rest: f"{tag}:{rest}",
        st.sampled_from(["c", "m", "d", "x", ""]),
        st.one_of(
            st.text(ANY_CHARACTER, max_size=40),
            st.builds(lambda stamp, hexes: f"{stamp}|{hexes}", DATETIMES, HEX),
            HEX,
        ),
    ),
    st.text(ANY_CHARACTER, max_size=60),
)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


CURSORS = st.one_of(
    CURSOR_TEXTS.map(b64),
    st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
    st.integers(-(10**30), 10**30).map(str),  # event cursors are digits
    HOSTILE_STRINGS,
    JSON_VALUES,
)
IDS = st.one_of(
    st.sampled_from([CONVERSATION, MESSAGE]),
    st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(["msg_", "conv_", "MSG_", "msg_-", ""]),
        st.one_of(HEX, STRINGS),
    ),
    st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
    HOSTILE_STRINGS,
    JSON_VALUES,
)
PAGE_SIZES = st.one_of(
    st.integers(-5, 150),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), 2**63]),
    JSON_VALUES,
)
OPERATION_NAMES = st.one_of(st.none(), NAMES, HOSTILE_STRINGS, JSON_VALUES)
AUTH = st.one_of(
    st.just(VALID_KEY),
    st.just(VALID_KEY),
    st.just(VALID_KEY),
    st.none(),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(
        lambda t: "Bearer " + t
    ),
)
ACCEPT = st.sampled_from(
    ["application/json", "application/json", "*/*", "text/html", "application/graphql+json"]
)

HOSTILE_INPUTS = st.fixed_dictionaries(
    {"channel": st.one_of(st.sampled_from(["SMS", "MMS", "EMAIL"]), JSON_VALUES)},
    optional={
        "from": ADDRESSES,
        "to": ADDRESSES,
        "body": st.one_of(HOSTILE_STRINGS, JSON_VALUES),
        "attachments": st.one_of(st.lists(URLS, max_size=3), JSON_VALUES),
        "idempotencyKey": st.one_of(HOSTILE_STRINGS, JSON_VALUES),
        "sendAt": st.one_of(DATETIMES, JSON_VALUES),
        "metadata": JSON_VALUES,
        "unexpected": JSON_VALUES,
    },
)
# Plausible envelopes with one hostile part: these reach the domain rules and the database.
PLAUSIBLE_INPUTS = st.one_of(
    st.builds(
        lambda to, body, extra: {**sms(body, to), **extra},
        PHONES,
        HOSTILE_STRINGS,
        st.fixed_dictionaries(
            {},
            optional={
                "idempotencyKey": HOSTILE_STRINGS,
                "metadata": st.dictionaries(STRINGS, JSON_VALUES, max_size=3),
                "sendAt": DATETIMES,
            },
        ),
    ),
    st.builds(
        lambda to, body, metadata: {
            "channel": "EMAIL",
            "from": "sender@example.com",
            "to": to,
            "body": body,
            "metadata": metadata,
        },
        st.one_of(EMAILS, HOSTILE_STRINGS),
        HOSTILE_STRINGS,
        st.dictionaries(STRINGS, JSON_VALUES, max_size=3),
    ),
    st.builds(
        lambda to, attachments: {**sms("pic", to), "channel": "MMS", "attachments": attachments},
        PHONES,
        st.lists(URLS, max_size=3),
    ),
)
SEND_INPUTS = st.one_of(HOSTILE_INPUTS, PLAUSIBLE_INPUTS, PLAUSIBLE_INPUTS, JSON_VALUES)


@st.composite
def send_probes(draw: st.DrawFn) -> Probe:
    name = draw(NAMES)
    kind = draw(st.sampled_from(["one", "many", "preview"]))
    if kind == "one":
        document = (
            f"mutation {name}($input: SendMessageInput!) "
            f"{{ sendMessage(input: $input) {{ {SEND_SELECTION} }} }}"
        )
        variables: Any = {"input": draw(SEND_INPUTS)}
    elif kind == "many":
        document = (
            f"mutation {name}($inputs: [SendMessageInput!]!) "
            f"{{ sendMessages(inputs: $inputs) {{ {SEND_SELECTION} }} }}"
        )
        variables = {"inputs": draw(st.one_of(st.lists(SEND_INPUTS, max_size=4), SEND_INPUTS))}
    else:
        document = (
            f"query {name}($input: SendMessageInput!) {{ previewMessage(input: $input) {{ valid "
            "problems { field problem } normalizedFrom normalizedTo segments encoding "
            "nonGsmCharacters } }"
        )
        variables = {"input": draw(SEND_INPUTS)}
    if draw(st.integers(0, 9)) == 0:
        variables = draw(JSON_VALUES)  # variables of the wrong shape altogether
    payload: dict[str, Any] = {"query": document, "variables": variables}
    operation_name = draw(st.one_of(st.just(name), OPERATION_NAMES))
    if operation_name is not None:
        payload["operationName"] = operation_name
    return Probe.post(payload, auth=draw(AUTH))


ID_DOCUMENTS = [
    "query Q($id: ID!) { message(id: $id) { id body status conversation { id } } }",
    "query Q($id: ID!) { node(id: $id) { id __typename ... on Conversation { participants } } }",
    "query Q($id: ID!) { conversation(id: $id) { id messageCount participants } }",
    "mutation Q($id: ID!) { cancelMessage(id: $id) { __typename "
    "... on MessageAccepted { message { id status } } ... on NotFound { id } } }",
    "mutation Q($id: ID!) { retryMessage(id: $id) { __typename "
    "... on MessageAccepted { message { id status } } ... on NotFound { id } } }",
]
CURSOR_DOCUMENTS = [
    "query Q($first: Int, $after: String, $participant: String) { conversations(first: $first, "
    "after: $after, participant: $participant) { edges { cursor node { id } } "
    "pageInfo { hasNextPage endCursor } } }",
    "query Q($first: Int, $after: String) { deadLetters(first: $first, after: $after) "
    "{ edges { cursor } pageInfo { hasNextPage } } }",
    "query Q($id: ID!, $first: Int, $after: String, $last: Int, $before: String) "
    "{ conversation(id: $id) { messages(first: $first, after: $after, last: $last, "
    "before: $before) { edges { cursor node { id } } pageInfo { hasPreviousPage } } } }",
]


@st.composite
def id_and_cursor_probes(draw: st.DrawFn) -> Probe:
    if draw(st.booleans()):
        document = draw(st.sampled_from(ID_DOCUMENTS))
        variables: dict[str, Any] = {"id": draw(IDS)}
    else:
        document = draw(st.sampled_from(CURSOR_DOCUMENTS))
        variables = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "first": PAGE_SIZES,
                    "last": PAGE_SIZES,
                    "after": CURSORS,
                    "before": CURSORS,
                    "participant": st.one_of(PHONES, EMAILS, HOSTILE_STRINGS, JSON_VALUES),
                },
            )
        )
        variables["id"] = draw(st.one_of(st.just(CONVERSATION), IDS))
        # Variables the operation does not declare are an error too: keep the declared ones.
        declared = {part.split(":")[0].strip() for part in document.split("$")[1:]}
        variables = {k: v for k, v in variables.items() if k in declared}
    return Probe.post({"query": document, "variables": variables}, auth=draw(AUTH))


def nested_fields(levels: int) -> str:
    selection = "id"
    for _ in range(levels):
        selection = f"messages {{ edges {{ node {{ conversation {{ {selection} }} }} }} }}"
    return f"{{ conversations {{ edges {{ node {{ {selection} }} }} }} }}"


def graphql_string(value: str) -> str:
    return json.dumps(value)  # JSON string escapes are GraphQL string escapes


DOCUMENTS = st.one_of(
    st.integers(0, 700).map(lambda n: "{" + " a {" * n + " b" + " }" * n + " }"),
    st.integers(0, 60).map(nested_fields),
    st.integers(0, 400).map(
        lambda n: (
            '{ previewMessage(input: {channel: SMS, from: "a", to: "b", attachments: '
            + "[" * n
            + '"x"'
            + "]" * n
            + "}) { valid } }"
        )
    ),
    st.integers(0, 80).map(lambda n: "{ " + " ".join(f"a{i}: __typename" for i in range(n)) + " }"),
    st.builds(
        lambda body: (
            'mutation { sendMessage(input: {channel: SMS, from: "+14155550100", '
            f'to: "+14155550199", body: {graphql_string(body)}}}) {{ {SEND_SELECTION} }} }}'
        ),
        HOSTILE_STRINGS,
    ),
    st.builds(
        lambda kind, name: f"{kind} {name} {{ __typename }}",
        st.sampled_from(["query", "mutation", "subscription", "Query", "fragment", ""]),
        st.one_of(NAMES, STRINGS),
    ),
    st.just("fragment A on Query { ...B } fragment B on Query { ...A } { ...A }"),
    st.just("{ __typename @skip(if: true) @include(if: false) @nope }"),
    st.just("query Q($x: [[[Int!]!]]) { __typename }"),
    st.just('subscription S { messageEvents(after: "0") { cursor } }'),
    st.just("{ __schema { types { name fields { name type { name ofType { name } } } } } }"),
    st.text(ANY_CHARACTER, max_size=200),
    st.text("{}()[]:$@!.=,\"' \n#abcqueryfragmentonmutation...\\u0", max_size=200),
)


@st.composite
def document_probes(draw: st.DrawFn) -> Probe:
    payload: dict[str, Any] = {"query": draw(DOCUMENTS)}
    if draw(st.booleans()):
        payload["variables"] = draw(st.one_of(st.dictionaries(STRINGS, JSON_VALUES), JSON_VALUES))
    operation_name = draw(OPERATION_NAMES)
    if operation_name is not None:
        payload["operationName"] = operation_name
    return Probe.post(payload, auth=draw(AUTH), accept=draw(ACCEPT))


@st.composite
def body_probes(draw: st.DrawFn) -> Probe:
    auth = draw(AUTH)
    kind = draw(st.sampled_from(["json", "fields", "bytes"]))
    if kind == "bytes":
        return Probe("POST", body=draw(st.binary(max_size=300)), auth=auth)
    if kind == "json":
        return Probe.post(draw(JSON_VALUES), auth=auth)
    payload = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "query": st.one_of(DOCUMENTS, JSON_VALUES),
                "variables": JSON_VALUES,
                "operationName": OPERATION_NAMES,
                "extensions": JSON_VALUES,
                "id": JSON_VALUES,
            },
        )
    )
    return Probe.post(payload, auth=auth, accept=draw(ACCEPT))


GET_VALUES = st.one_of(
    STRINGS,
    st.sampled_from(
        [
            "{ __typename }",
            "query Q { conversations { edges { cursor } } }",
            'mutation M { sendMessage(input: {channel: SMS, from: "+14155550100", '
            'to: "+14155550199", body: "over GET"}) { __typename } }',
            'subscription S { messageEvents(after: "0") { cursor } }',
        ]
    ),
    st.integers(0, 300).map(nested_fields),
    SMALL_JSON_VALUES.map(to_json),
)


@st.composite
def get_probes(draw: st.DrawFn) -> Probe:
    keys = st.one_of(
        st.sampled_from(["query", "variables", "operationName", "extensions"]), STRINGS
    )
    params = draw(st.lists(st.tuples(keys, GET_VALUES), max_size=4))
    while params and len(Probe.get(params).query_string) > 30_000:
        params.pop()  # URLs have a length limit (the client's is 64 KB)
    if draw(st.integers(0, 4)) == 0:
        # Not even a well-formed query string.
        junk = draw(st.text("%&=+?#;[]{}abcqueryvariables0123456789é", max_size=80))
        return Probe("GET", query_string=junk, auth=draw(AUTH), accept=draw(ACCEPT))
    return Probe.get(params, auth=draw(AUTH), accept=draw(ACCEPT))


# --- the fuzz tests ---------------------------------------------------------------------------


@settings(FUZZ, max_examples=40)
@given(probe=send_probes())
async def test_fuzz_send_inputs(fuzzer: Fuzzer, probe: Probe) -> None:
    await fuzzer.run(probe)


@settings(FUZZ, max_examples=30)
@given(probe=id_and_cursor_probes())
async def test_fuzz_ids_and_cursors(fuzzer: Fuzzer, probe: Probe) -> None:
    await fuzzer.run(probe)


@settings(FUZZ, max_examples=30)
@given(probe=document_probes())
async def test_fuzz_documents(fuzzer: Fuzzer, probe: Probe) -> None:
    await fuzzer.run(probe)


@settings(FUZZ, max_examples=30)
@given(probe=body_probes())
async def test_fuzz_request_bodies(fuzzer: Fuzzer, probe: Probe) -> None:
    await fuzzer.run(probe)


@settings(FUZZ, max_examples=20)
@given(probe=get_probes())
async def test_fuzz_get_query_strings(fuzzer: Fuzzer, probe: Probe) -> None:
    await fuzzer.run(probe)


# --- what the fuzzing found -------------------------------------------------------------------

PARTICIPANT = "query P($p: String) { conversations(participant: $p) { edges { node { id } } } }"


def send_with(**fields: Any) -> Probe:
    return Probe.post({"query": SEND, "variables": {"input": {**sms(), **fields}}})


KNOWN_HOSTILE_REQUESTS: dict[str, Callable[[], Probe]] = {
    "json-body-nested-5000-deep": lambda: Probe(
        "POST",
        body=b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
    ),
    "json-body-number-with-5000-digits": lambda: Probe(
        "POST", body=b'{"query": "{ __typename }", "variables": {"a": ' + b"9" * 5000 + b"}}"
    ),
    "json-body-invalid-utf8": lambda: Probe("POST", body=b'{"query": "{ __typename }\xff"}'),
    "json-body-is-a-string": lambda: Probe("POST", body=b'"{ __typename }"'),
    "json-body-is-a-number": lambda: Probe("POST", body=b"5"),
    "json-body-is-null": lambda: Probe("POST", body=b"null"),
    "get-variables-nested-5000-deep": lambda: Probe.get(
        [("query", "{ __typename }"), ("variables", "[" * 5000 + "]" * 5000)]
    ),
    "operation-name-lone-surrogate": lambda: Probe.post(
        {"query": "query Q { __typename }", "operationName": "\ud800"}
    ),
    "participant-lone-surrogate": lambda: Probe.post(
        {"query": PARTICIPANT, "variables": {"p": "\ud800"}}
    ),
    "participant-nul": lambda: Probe.post(
        {"query": PARTICIPANT, "variables": {"p": "+1415555\x000199"}}
    ),
    "metadata-string-with-nul": lambda: send_with(metadata={"note": "a\x00b"}),
    "metadata-key-with-nul": lambda: send_with(metadata={"a\x00b": 1}),
    "subscription-over-post": lambda: Probe.post(
        {"query": 'subscription S { messageEvents(after: "0") { cursor } }'}
    ),
    "get-repeated-query-the-last-a-mutation": lambda: Probe.get(
        [("query", "{ __typename }"), ("query", "mutation { __typename }")]
    ),
    "subscription-over-get": lambda: Probe.get(
        [("query", 'subscription S { messageEvents(after: "0") { cursor } }')]
    ),
}


@pytest.mark.parametrize("name", sorted(KNOWN_HOSTILE_REQUESTS))
async def test_known_hostile_requests(fuzzer: Fuzzer, name: str) -> None:
    await fuzzer.run(KNOWN_HOSTILE_REQUESTS[name]())
