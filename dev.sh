#!/usr/bin/env bash
# One entry point that sets everything up on a fresh machine, then runs the main job or the tests.
#   ./dev.sh drill   the drills in suites/ against the configured target (the embedded sandbox:
#                    brought up, drilled, taken down), reports in reports/<run-id>/
#   ./dev.sh test    lint, type check and the harness's own tests (tests/)
#   ./dev.sh test --fast   the same without the slow tests (pytest -m "not slow": no MariaDB,
#                    HAProxy, moto, sandbox, Chromium or allure render; tests/conftest.py says which)
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=.venv

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

now() { date +%s.%N; }
# took T0: "12.3 s" since T0 (a set-up step says what it does, then how long it took)
took() { awk -v t0="$1" -v t1="$(now)" 'BEGIN { printf "%.1f s", t1 - t0 }'; }

apt_install() {
  # Debian packages the tests and the sandbox run for real (never the system services: the
  # sandbox starts its own mariadbd and haproxy processes on loopback).
  local missing=()
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  command -v mariadb-install-db >/dev/null 2>&1 || [ -x /usr/bin/mariadb-install-db ] || missing+=(mariadb-server)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  if [ "${1:-}" = test ]; then
    # the HTML report is checked in a real headless browser
    command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    local t0; t0=$(now)
    echo "dev.sh: apt-get update" >&2
    need_root apt-get update -qq
    echo "dev.sh: apt-get update: $(took "$t0")" >&2
    t0=$(now)
    echo "dev.sh: installing ${missing[*]} with apt-get" >&2
    # keep the packages' own services from starting: we only want the binaries
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | need_root tee "$policy" >/dev/null
      need_root chmod +x "$policy"
      added=1
    fi
    DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$added" -eq 1 ]; then need_root rm -f "$policy"; fi
    echo "dev.sh: installed ${missing[*]}: $(took "$t0")" >&2
  fi
}

venv() {
  # $1: the extras to install (drill: what the drills need; test: everything)
  local extras=$1
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "dev.sh: python >= 3.11 needed ($PY is $("$PY" --version))" >&2; exit 2; }
  local t0; t0=$(now)
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    echo "dev.sh: created $VENV: $(took "$t0")" >&2
  fi
  local stamp="$VENV/.drdrill-installed" sha have
  sha=$(sha256sum pyproject.toml | cut -d' ' -f1)
  have=$(cat "$stamp" 2>/dev/null || true)
  # the test extras hold the drill's: a venv set up for the tests serves the drills as is
  if [ "$have" != "$sha $extras" ] && [ "$have" != "$sha test" ]; then
    t0=$(now)
    echo "dev.sh: installing drdrill[$extras] into $VENV with pip" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$VENV/bin/python" -c 'import drdrill.plugin' || { echo "dev.sh: install failed" >&2; exit 1; }
    echo "$sha $extras" > "$stamp"
    echo "dev.sh: installed drdrill[$extras]: $(took "$t0")" >&2
  else
    echo "dev.sh: $VENV is up to date (drdrill[${have#* }])" >&2
  fi
}

allure3() {
  # Allure 3 (npm, no Java) renders the allure results once in the tests, offline
  local prefix=.drdrill/allure3
  if command -v npm >/dev/null 2>&1; then
    if [ ! -x "$prefix/node_modules/.bin/allure" ]; then
      local t0; t0=$(now)
      echo "dev.sh: installing allure@3 with npm" >&2
      if npm install --silent --no-audit --no-fund --prefix "$prefix" allure@3.18.0 >/dev/null 2>&1; then
        echo "dev.sh: installed allure@3: $(took "$t0")" >&2
      else
        echo "dev.sh: could not install allure@3 with npm; its render test will skip" >&2
      fi
    fi
    [ -x "$prefix/node_modules/.bin/allure" ] && export DRDRILL_ALLURE_PREFIX="$PWD/$prefix"
  fi
  return 0
}

cmd=${1:-}
shift || true
case "$cmd" in
  drill)
    apt_install
    venv sandbox,testinfra
    exec "$VENV/bin/pytest" suites "$@"
    ;;
  test)
    fast=0 args=()
    for arg in "$@"; do
      if [ "$arg" = --fast ]; then fast=1; else args+=("$arg"); fi
    done
    if [ "$fast" -eq 1 ]; then
      # no Chromium nor allure: the tests that use them are slow ones
      apt_install
      venv test
    else
      apt_install test
      venv test
      allure3
    fi
    "$VENV/bin/ruff" check src tests benchmarks suites fixtures
    "$VENV/bin/mypy"
    if [ "$fast" -eq 1 ]; then
      exec "$VENV/bin/pytest" tests -m "not slow" "${args[@]}"
    fi
    exec "$VENV/bin/pytest" tests "${args[@]}"
    ;;
  *)
    echo "usage: ./dev.sh drill [pytest args] | ./dev.sh test [--fast] [pytest args]" >&2
    exit 2
    ;;
esac
