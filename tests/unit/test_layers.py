"""The layers above the core, as the tree draws them: adapters (``persistence``, ``providers``,
``workers``, ``schema``, ``resolvers``), then the HTTP shell (``gateway.web``), then the entry
points (``gateway.entry``), each importing only downwards; and only the entry points' bootstraps
build the concrete backends (``test_core_imports`` covers the core)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.test_core_imports import ROOT, _file_of, _imports_of_file, _module_of, _within

ADAPTERS = ("persistence", "providers", "workers", "schema", "resolvers")
WEB = "gateway.web"
ENTRY = "gateway.entry"
#: Where backends may be built: the bootstraps; Alembic's environment, which Alembic runs as
#: its own entry point (it builds the engine only when no connection is handed to it); and the
#: sandbox, the providers' stand-in, which also runs alone and then opens its own HTTP session.
ENTRY_POINTS = (ENTRY, "persistence.migrations.env", "providers.sandbox_app")

#: What picks a backend: the database engine, the repositories, the brokers and what lives in
#: Redis or in process beside them, the provider adapters and their HTTP stack.
BACKENDS = {
    "persistence.db": {"create_engine"},
    "persistence.accept": {"AcceptRepository"},
    "persistence.accounts": {"AccountRepository"},
    "persistence.lifecycle": {"LifecycleRepository"},
    "persistence.opt_outs": {"OptOutRepository"},
    "persistence.queries": {"QueryRepository"},
    "persistence.quiet_hours": {"QuietHoursRepository"},
    "persistence.receipts": {"ReceiptRepository"},
    "persistence.reconcile": {"ReconcileRepository"},
    "persistence.routes": {"RouteRepository"},
    "persistence.suppressions": {"SuppressionRepository"},
    "persistence.webhooks": {"WebhookRepository"},
    "persistence.webhook_endpoints": {"WebhookEndpointRepository"},
    "workers.memory": {"MemoryBroker"},
    "workers.redis_broker": {"RedisBroker"},
    "workers.held_outcomes": {"MemoryHeldOutcomes", "RedisHeldOutcomes"},
    "workers.liveness": {"LocalLiveness", "RedisLiveness"},
    "workers.webhook_spool": {"RedisWebhookSpool"},
    "workers.lease": {"RedisLease"},
    "providers.twilio": {"TwilioProvider"},
    "providers.sendgrid": {"SendGridProvider"},
    "providers.registry": {"FailoverRegistry"},
    "providers.http": {"ProviderSession"},
    "providers.outbound_webhooks": {"WebhookPoster"},
}


def _files(*packages: str) -> list[Path]:
    files: list[Path] = []
    for package in packages:
        files += sorted(ROOT.joinpath(*package.split(".")).rglob("*.py"))
    return files


def _importers(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{_module_of(path)} -> {imported}"
        for path in _files(*packages)
        for imported in _imports_of_file(path)
        if any(_within(imported, package) for package in forbidden)
    )


def test_adapters_import_neither_the_web_shell_nor_the_entry_points() -> None:
    assert _importers(ADAPTERS, (WEB, ENTRY)) == []


def test_the_web_shell_does_not_import_the_entry_points() -> None:
    assert _importers((WEB,), (ENTRY,)) == []


def test_graphql_reaches_storage_brokers_and_providers_only_through_the_core() -> None:
    # The resolvers and the schema's own fields get services and read ports in their context.
    assert _importers(("schema", "resolvers"), ("persistence", "providers", "workers")) == []


def test_schema_does_not_import_the_resolvers() -> None:
    # One way: resolvers implement the root fields with the schema's types; the schema knows
    # its root types only as what it is handed (schema.build.Roots).
    assert _importers(("schema",), ("resolvers",)) == []


def backend_calls(source: str) -> list[str]:
    """The backends that ``source`` constructs (calls, or calls a class method of)."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # a local name -> the dotted path it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )

    def backend(callee: ast.expr) -> str | None:
        names: list[str] = []
        while isinstance(callee, ast.Attribute):
            names.insert(0, callee.attr)
            callee = callee.value
        if not isinstance(callee, ast.Name) or callee.id not in bound:
            return None
        path = bound[callee.id].split(".") + names
        for end in range(len(path), 1, -1):  # the longest prefix: Class.from_settings(...)
            module, name = ".".join(path[: end - 1]), path[end - 1]
            if name in BACKENDS.get(module, ()):
                return f"{module}.{name}"
        return None

    found = (backend(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call))
    return sorted({name for name in found if name is not None})


def test_only_the_entry_points_build_backends() -> None:
    built = {
        _module_of(path): calls
        for path in _files("gateway", *ADAPTERS)
        if not any(_within(_module_of(path), entry) for entry in ENTRY_POINTS)
        and (calls := backend_calls(path.read_text(encoding="utf-8")))
    }
    assert built == {}


def test_the_bootstraps_are_where_backends_are_built() -> None:
    # The check above looks where the backends are: it would pass vacuously if they were not.
    built = {name for path in _files(ENTRY) for name in backend_calls(path.read_text("utf-8"))}
    assert built == {f"{module}.{name}" for module, names in BACKENDS.items() for name in names}


@pytest.mark.parametrize(
    ("line", "backend"),
    [
        ("from workers.redis_broker import RedisBroker\nRedisBroker(url)", "RedisBroker"),
        ("from persistence.db import create_engine as make\nmake(settings)", "create_engine"),
        ("import workers.memory\nworkers.memory.MemoryBroker()", "MemoryBroker"),
        ("from workers import memory\nmemory.MemoryBroker()", "MemoryBroker"),
        ("from providers.http import ProviderSession\nProviderSession.from_settings(s)", "Session"),
    ],
)
def test_building_a_backend_is_caught(line: str, backend: str) -> None:
    assert [name for name in backend_calls(line) if name.endswith(backend)]


def test_naming_a_backend_without_building_one_is_allowed() -> None:
    source = "from persistence.queries import QueryRepository\ndef f(q: QueryRepository): ..."
    assert backend_calls(source) == []


def test_every_backend_named_exists() -> None:
    for module, names in BACKENDS.items():
        path = _file_of(module)
        assert path is not None, module
        defined = {
            node.name
            for node in ast.parse(path.read_text("utf-8")).body
            if isinstance(node, ast.ClassDef | ast.FunctionDef)
        }
        assert names <= defined, (module, names - defined)
