# shellcheck shell=bash
# What prod-smoke and swarm-smoke share (sourced): a check's line, and a bounded wait. checks.py is its twin
# for the Python clients.

pass() { echo "ok   $*"; }
fail() {
  echo "FAIL $*" >&2
  exit 1
}
# Polls "$@" until it succeeds, for at most $1 seconds.
within() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}
