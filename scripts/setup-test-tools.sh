#!/usr/bin/env bash
# System tools the integration tests need. Each step is skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== test tools"
