"""What counts as "a backing service is unavailable": the one place that knows.

The database (SQLAlchemy over asyncpg) or Redis being down, restarting or refusing
connections is not a bug of ours and not the client's fault: the answer is "try again
later" (HTTP 503 with ``Retry-After``, code ``UNAVAILABLE``), logged as a warning without a
traceback, instead of a masked ``INTERNAL`` logged as an error. Drivers wrap each other's
errors (SQLAlchemy wraps asyncpg's, GraphQL wraps a resolver's, a shared transaction hands
one error to every caller), so the whole chain of causes is looked at.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]
import redis.exceptions
import sqlalchemy.exc

from gateway.observability import current_request_id

UNAVAILABLE: Final = "UNAVAILABLE"
UNAVAILABLE_MESSAGE: Final = "a backing service is unavailable; try again later"
#: Long enough for a restart or a failover, short enough that clients come back soon after.
RETRY_AFTER_SECONDS: Final = 5

_UNAVAILABLE_ERRORS: Final = (
    # Refused, reset or lost connections, whichever driver was connecting.
    ConnectionError,
    # The connection died under a statement, or the server would not take one.
    asyncpg.PostgresConnectionError,
    # Shutting down, starting up, or terminating sessions (SQLSTATE class 57P).
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # No pooled connection came free: the database cannot keep up with us right now.
    sqlalchemy.exc.TimeoutError,
)


def unavailable_cause(error: BaseException | None) -> BaseException | None:
    """The error in ``error``'s chain that says a backing service cannot be reached, if any."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE_ERRORS):
            return current
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return current
        # asyncio's connect to several addresses reports their failures as one bare OSError.
        if type(current) is OSError:
            return current
        original = getattr(current, "original_error", None)  # graphql-core's wrapper
        pending += [current.__cause__, current.__context__]
        if isinstance(original, BaseException):
            pending.append(original)
    return None


def is_unavailable(error: BaseException | None) -> bool:
    return unavailable_cause(error) is not None


def unavailable_extensions() -> dict[str, Any]:
    """``extensions`` of the GraphQL error of an unavailable backing service, with the request
    id to find the details in the log."""
    return {
        "code": UNAVAILABLE,
        "retryAfter": RETRY_AFTER_SECONDS,
        "requestId": current_request_id(),
    }


def unavailable_error() -> dict[str, Any]:
    return {"message": UNAVAILABLE_MESSAGE, "extensions": unavailable_extensions()}


def describe(error: BaseException) -> str:
    """A one-line account of an outage for the log (no traceback: the cause is enough)."""
    cause = unavailable_cause(error) or error
    if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.orig is not None:
        # The driver's own error: SQLAlchemy's message adds the statement and its parameters.
        cause = cause.orig
    return f"{type(cause).__name__}: {cause}"[:300]
