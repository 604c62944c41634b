#!/usr/bin/env bash
# The benchmark suite in one command (`make bench` calls this):
#   1. apt-install wrk, the PostgreSQL server and redis-server if missing,
#   2. create/refresh .venv (scripts/venv.sh),
#   3. run `python -m bench.suite "$@"`.
# Options (see `bash bench/run.sh --help`): --rounds N, --quick, --only NAME[,NAME],
# --json PATH. Everything it starts (PostgreSQL, Redis, sandbox, gateway processes) listens
# on 127.0.0.1 only and is stopped before it exits.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/venv.sh
source scripts/venv.sh

have_wrk() {
    command -v wrk >/dev/null 2>&1
}

packages=()
have_wrk || packages+=(wrk)
install_with_servers "${packages[@]}"
have_wrk || venv_die "wrk still missing"

ensure_venv

exec .venv/bin/python -m bench.suite "$@"
