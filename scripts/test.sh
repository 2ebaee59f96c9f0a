#!/usr/bin/env bash
# Run the whole suite: install the system tools the integration tests use
# (idempotent, quick when present), then ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BITNET_VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH"

bash scripts/setup-test-tools.sh

echo "== ruff"
ruff check .
echo "== pytest"
exec python -m pytest "$@"
