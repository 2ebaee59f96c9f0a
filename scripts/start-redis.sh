#!/usr/bin/env bash
# Start a throw-away Redis server on loopback for the rate-limit tests, and print its URL.
#
# Idempotent: installs Debian's redis-server when it is missing (root only) and starts
# it unless one already answers on the port. The last line on stdout is the URL:
#
#   export BITNET_TEST_REDIS_URL="$(bash scripts/start-redis.sh | tail -n1)"
#
# Settings (environment): BITNET_REDIS_DIR (working folder, default /tmp/bitnet-redis),
# BITNET_REDIS_PORT (default 63799). No password, no persistence: for tests only.
set -euo pipefail

DIR="${BITNET_REDIS_DIR:-/tmp/bitnet-redis}"
PORT="${BITNET_REDIS_PORT:-63799}"

log() { echo "start-redis: $*" >&2; }

if ! command -v redis-server >/dev/null 2>&1; then
  if [[ "$(id -u)" -ne 0 ]]; then
    log "redis-server not found and not root: install the 'redis-server' package"
    exit 1
  fi
  log "installing redis-server with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends redis-server >&2
fi

mkdir -p "$DIR"
if ! redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
  log "starting server on 127.0.0.1:$PORT"
  redis-server --bind 127.0.0.1 --port "$PORT" --dir "$DIR" --save "" --appendonly no \
    --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >&2
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null
fi

echo "redis://127.0.0.1:$PORT/0"
