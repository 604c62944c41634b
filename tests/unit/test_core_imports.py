"""The core (``gateway.domain``, ``gateway.services``) depends on nothing of ours outside it.

Services reach storage, the broker and providers through the protocols in
``gateway.services.ports``; the concrete classes are wired in by the composition root. One
outside module is allowed: ``gateway.observability.metrics``, the process-wide Prometheus
counters. Incrementing one is no I/O and knows no adapter, and handing each service its
counters through a port would only add wiring; the transitive check below makes sure that
allowance never becomes a back door to the adapters.
"""

import ast
from pathlib import Path

import pytest

import gateway

ROOT = Path(gateway.__file__).parent.parent
CORE = ("gateway.domain", "gateway.services")
OURS = {"gateway", "persistence", "providers", "workers", "schema", "resolvers", "tests", "bench"}
ADAPTERS = ("persistence", "providers", "workers", "schema", "resolvers")
ALLOWED_OUTSIDE = {"gateway.observability.metrics"}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _file_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module of ours that ``source`` imports (at run time or for type checking)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from a import b` may name the module a.b as well as a name defined in a.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            names = [names[0]] + [n for n in names[1:] if _file_of(n) is not None]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in OURS)
    return found


def _core_files() -> list[Path]:
    files: list[Path] = []
    for package in CORE:
        files += sorted(ROOT.joinpath(*package.split(".")).rglob("*.py"))
    return files


def _imports_of_file(path: Path) -> set[str]:
    return imports_of(
        path.read_text(encoding="utf-8"), _module_of(path), is_package=path.name == "__init__.py"
    )


def _direct_violations() -> dict[tuple[str, str], str]:
    """(importing module, imported module) -> the importing file."""
    found: dict[tuple[str, str], str] = {}
    for path in _core_files():
        module = _module_of(path)
        for imported in sorted(_imports_of_file(path)):
            inside = any(_within(imported, package) for package in CORE)
            if not inside and imported not in ALLOWED_OUTSIDE and imported != "gateway":
                found[(module, imported)] = str(path.relative_to(ROOT))
    return found


def _reachable(start: str) -> set[str]:
    """Our modules that importing ``start`` loads, parent packages included."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name in seen:
                continue
            path = _file_of(name)
            if path is None:
                continue
            seen.add(name)
            todo += _imports_of_file(path)
    return seen


def test_core_imports_only_the_core_and_the_metrics() -> None:
    unexpected = _direct_violations()
    assert not unexpected, "the core imports outside it: " + ", ".join(
        f"{path} -> {imported}" for (_, imported), path in sorted(unexpected.items())
    )


def test_core_reaches_no_adapter_even_indirectly() -> None:
    for path in _core_files():
        module = _module_of(path)
        reached = sorted(m for m in _reachable(module) if m.split(".")[0] in ADAPTERS)
        assert not reached, f"{module} loads {reached}"


@pytest.mark.parametrize(
    "line",
    [
        "from persistence.lifecycle import LifecycleRepository",
        "import providers.twilio",
        "from workers import sweeper",
        "from schema.types import Message",
        "from resolvers import mutations",
        "if TYPE_CHECKING:\n    from persistence.accept import AcceptRepository",
    ],
)
def test_an_adapter_import_is_caught(line: str) -> None:
    imported = imports_of(line, "gateway.services.example")
    assert any(m.split(".")[0] in ADAPTERS for m in imported)


def test_relative_imports_resolve_against_the_package() -> None:
    assert "gateway.domain.channels" in imports_of(
        "from .channels import Channel", "gateway.domain.records"
    )
    assert "gateway.observability.logging" in imports_of(
        "from ..observability import logging", "gateway.services.delivery"
    )


def test_the_core_is_where_the_test_looks() -> None:
    assert len(_core_files()) > 10
    assert all(_file_of(name) is not None for name in CORE)
