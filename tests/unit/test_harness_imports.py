"""Who may import the process harness: the tests and the bench use it; the bench never
reaches into the tests, and the shipped packages (the wheel holds only them) import neither
the harness, the bench nor the tests."""

import ast
from pathlib import Path

import pytest

import gateway

ROOT = Path(gateway.__file__).parent.parent
SHIPPED = ("gateway", "schema", "resolvers", "persistence", "providers", "workers")


def top_level_imports(source: str) -> set[str]:
    """The first dotted part of every absolute import in ``source``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def offenders(folders: tuple[str, ...], forbidden: set[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            bad = top_level_imports(path.read_text(encoding="utf-8")) & forbidden
            if bad:
                found[str(path.relative_to(ROOT))] = bad
    return found


def test_the_bench_and_the_harness_import_nothing_from_the_tests() -> None:
    assert offenders(("bench", "harness"), {"tests"}) == {}


def test_the_shipped_packages_import_no_harness_bench_or_tests() -> None:
    assert offenders(SHIPPED, {"harness", "bench", "tests"}) == {}


@pytest.mark.parametrize(
    "line",
    [
        "from tests.conftest import run_uvicorn",
        "import tests.integration.traffic",
        "if TYPE_CHECKING:\n    from tests.faults.scenario import FaultStack",
    ],
)
def test_an_import_of_the_tests_is_caught(line: str) -> None:
    assert "tests" in top_level_imports(line)
