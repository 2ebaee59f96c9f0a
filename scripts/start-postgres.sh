#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the store tests, and print its URL.
#
# Idempotent: installs the server with apt when it is missing (root only), creates the
# cluster once, starts it if it is not running and creates the database if absent.
# The last line on stdout is the URL, so CI can do:
#
#   export BITNET_TEST_POSTGRES_URL="$(bash scripts/start-postgres.sh | tail -n1)"
#
# Settings (environment): BITNET_PG_DIR (cluster folder, default /tmp/bitnet-pg),
# BITNET_PG_PORT (default 54329), BITNET_PG_DB (default bitnet_test).
# Authentication is "trust" on 127.0.0.1 only: this cluster is for tests, never for data.
set -euo pipefail

PGDIR="${BITNET_PG_DIR:-/tmp/bitnet-pg}"
PORT="${BITNET_PG_PORT:-54329}"
DB="${BITNET_PG_DB:-bitnet_test}"

log() { echo "start-postgres: $*" >&2; }

find_bin() {
  # Prefer binaries on PATH, else the newest Debian/Ubuntu versioned folder.
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local candidate
  candidate="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  if [[ -n "$candidate" && -x "$candidate/$1" ]]; then echo "$candidate/$1"; fi
}

if [[ -z "$(find_bin initdb)" ]]; then
  if [[ "$(id -u)" -ne 0 ]]; then
    log "PostgreSQL server binaries not found and not root: install the 'postgresql' package"
    exit 1
  fi
  log "installing postgresql with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
INITDB="$(find_bin initdb)"
PG_CTL="$(find_bin pg_ctl)"
PG_ISREADY="$(find_bin pg_isready)"
PSQL="$(find_bin psql)"

# The server refuses to run as root: run it as the 'postgres' system user then.
if [[ "$(id -u)" -eq 0 ]]; then
  RUN_USER="postgres"
  id "$RUN_USER" >/dev/null 2>&1 || useradd --system --home-dir "$PGDIR" "$RUN_USER"
  as_owner() { runuser -u "$RUN_USER" -- "$@"; }
else
  RUN_USER="$(id -un)"
  as_owner() { "$@"; }
fi

mkdir -p "$PGDIR"
[[ "$(id -u)" -eq 0 ]] && chown "$RUN_USER" "$PGDIR"
chmod 700 "$PGDIR"

if [[ ! -f "$PGDIR/data/PG_VERSION" ]]; then
  log "creating cluster in $PGDIR/data"
  as_owner "$INITDB" -D "$PGDIR/data" -U postgres --auth=trust --encoding=UTF8 >&2
fi

if ! "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT"; then
  log "starting server on 127.0.0.1:$PORT"
  as_owner "$PG_CTL" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGDIR -c max_connections=200 -c fsync=off" \
    start >&2
fi

if ! "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  log "creating database $DB"
  "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE \"$DB\"" >&2
fi

echo "postgresql://postgres@127.0.0.1:$PORT/$DB"
