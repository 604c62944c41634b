import ast
import sys
from pathlib import Path

import gateway.domain

DOMAIN = Path(gateway.domain.__file__).parent
THIRD_PARTY = {"phonenumbers", "email_validator", "gsm0338"}


def _absolute_imports(source: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def _allowed(module: str) -> bool:
    root = module.split(".")[0]
    if root in sys.stdlib_module_names or root in THIRD_PARTY or root == "__future__":
        return True
    return module == "gateway.domain" or module.startswith("gateway.domain.")


def test_domain_depends_only_on_stdlib_and_its_three_libraries() -> None:
    # Anything else (framework, database, other project packages) would leak I/O into the rules.
    for source in sorted(DOMAIN.glob("*.py")):
        foreign = sorted(m for m in _absolute_imports(source) if not _allowed(m))
        assert not foreign, f"{source.name} imports {foreign}"


def test_relative_imports_stay_inside_the_package() -> None:
    for source in sorted(DOMAIN.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{source.name} reaches outside gateway.domain"


def test_public_names_are_exported() -> None:
    expected = {
        "Channel", "Direction", "MessageStatus", "TERMINAL", "rank", "can_advance",
        "can_requeue", "can_retry", "can_cancel", "AddressError", "normalize_phone",
        "normalize_email", "is_http_url", "conversation_key", "SegmentInfo", "count_segments",
        "split_segments", "FieldProblem", "SendRequest", "NormalizedMessage", "Limits",
        "validate_send", "new_id",
    }  # fmt: skip
    assert expected <= set(gateway.domain.__all__)
    assert all(hasattr(gateway.domain, name) for name in gateway.domain.__all__)
