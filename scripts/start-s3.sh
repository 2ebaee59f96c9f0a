#!/usr/bin/env bash
# Start a throw-away S3-compatible server (s3proxy on its file-system back end) on
# loopback for the object-storage tests, and print its URL.
#
# s3proxy (Apache-2.0) is a real S3 server: signatures, multipart uploads, ranged
# GETs. Idempotent: installs a JRE and Maven with apt-get when missing (root only),
# fetches the jar from Maven Central with Maven when it is not in ~/.m2, and starts
# the server unless one already answers on the port. The last line on stdout is the
# URL, with the test credentials in it:
#
#   export BITNET_TEST_S3_URL="$(bash scripts/start-s3.sh | tail -n1)"
#
# That URL is http://IDENTITY:CREDENTIAL@127.0.0.1:PORT. Settings (environment):
# BITNET_S3_DIR (working folder, default /tmp/bitnet-s3), BITNET_S3_PORT (default
# 63900). For tests only: fixed credentials, loopback, no TLS.
set -euo pipefail

DIR="${BITNET_S3_DIR:-/tmp/bitnet-s3}"
PORT="${BITNET_S3_PORT:-63900}"
VERSION=2.6.0
IDENTITY=bitnet-test
CREDENTIAL=bitnet-test-secret
JAR="$HOME/.m2/repository/org/gaul/s3proxy/$VERSION/s3proxy-$VERSION-jar-with-dependencies.jar"

log() { echo "start-s3: $*" >&2; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }  # no curl needed

need=()
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
if [[ ! -f "$JAR" ]] && ! command -v mvn >/dev/null 2>&1; then need+=(maven); fi
if [[ "${#need[@]}" -gt 0 ]]; then
  if [[ "$(id -u)" -ne 0 ]]; then
    log "missing ${need[*]} and not root: install them with apt-get"
    exit 1
  fi
  log "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if [[ ! -f "$JAR" ]]; then
  log "fetching s3proxy $VERSION from Maven Central"
  mvn -q dependency:get -Dartifact="org.gaul:s3proxy:$VERSION:jar:jar-with-dependencies" \
    -Dtransitive=false >&2
fi

mkdir -p "$DIR/data"
if ! answers; then
  cat >"$DIR/s3proxy.properties" <<PROPS
s3proxy.endpoint=http://127.0.0.1:$PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$IDENTITY
s3proxy.credential=$CREDENTIAL
jclouds.provider=filesystem
jclouds.filesystem.basedir=$DIR/data
PROPS
  log "starting s3proxy on 127.0.0.1:$PORT"
  nohup java -Xmx256m -jar "$JAR" --properties "$DIR/s3proxy.properties" \
    >"$DIR/s3proxy.log" 2>&1 &
  echo $! >"$DIR/s3proxy.pid"
  for _ in $(seq 150); do
    answers && break
    sleep 0.2
  done
  answers || { log "s3proxy did not answer; see $DIR/s3proxy.log"; exit 1; }
fi

echo "http://$IDENTITY:$CREDENTIAL@127.0.0.1:$PORT"
