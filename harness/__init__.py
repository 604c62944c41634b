"""The process harness the tests and the benchmarks share (not part of the shipped package).

- ``harness.servers``: throwaway PostgreSQL and Redis servers on free loopback ports.
- ``harness.processes``: ``messaging-gateway serve`` / ``worker`` / ``sandbox`` (or any
  command) as child processes with their environment and logs, readiness waits (health
  endpoints, worker heartbeats), stopping and killing by PID; for asynchronous and
  synchronous callers alike.
- ``harness.asgi``: an ASGI app under uvicorn in the caller's event loop.
- ``harness.pipeline``: two APIs, two workers and an in-process sandbox on one database.
"""
