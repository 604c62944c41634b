#!/usr/bin/env python3
"""Refresh GraphiQL's browser assets in gateway/web/graphiql_assets/vendor/ from the npm registry.

The pinned packages, and which of their files are shipped, are listed in
gateway/web/graphiql_assets/manifest.json. This script fetches each package's tarball at the pinned
version with `npm pack` (npm checks the tarball against the registry's integrity), copies the
listed files, and writes their sizes and SHA-256 digests back into the manifest.

    python3 scripts/refresh-graphiql-assets.py                        # re-fetch the pinned versions
    python3 scripts/refresh-graphiql-assets.py --set graphiql=4.1.2   # pin another version, fetch
    python3 scripts/refresh-graphiql-assets.py --check                # compare, change nothing

`--check` exits 1 when a shipped file differs from the registry's. Needs node and npm; only the
standard library otherwise. After a version change, run the GraphiQL browser test
(tests/integration/test_graphiql_browser.py): another major version may need page changes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "gateway" / "web" / "graphiql_assets"
MANIFEST = ASSETS / "manifest.json"


def npm_pack(spec: str, into: Path) -> tuple[Path, str]:
    """Download `spec` into `into`; the tarball and the registry's integrity string."""
    out = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
        cwd=into,
    )
    (packed,) = json.loads(out.stdout)
    tarball = into / packed["filename"]
    integrity: str = packed["integrity"]
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise SystemExit(f"{spec}: tarball does not match the registry's integrity {integrity}")
    return tarball, integrity


def read_member(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.getmember(f"package/{name}")
    if not member.isfile():
        raise SystemExit(f"package/{name} is not a regular file")
    handle = archive.extractfile(member)
    assert handle is not None
    return handle.read()


def refresh(package: dict[str, Any], work: Path, check: bool) -> list[str]:
    """Fetch one package; write its files (or, with check, list the differences)."""
    spec = f"{package['name']}@{package['version']}"
    tarball, integrity = npm_pack(spec, work)
    problems: list[str] = []
    with tarfile.open(tarball, "r:gz") as archive:
        meta = json.loads(read_member(archive, "package.json"))
        if meta["version"] != package["version"]:
            raise SystemExit(f"{spec}: the registry answered version {meta['version']}")
        for entry in package["files"]:
            if not entry["path"].startswith("vendor/") or ".." in entry["path"].split("/"):
                raise SystemExit(f"{entry['path']}: vendored files live under vendor/")
            data = read_member(archive, entry["from"])
            target = ASSETS / entry["path"]
            if check:
                if not target.is_file() or target.read_bytes() != data:
                    problems.append(f"{entry['path']} differs from {spec} {entry['from']}")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entry["bytes"] = len(data)
    if check:
        if package.get("integrity") != integrity:
            problems.append(f"{spec}: manifest integrity differs from the registry's")
    else:
        package["integrity"] = integrity
        package["license"] = meta.get("license", "UNKNOWN")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VERSION",
        help="pin a listed package to another version before fetching",
    )
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = parser.parse_args()
    if shutil.which("npm") is None:
        raise SystemExit("npm is needed (Debian: apt-get install npm)")

    manifest = json.loads(MANIFEST.read_text())
    packages = {p["name"]: p for p in manifest["packages"]}
    for pin in args.set:
        name, _, version = pin.rpartition("=")
        if name not in packages or not version:
            raise SystemExit(
                f"--set {pin}: expected NAME=VERSION with NAME one of {list(packages)}"
            )
        if args.check:
            raise SystemExit("--set and --check do not go together")
        packages[name]["version"] = version

    shipped = {e["path"] for p in manifest["packages"] for e in p["files"]}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="graphiql-assets-") as tmp:
        for package in manifest["packages"]:
            print(f"{package['name']}@{package['version']}", file=sys.stderr)
            problems += refresh(package, Path(tmp), args.check)
    if args.check:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0

    # Files a previous manifest shipped and this one does not.
    vendored = ASSETS / "vendor"
    for path in sorted(vendored.rglob("*")):
        relative = path.relative_to(ASSETS).as_posix()
        if path.is_file() and relative not in shipped:
            print(f"removing {relative}", file=sys.stderr)
            path.unlink()
    for directory in sorted(vendored.rglob("*"), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(e["bytes"] for p in manifest["packages"] for e in p["files"])
    print(f"{len(shipped)} files, {total} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
