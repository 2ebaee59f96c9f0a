#!/usr/bin/env bash
# Run the whole suite: install and start the system tools the integration tests
# use (idempotent, quick when present), then ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BITNET_VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH"

bash scripts/setup-test-tools.sh

# A real PostgreSQL on loopback for the store, rate-limit and multi-process tests.
if [ -z "${BITNET_TEST_POSTGRES_URL:-}" ]; then
  if url="$(bash scripts/start-postgres.sh | tail -n1)"; then
    export BITNET_TEST_POSTGRES_URL="$url"
  else
    echo "warning: PostgreSQL could not be started; its test variants will be skipped" >&2
  fi
fi

# A real Redis on loopback for the shared rate-limit tests (--redis).
if [ -z "${BITNET_TEST_REDIS_URL:-}" ]; then
  if url="$(bash scripts/start-redis.sh | tail -n1)"; then
    export BITNET_TEST_REDIS_URL="$url"
  else
    echo "warning: Redis could not be started; its test variants will be skipped" >&2
  fi
fi

# A real S3-compatible server (s3proxy) on loopback for the object-storage tests (--storage s3://).
if [ -z "${BITNET_TEST_S3_URL:-}" ]; then
  if url="$(bash scripts/start-s3.sh | tail -n1)"; then
    export BITNET_TEST_S3_URL="$url"
  else
    echo "warning: the S3 server could not be started; its tests will be skipped" >&2
  fi
fi

echo "== ruff"
ruff check .
echo "== mypy"
mypy  # files and settings: [tool.mypy] in pyproject.toml; incremental cache in .mypy_cache
echo "== pytest"
exec python -m pytest "$@"
