"""gateway.fastpaths: one switch for every fast path, a version guard for each, and the ranges
it guards are the ones pyproject.toml pins (and the lock file's versions lie in them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import structlog
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from gateway import fastpaths
from gateway.fastpaths import PROVEN_ON, FastPaths, Proven

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REQUIREMENTS = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
LOCK = dict(
    re.findall(r"^([A-Za-z0-9_.\-]+)==([^ \\\n]+)", (ROOT / "requirements.lock").read_text(), re.M)
)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PINNED = {_normal(name): version for name, version in LOCK.items()}


def pretend_installed(
    monkeypatch: pytest.MonkeyPatch, distribution: str, version: str | None
) -> None:
    real = fastpaths.installed_version
    monkeypatch.setattr(
        fastpaths, "installed_version", lambda d: version if d == distribution else real(d)
    )


@pytest.fixture
def fresh_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which fast paths this process has already warned about."""
    monkeypatch.setattr(fastpaths, "_reported", set())


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    for requirement in REQUIREMENTS:
        pinned = PINNED.get(_normal(requirement.name))
        assert pinned is not None, f"{requirement.name} is not in requirements.lock"
        assert Version(pinned) in requirement.specifier, (requirement, pinned)


def test_the_guarded_ranges_are_the_ranges_pyproject_pins() -> None:
    guarded = {p for proven in PROVEN_ON.values() for p in proven}
    by_name = {_normal(r.name): r.specifier for r in REQUIREMENTS}
    for proven in guarded:
        specifier = by_name.get(_normal(proven.distribution))
        assert specifier is not None, f"{proven.distribution} is not a dependency"
        assert specifier == SpecifierSet(f">={proven.at_least},<{proven.below}"), proven
        assert any(s.operator == "<" for s in specifier), "an upper bound"


def test_the_pinned_versions_are_the_proven_ones_so_every_fast_path_is_on() -> None:
    paths = FastPaths()
    assert [p.name for p in paths.all()] == list(PROVEN_ON)
    assert paths.taken() == list(PROVEN_ON)


def test_the_setting_turns_every_fast_path_off_without_a_warning(fresh_reports: None) -> None:
    with structlog.testing.capture_logs() as logs:
        paths = FastPaths(enabled=False)
    assert paths.taken() == []
    assert logs == []


@pytest.mark.parametrize(
    ("version", "admitted"),
    [
        ("0.55.0", True),
        ("0.55.3", True),
        ("0.55", True),
        ("0.54.9", False),
        ("0.56.0", False),
        ("0.56.0rc1", False),
        ("1.0", False),
        (None, False),
        ("unknown", False),
    ],
)
def test_a_range_admits_its_own_versions_only(version: str | None, admitted: bool) -> None:
    assert Proven("uvicorn", "0.55", "0.56").admits(version) is admitted


def test_a_version_outside_the_proven_range_turns_its_fast_paths_off_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, fresh_reports: None
) -> None:
    pretend_installed(monkeypatch, "uvicorn", "0.99.0")
    with structlog.testing.capture_logs() as logs:
        first = FastPaths()
        second = FastPaths()
    for paths in (first, second):
        assert paths.taken() == ["shared_rendering", "coerced_sends", "acyclic_execution"]
    warnings = [e for e in logs if e["event"] == "fast_path_off"]
    assert sorted(w["path"] for w in warnings) == ["direct_frames", "one_write_responses"]
    assert {(w["distribution"], w["installed"], w["log_level"]) for w in warnings} == {
        ("uvicorn", "0.99.0", "warning")
    }


def test_a_missing_library_turns_its_fast_paths_off(
    monkeypatch: pytest.MonkeyPatch, fresh_reports: None
) -> None:
    pretend_installed(monkeypatch, "strawberry-graphql", None)
    assert FastPaths().taken() == ["one_write_responses", "direct_frames"]
