"""Periodic work a delivery worker runs besides delivering (reconciliation, replays, ...).

A chore is called once per sweep interval by every worker; a chore that must run in one
worker at a time takes its own lease. It may raise: the worker logs it and carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Chore = Callable[[], Awaitable[object]]
