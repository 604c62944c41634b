#!/usr/bin/env bash
# Re-resolve requirements.lock from pyproject.toml's ranges (runtime and dev dependencies),
# with the hash of every file, in a throwaway virtualenv that holds pip-tools. Run it after
# changing a dependency in pyproject.toml; `make test` and `make run` then install exactly
# what it wrote. `scripts/lock.sh --upgrade` moves every pin to the newest version allowed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install --quiet --disable-pip-version-check 'pip-tools>=7.6,<8'
"$tools/bin/pip-compile" --quiet --extra dev --generate-hashes --strip-extras --allow-unsafe \
    --no-emit-index-url --no-emit-find-links --output-file requirements.lock "$@" pyproject.toml
