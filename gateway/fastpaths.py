"""Fast paths: the places where the gateway leans on a library's internals for speed.

Each one has a plain twin that uses only the libraries' public APIs and gives the same bytes
or results; the fast one is taken only while

- the ``FAST_PATHS`` setting is on (off: every fast path is off, for comparing or when in
  doubt), and
- the installed versions of the libraries whose internals it uses lie in the range it was
  proven on (the same ranges ``pyproject.toml`` pins). Outside them it switches itself off,
  with one warning per process, rather than break on an internal that moved.

The fast paths, and the module that holds each:

- ``one_write_responses`` (``gateway.web.responses``): uvicorn writes an HTTP response's head
  and body in one write;
- ``direct_frames`` (``gateway.web.frames``): a pre-rendered websocket frame is written from
  the feed that rendered it, through uvicorn's websocket protocol, without the ASGI send;
- ``shared_rendering`` (``schema.live``): a subscription event is executed once for every
  subscriber that renders it alike, on Strawberry's private execution details;
- ``coerced_sends`` (``schema.coerced_sends``): the send mutations run on graphql-core's
  coerced arguments instead of Strawberry's input objects;
- ``acyclic_execution`` (``schema.executor``): an operation's executor holds itself only
  weakly, so a finished request is freed by reference counting, not by the cyclic collector.

Two uses of Strawberry's private attributes stay outside the switch, because they have no
public twin: ``schema.validation`` validates on the graphql-core schema behind the Strawberry one
(``Schema._schema``: Strawberry's own validation does the same, and no public accessor exists),
and reads the operation name the request gave (``ExecutionContext._provided_operation_name``)
to apply GraphQL's GetOperation rule, a correctness fix rather than a speed one. Both are
covered by the pinned ranges in ``pyproject.toml`` and by tests that fail if either moves
(tests/integration/test_graphql_over_http.py for GetOperation, test_hardening.py and
test_rate_limits.py for the depth and alias limits the cached validation applies).

Each app builds its own ``FastPaths``; a path's ``engaged`` count says how often it was taken
(what tests and operators look at to know which way a request went).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Proven:
    """The versions of one distribution a fast path was proven on: ``at_least <= v < below``."""

    distribution: str
    at_least: str
    below: str

    def admits(self, version: str | None) -> bool:
        if version is None:
            return False
        return _release(self.at_least) <= _release(version) < _release(self.below)


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of a version (``0.341.2rc1`` -> ``(0, 341, 2)``)."""
    found = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in found.group().split(".")) if found else ()


UVICORN = Proven("uvicorn", "0.55", "0.56")
STRAWBERRY = Proven("strawberry-graphql", "0.341.2", "0.342")
GRAPHQL_CORE = Proven("graphql-core", "3.3", "3.4")
# Where Starlette puts its error middleware decides which ``send`` the outermost layer sees.
STARLETTE = Proven("starlette", "1.0", "2")

#: Every fast path, with the libraries whose internals it uses.
PROVEN_ON: dict[str, tuple[Proven, ...]] = {
    "one_write_responses": (UVICORN, STARLETTE),
    "direct_frames": (UVICORN, STARLETTE),
    "shared_rendering": (STRAWBERRY, GRAPHQL_CORE),
    "coerced_sends": (STRAWBERRY, GRAPHQL_CORE),
    "acyclic_execution": (STRAWBERRY, GRAPHQL_CORE),
}


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


# Fast paths already reported as switched off by the version guard, in this process.
_reported: set[str] = set()


def _versions_proven(name: str) -> bool:
    for proven in PROVEN_ON[name]:
        version = installed_version(proven.distribution)
        if proven.admits(version):
            continue
        if name not in _reported:
            _reported.add(name)
            log.warning(
                "fast_path_off",
                path=name,
                distribution=proven.distribution,
                installed=version,
                proven_on=f">={proven.at_least},<{proven.below}",
            )
        return False
    return True


class FastPath:
    """One fast path of one app: whether it is taken, and how often it was."""

    __slots__ = ("enabled", "engaged", "name")

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.engaged = 0


class FastPaths:
    """The fast paths of one app, each on only if ``enabled`` and its versions are proven."""

    __slots__ = (
        "acyclic_execution",
        "coerced_sends",
        "direct_frames",
        "one_write_responses",
        "shared_rendering",
    )

    def __init__(self, enabled: bool = True) -> None:
        def path(name: str) -> FastPath:
            return FastPath(name, enabled and _versions_proven(name))

        self.one_write_responses = path("one_write_responses")
        self.direct_frames = path("direct_frames")
        self.shared_rendering = path("shared_rendering")
        self.coerced_sends = path("coerced_sends")
        self.acyclic_execution = path("acyclic_execution")

    def all(self) -> tuple[FastPath, ...]:
        return tuple(getattr(self, name) for name in PROVEN_ON)

    def taken(self) -> list[str]:
        """The names of the fast paths that are on."""
        return [p.name for p in self.all() if p.enabled]
