"""The README is a promise: every setting and command it names must exist, and vice versa."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.entry.cli import build_parser
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    assert fields - documented == set(), "settings missing from the README"
    assert documented - fields == set(), "README documents settings that do not exist"


def test_every_cli_command_is_documented() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    commands = set(subparsers.choices)  # type: ignore[arg-type]
    for command in commands:
        assert f"messaging-gateway {command}" in README, command


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    assert first_block is not None
    lines = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert lines[:2] == ["make run", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec make test$", ci, flags=re.MULTILINE)
