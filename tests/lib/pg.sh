#!/usr/bin/env bash
# A private PostgreSQL server for tests: Debian's PostgreSQL 15 binaries,
# a data directory in DIR, a free port on 127.0.0.1, trust authentication,
# no system service. PostgreSQL refuses to run as root, so as root the
# server runs as the `postgres` user and DIR is handed to it.
#
#   pg.sh start DIR   initdb DIR (the first time) and start (unless running); prints the URL
#   pg.sh halt DIR    stop the server, keep DIR (start brings it back on the same port)
#   pg.sh stop DIR    stop the server and remove DIR (fine if it is not running)
#
# PG_BIN overrides /usr/lib/postgresql/15/bin.
set -euo pipefail

BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: pg.sh start|halt|stop DIR" >&2
  exit 2
fi

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# True when something on this machine already uses TCP port $1.
port_busy() {
  local hex
  hex=$(printf ':%04X' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v h="$hex" '$2 ~ h"$" { f = 1 } END { exit !f }'
}

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    port_busy "$p" || { echo "$p"; return 0; }
  done
  echo "pg.sh: no free port found" >&2
  return 1
}

# As root: the postgres user must be able to reach DIR, so directories above it that it
# cannot search (a 0700 temporary directory) get search permission for others (not listing).
grant_search() {
  [ "$(id -u)" -eq 0 ] || return 0
  local d
  d=$(dirname "$(realpath -m "$dir")")
  while [ "$d" != / ]; do
    runuser -u postgres -- test -x "$d" || chmod o+x "$d"
    d=$(dirname "$d")
  done
}

init_dir() {
  mkdir -p "$dir"
  grant_search
  chmod 700 "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  fi
}

# Starts on port $1: 0 when it runs.
start_on() {
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $1 -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=20" \
    start >/dev/null 2>&1
}

start() {
  init_dir
  local port
  if [ -f "$dir/port" ]; then
    port=$(cat "$dir/port")
    if ! as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      start_on "$port" || { tail -n 20 "$dir/server.log" >&2; return 1; }
    fi
  else
    for _ in 1 2 3 4 5; do
      port=$(free_port)
      if start_on "$port"; then
        echo "$port" >"$dir/port"
        break
      fi
      port=
    done
    [ -n "$port" ] || { tail -n 20 "$dir/server.log" >&2; return 1; }
  fi
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

halt() {
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

case "$cmd" in
  start) start ;;
  halt) halt ;;
  stop)
    [ -d "$dir" ] || exit 0
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "pg.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
