#!/usr/bin/env bash
# Create/refresh the project virtualenv (.venv) and provide small apt helpers.
#
#   bash scripts/venv.sh      -> make sure .venv exists and `pip install -e '.[dev]'` is current
#   source scripts/venv.sh    -> only define the helpers (used by scripts/test.sh and
#                                bench/run.sh)
#
# The editable install is redone only when pyproject.toml is newer than the stamp file
# inside .venv, so repeated runs are fast.
#
# Works as root or as a normal user with sudo (sudo is used only for apt-get, and only
# when not root).

VENV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="$VENV_ROOT/.venv"
VENV_STAMP="$VENV_DIR/.gateway-install-stamp"

venv_die() {
    echo "error: $*" >&2
    exit 1
}

# Run a command as root: directly when root, through sudo otherwise.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        venv_die "need root or sudo to run: $*"
    fi
}

# Is the (system) service $1 running? Only used around apt installs.
service_active() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl is-active --quiet "$1" 2>/dev/null
    elif [[ -x /etc/init.d/$1 ]]; then
        as_root /etc/init.d/"$1" status >/dev/null 2>&1
    else
        return 1
    fi
}

service_stop() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl stop "$1"
    else
        as_root /etc/init.d/"$1" stop
    fi
}

# apt_install PKG... : apt-get update (once per process tree) + install, without leaving
# system-wide postgresql/redis services running that this install started. The test suite
# never uses the default ports, but a stray service would still waste memory/CPU on CI.
apt_install() {
    (($# > 0)) || return 0
    command -v apt-get >/dev/null 2>&1 || venv_die "apt-get not found; install manually: $*"
    if [[ $EUID -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        venv_die "not root and no sudo; install manually: $*"
    fi

    local -a services=(postgresql redis-server)
    local -a was_active=()
    local svc
    for svc in "${services[@]}"; do
        if service_active "$svc"; then was_active+=("$svc"); fi
    done

    # Debian's postinst scripts start services through invoke-rc.d / deb-systemd-invoke,
    # both of which honour /usr/sbin/policy-rc.d; exit 101 = "action forbidden". Only add
    # one if the machine has none (Docker images usually already ship this exact file).
    local policy=/usr/sbin/policy-rc.d
    local policy_added=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, added by scripts/venv.sh apt_install\nexit 101\n' |
            as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        policy_added=1
        trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
    fi

    local rc=0
    if [[ -z ${GATEWAY_APT_UPDATED:-} ]]; then
        as_root apt-get update || rc=$?
        export GATEWAY_APT_UPDATED=1
    fi
    if [[ $rc -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "$@" || rc=$?
    fi

    if [[ $policy_added -eq 1 ]]; then
        as_root rm -f "$policy"
        trap - EXIT
    fi
    [[ $rc -eq 0 ]] || venv_die "apt-get failed (exit $rc) installing: $*"

    # Belt and braces: stop services that this install brought up (never ones that were
    # already running before).
    for svc in "${services[@]}"; do
        if [[ " ${was_active[*]} " == *" $svc "* ]]; then continue; fi
        if service_active "$svc"; then
            echo "stopping system service '$svc' started by the package install" >&2
            service_stop "$svc" || true
        fi
    done
}

# The PostgreSQL and Redis server binaries the tests and the benchmarks start throwaway
# servers from.
have_postgres() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

have_redis() {
    command -v redis-server >/dev/null 2>&1 || [[ -x /usr/bin/redis-server ]]
}

# install_with_servers PKG... : apt-install PKG..., the PostgreSQL and Redis servers if
# either is missing, and what ensure_venv needs; then make sure both servers are there.
install_with_servers() {
    local -a packages=("$@")
    if ! have_postgres || ! have_redis; then
        packages+=(postgresql redis-server)
    fi
    # shellcheck disable=SC2207
    packages+=($(venv_apt_packages))
    if ((${#packages[@]} > 0)); then
        echo "installing system packages: ${packages[*]}" >&2
        apt_install "${packages[@]}"
    fi
    have_postgres || venv_die "PostgreSQL server binaries still missing (/usr/lib/postgresql/*/bin)"
    have_redis || venv_die "redis-server still missing"
}

# Print a python (>= 3.11, with a working venv/ensurepip) to build .venv with, or nothing.
find_python() {
    local cand
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
                >/dev/null 2>&1; then
            command -v "$cand"
            return 0
        fi
    done
    return 0
}

venv_ok() {
    [[ -x $VENV_DIR/bin/python ]] &&
        "$VENV_DIR/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            >/dev/null 2>&1
}

# Apt packages needed before ensure_venv can work (printed space separated, maybe empty).
venv_apt_packages() {
    if ! venv_ok && [[ -z $(find_python) ]]; then
        echo "python3 python3-venv"
    fi
}

ensure_venv() {
    local py
    if ! venv_ok; then
        py="$(find_python)"
        if [[ -z $py ]]; then
            # shellcheck disable=SC2046
            apt_install $(venv_apt_packages)
            py="$(find_python)"
            [[ -n $py ]] || venv_die "no python >= 3.11 with venv support found"
        fi
        if [[ -e $VENV_DIR ]]; then
            echo "recreating broken $VENV_DIR" >&2
            rm -rf "$VENV_DIR"
        fi
        echo "creating $VENV_DIR with $py" >&2
        "$py" -m venv "$VENV_DIR"
    fi
    if venv_stale; then
        (
            cd "$VENV_ROOT"
            # Serialise concurrent installs into the shared .venv (advisory lock).
            if command -v flock >/dev/null 2>&1; then flock 9; fi
            if venv_stale; then
                # Exactly the locked versions, each checked against its hash; then the
                # project itself, whose dependencies the lock has already brought.
                PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV_DIR/bin/python" -m pip install \
                    --quiet --require-hashes -r requirements.lock
                PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV_DIR/bin/python" -m pip install \
                    --quiet --no-deps -e .
                touch "$VENV_STAMP"
            fi
        ) 9<"$VENV_ROOT/pyproject.toml"
    fi
}

# The installed packages are older than the lock or the project's metadata.
venv_stale() {
    [[ ! -e $VENV_STAMP || $VENV_ROOT/pyproject.toml -nt $VENV_STAMP ||
        $VENV_ROOT/requirements.lock -nt $VENV_STAMP ]]
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    ensure_venv
fi
