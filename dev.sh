#!/usr/bin/env bash
# soakwatch's developer entry point. On a fresh Debian/Ubuntu machine:
#   ./dev.sh demo    set up everything, then run the demo soak (verdicts and an HTML report)
#   ./dev.sh test    set up everything, then run the test suite against real servers
# Also: ./dev.sh setup | lint | bench
set -euo pipefail
cd "$(dirname "$0")"

# python3-venv: a fresh Debian image has neither Python's venv nor ensurepip.
APT_PACKAGES=(python3 python3-venv prometheus prometheus-alertmanager redis-server postgresql
              clickhouse-server victoria-metrics prometheus-process-exporter wrk chromium
              golang-go)
# Programs the tests need, as program:package; the package is installed only when no such
# program is on PATH (a machine may bring its own kubectl from another repository).
APT_PROGRAMS=(kubectl:kubernetes-client)
VENV=${SOAKWATCH_VENV:-.venv}

quiet() {  # run a command, show its output only when it fails
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

setup_apt() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    for entry in "${APT_PROGRAMS[@]}"; do
        command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    # Packages must not start their system services: the tests start their own servers.
    # Removed again right after the install (not by an EXIT trap: `test` ends in exec).
    local own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local status=0
    quiet "${sudo[@]}" apt-get update -qq || status=$?
    [ "$status" -ne 0 ] || quiet "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
    [ -z "$own_policy" ] || "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    return "$status"
}

setup_python() {
    if [ ! -x "$VENV/bin/python" ]; then
        quiet python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.soakwatch-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "installing soakwatch and its test dependencies into $VENV" >&2
        quiet "$VENV/bin/python" -m pip install -q --upgrade pip
        # A plain editable install: a .pth file puts the component folders on sys.path.
        quiet "$VENV/bin/python" -m pip install -q -e '.[test]'
        touch "$stamp"
    fi
}

setup() { setup_apt; setup_python; }

lint() {
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"  # the files and strictness are set in pyproject.toml
}

case "${1:-}" in
    setup) setup ;;
    lint) setup_python; lint ;;
    test) shift; setup; exec "$VENV/bin/python" -m pytest "$@" ;;
    demo) shift; setup; exec "$VENV/bin/soak" run --demo "$@" ;;
    bench) shift; setup
        # the benchmarks' peer (Locust), not needed by the tests: the bench extra, on first use
        "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(not importlib.util.find_spec("locust"))' \
            || quiet "$VENV/bin/python" -m pip install -q -e '.[test,bench]'
        exec "$VENV/bin/python" -m benchmarks "$@" ;;
    *) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
