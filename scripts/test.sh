#!/usr/bin/env bash
# The whole test command, from a fresh Debian machine (as root, or a user with sudo):
#   1. apt-install PostgreSQL server + redis-server, Chromium, node + npm (+ python3-venv) if
#      missing,
#   2. create/refresh .venv, and `npm ci` the GraphQL over HTTP audit (tests/http_audit),
#   3. ruff check, ruff format --check, mypy, then pytest "$@".
# Stops at the first failure; exits with pytest's status and pytest's summary line is the
# last thing printed (pytest is exec'd last). The tests start their own throwaway servers on
# free random ports (harness/servers.py), so no system service or default port is used.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/venv.sh
source scripts/venv.sh

# Debian's Chromium, for the GraphiQL browser test (driven by Playwright, which is told to use
# this binary and never downloads a browser of its own).
have_chromium() {
    [[ -x /usr/bin/chromium ]]
}

# node and npm, for graphql-http's GraphQL over HTTP audit (tests/http_audit).
have_node() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1
}

packages=()
have_chromium || packages+=(chromium)
have_node || packages+=(nodejs npm)
install_with_servers "${packages[@]}"
have_chromium || venv_die "Chromium still missing (/usr/bin/chromium)"
have_node || venv_die "node and npm still missing"

ensure_venv

# The graphql-http audit's packages, exactly as locked; again whenever the lock changes.
audit=tests/http_audit
if [[ ! -e $audit/node_modules/.package-lock.json ||
    $audit/package-lock.json -nt $audit/node_modules/.package-lock.json ]]; then
    echo "installing the GraphQL over HTTP audit (npm ci in $audit)" >&2
    (cd "$audit" && npm ci --no-audit --no-fund --loglevel=error)
fi

bin=.venv/bin
"$bin/ruff" check .
"$bin/ruff" format --check .
"$bin/mypy"
exec "$bin/pytest" "$@"
