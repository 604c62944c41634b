"""The fault suite's own PostgreSQL and Redis: faults are injected into them, so no other test
may share them.

PostgreSQL needs nothing beyond ``tests.servers.PostgresServer`` (``stop_process`` keeps the
data, ``restart`` brings the same cluster back on the same port). Redis gets a SIGKILL: the
shared class only stops it politely.
"""

from __future__ import annotations

import contextlib
import os
import signal

from tests.servers import RedisServer

__all__ = ["KillableRedis"]


class KillableRedis(RedisServer):
    """A non-persistent ``redis-server`` that can die without warning: after ``kill()`` its
    data is gone (it never had any on disk), and ``restart()`` starts an empty one on the
    same port, as a supervisor would."""

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
