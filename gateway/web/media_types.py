"""The media type of a ``/graphql`` answer over HTTP, chosen from the request's ``Accept``.

GraphQL over HTTP has two response media types, and they differ in their status codes:

- ``application/graphql-response+json``: a request that fails before execution (unparsable
  document, validation, variable coercion, no key, rate limited, ...) is answered 4xx (or 5xx
  when the server is at fault) with no ``data`` entry; an operation that ran is answered 200,
  whatever errors its fields raised.
- ``application/json``: the legacy type, for clients that ask for it, send ``*/*`` or no
  ``Accept`` at all. Answered as it always was (``"data": null`` beside request errors, and the
  statuses listed in the README).

Negotiation follows RFC 9110: for each type, the most specific matching range gives its
``q``; the higher ``q`` wins. On a tie a type named outright beats one reached by a wildcard;
both named, ``application/graphql-response+json`` (the spec's preferred type); both reached by
a wildcard, ``application/json`` (what such clients have always received). An ``Accept`` that
admits neither is answered 406. A request without ``Accept`` gets ``application/json``: the
spec's text lets servers default to the new type since 2025, but the clients of this gateway
and graphql-http's conformance audit expect ``application/json``.

This runs for every request, so the choice is cached by header value, and once per request in
its ASGI scope.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from starlette.types import Scope

JSON: Final = "application/json"
GRAPHQL_RESPONSE: Final = "application/graphql-response+json"

#: ``Content-Type`` of each media type (``application/json`` exactly as it always was).
CONTENT_TYPES: Final = {
    JSON: "application/json",
    GRAPHQL_RESPONSE: "application/graphql-response+json; charset=utf-8",
}

_SCOPE_KEY: Final = "gateway.response_media_type"
_NAMED: Final = 3  # specificity of a range naming the type itself


def negotiate(accept: bytes) -> str | None:
    """The media type to answer in, for an ``Accept`` header value; None if it admits neither."""
    if not accept or accept == b"*/*":  # no preference: by far the most common
        return JSON
    return _negotiate(accept)


@functools.lru_cache(maxsize=256)
def _negotiate(accept: bytes) -> str | None:
    # media type -> (specificity, q) of the most specific range that matches it
    found = {GRAPHQL_RESPONSE: (0, 0.0), JSON: (0, 0.0)}
    for media_range in accept.decode("latin-1").split(","):
        kind, *parameters = media_range.split(";")
        kind = kind.strip().lower()
        if not kind:
            continue
        q = _quality(parameters)
        for media, (specificity, current_q) in found.items():
            matched = _specificity(kind, media)
            if matched > specificity or (matched and matched == specificity and q > current_q):
                found[media] = (matched, q)
    (new_specificity, new_q), (json_specificity, json_q) = found[GRAPHQL_RESPONSE], found[JSON]
    if new_q <= 0 and json_q <= 0:
        return None
    if new_q != json_q:
        return GRAPHQL_RESPONSE if new_q > json_q else JSON
    if new_specificity != json_specificity:
        return GRAPHQL_RESPONSE if new_specificity > json_specificity else JSON
    return GRAPHQL_RESPONSE if new_specificity == _NAMED else JSON


def _specificity(kind: str, media: str) -> int:
    if kind == media:
        return _NAMED
    if kind == "application/*":
        return 2
    if kind == "*/*":
        return 1
    return 0


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 1.0  # malformed: as if absent
            return q if 0.0 <= q <= 1.0 else (0.0 if q < 0.0 else 1.0)
    return 1.0


def accept_header(scope: Scope) -> bytes:
    values = [value for name, value in scope["headers"] if name == b"accept"]
    return values[0] if len(values) == 1 else b",".join(values)


def media_type_of(scope: Scope) -> str | None:
    """The negotiated media type of this request (None: ``Accept`` admits neither)."""
    if _SCOPE_KEY in scope:
        known: str | None = scope[_SCOPE_KEY]
        return known
    media = scope[_SCOPE_KEY] = negotiate(accept_header(scope))
    return media


def error_body(media: str | None, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A GraphQL response of a request that failed before execution, in ``media``'s shape:
    ``application/graphql-response+json`` has no ``data`` entry then; ``application/json``
    keeps the ``"data": null`` it always had."""
    if media == GRAPHQL_RESPONSE:
        return {"errors": errors}
    return {"data": None, "errors": errors}


def content_type(media: str | None) -> str:
    return CONTENT_TYPES[GRAPHQL_RESPONSE] if media == GRAPHQL_RESPONSE else JSON


def graphql_response_status(body: dict[str, Any], status: int | None) -> int:
    """The status of an ``application/graphql-response+json`` answer, ``body`` made to fit it.

    A result with ``"data": null`` whose errors carry no ``path`` never executed (only field
    errors have a path: a GraphQL request error is raised before execution): its ``data`` entry
    goes, and the status is the one an extension chose (401, 429, 503, ...), else 500 for our
    own failure (``INTERNAL``), else 400. A result that ran is 200, even when a field error
    nulled all of ``data`` or asked for a 503 (the spec wants 2xx whenever ``data`` is there).
    """
    if body.get("data") is not None:
        return 200
    errors = body.get("errors") or []
    if "data" in body and (not errors or any("path" in error for error in errors)):
        return 200  # it ran, and a field error left no data at all
    body.pop("data", None)
    if status:
        return status
    internal = any((error.get("extensions") or {}).get("code") == "INTERNAL" for error in errors)
    return 500 if internal else 400
