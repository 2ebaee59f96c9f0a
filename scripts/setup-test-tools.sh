#!/usr/bin/env bash
# System tools the integration tests need, from Debian's packages. Each is
# installed only when missing (so a prepared machine does nothing here):
#   aarch64 cross gcc + qemu-user  NEON/old-x86 kernel proofs under emulation (tests/kernels)
#   postgresql                     the store/rate-limit/jobs tests on a real PostgreSQL
#   chromium + chromium-driver     the developer portal's browser tests (tests/portal)
#   redis-server                   the shared rate-limit tests on a real Redis
#   default-jre-headless + maven   s3proxy, the S3-compatible server of the object-storage
#                                  tests (scripts/start-s3.sh fetches its jar with Maven)
# Node.js/npm and Go come with the machine; TypeScript is installed by the SDK
# tests themselves from generators/toolchain/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== test tools"

need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)

if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]} and cannot apt-get install (not root); tests needing them skip with a reason" >&2
  fi
fi
