"""structlog + stdlib logging setup: one JSON (or console) line per event, request id included.

Call :func:`configure_logging` once at startup, before the server starts. When running
uvicorn programmatically pass ``log_config=None`` so it does not install its own handlers
(``uvicorn.run(app, log_config=None)``); its loggers then propagate to the root handler
installed here and are rendered by the same processors.
"""

from __future__ import annotations

import json as _json
import logging
import sys
from collections.abc import Callable
from typing import IO, Any, Final

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from gateway.observability.redaction import redact_secrets

#: stdlib loggers whose own handlers are removed so that they propagate to the root handler.
ROUTED_STDLIB_LOGGERS: Final = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "sqlalchemy",
    "alembic",
)

_HANDLER_MARKER: Final = "_gateway_observability_handler"


def _orjson_dumps(obj: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    """orjson-backed serializer for JSONRenderer, with a stdlib json fallback."""
    try:
        return orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return _json.dumps(obj, default=default if default is not None else repr)


def _drop_color_message(
    _logger: WrappedLogger, _method_name: str, event_dict: EventDict
) -> EventDict:
    """Drop uvicorn's ANSI-coloured duplicate of the message (passed as ``extra``)."""
    event_dict.pop("color_message", None)
    return event_dict


def _parse_level(level: str) -> int:
    mapping = logging.getLevelNamesMapping()
    try:
        return mapping[level.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None


def _shared_processors() -> list[Processor]:
    """Processors applied to both structlog events and foreign (stdlib) log records."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _final_processors(json: bool, stream: IO[str]) -> list[Processor]:
    renderer: Processor
    if json:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        exception_processors: list[Processor] = [structlog.processors.format_exc_info]
    else:
        isatty = getattr(stream, "isatty", None)
        colors = bool(isatty()) if callable(isatty) else False
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
        exception_processors = []  # ConsoleRenderer formats exc_info itself
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        *exception_processors,
        redact_secrets,
        renderer,
    ]


def configure_logging(
    level: str = "INFO", json: bool = True, *, stream: IO[str] | None = None
) -> None:
    """Configure structlog and route stdlib logging through the same processors.

    Idempotent: a second call replaces the handler installed by the first one. ``stream``
    defaults to ``sys.stdout`` (resolved at call time).
    """
    numeric_level = _parse_level(level)
    out = stream if stream is not None else sys.stdout
    shared = _shared_processors()

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger first used before (re)configuration must pick up the new setup.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=_final_processors(json, out),
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARKER, True)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_MARKER, False):
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)

    for name in ROUTED_STDLIB_LOGGERS:
        stdlib_logger = logging.getLogger(name)
        stdlib_logger.handlers.clear()
        stdlib_logger.propagate = True
    # Alembic narrates every plugin and step at INFO; only its warnings are worth a line.
    logging.getLogger("alembic").setLevel(max(numeric_level, logging.WARNING))
