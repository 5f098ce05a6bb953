#!/usr/bin/env bash
# Starts a throw-away PostgreSQL cluster for the tests on a loopback port and prints its URL.
# Uses Debian's binaries; the cluster lives under $1 (default .pgtest) and is owned by the postgres user
# when run as root (the server refuses to run as root).
set -euo pipefail
dir=$(realpath -m "${1:-${TMPDIR:-/tmp}/dockyard-pgtest}")
port=${PGTEST_PORT:-55432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "PostgreSQL is not installed" >&2; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ ! -f "$dir/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
  as_pg "$bindir/initdb" -D "$dir" -U dockyard --auth=trust -E UTF8 >/dev/null
fi
if ! as_pg "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
fi
as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U dockyard -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='dockyard_test'" | grep -q 1 \
  || as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U dockyard -d postgres -qc "CREATE DATABASE dockyard_test" >/dev/null
echo "postgresql+psycopg://dockyard@127.0.0.1:$port/dockyard_test"
