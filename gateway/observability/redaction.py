"""A structlog processor that keeps credentials out of log lines."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from structlog.typing import EventDict, WrappedLogger

REDACTED: Final = "[redacted]"

_SENSITIVE_KEY: Final = re.compile(r"(authorization|api[_-]?key|password|secret|token)", re.I)
_BEARER: Final = re.compile(r"(\bBearer\s+)[^\s\"',;]+", re.I)
_MAX_DEPTH: Final = 6


def is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and _SENSITIVE_KEY.search(key) is not None


def redact_bearer(text: str) -> str:
    """Replace the credential after ``Bearer`` with ``[redacted]``."""
    return _BEARER.sub(rf"\g<1>{REDACTED}", text)


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_bearer(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if is_sensitive_key(k) else _redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_value(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact_value(v, depth + 1) for v in value)
    return value


def redact_secrets(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """Redact values of secret-looking keys and ``Bearer`` tokens inside strings.

    Keys match ``authorization``, ``api_key``/``apikey``/``api-key``, ``password``,
    ``secret`` or ``token`` anywhere, case-insensitively.

    Nested dicts/lists are copied (never mutated) with the same rules applied.
    """
    for key, value in event_dict.items():
        if is_sensitive_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(value, 0)
    return event_dict
