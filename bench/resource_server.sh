#!/usr/bin/env bash
# The resource-server layer under load (issue 4's benchmark): the example's
# protected route `/api/hello` against the same handler with no
# authentication (`/api/bare`), with EdDSA tokens from Sesame, plus
# revocation propagation from Sesame to the running resource server.
#
#   usage: bench/resource_server.sh            (RUNS=3 TOKENS=10000 DURATION=10 by default)
#
# Needs a release build:
#   cargo build --release -p sesame-server -p resource-server -p sesame-loadgen
# The resource server is pinned to cpu0; the load generator and Sesame (idle
# while the routes are measured) to cpu1. Everything listens on 127.0.0.1;
# every load run is bounded by --duration. Per run and route it prints the
# loadgen's JSON lines: the closed-loop maximum rate of each route, then
# open-loop runs of both routes at half the protected route's maximum
# (latency from each request's scheduled time), each with the resource
# server's CPU µs per request; then the layer's cache stats and the
# revocation-propagation percentiles over REVOCATIONS logouts.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
REL="$ROOT/target/release"
RUNS="${RUNS:-3}"
TOKENS="${TOKENS:-10000}"
DURATION="${DURATION:-10}"
REVOCATIONS="${REVOCATIONS:-100}"
SPORT="${SPORT:-8091}"
APORT="${APORT:-3091}"
for b in sesame resource-server sesame-loadgen; do
  [ -x "$REL/$b" ] || { echo "build first: cargo build --release -p sesame-server -p resource-server -p sesame-loadgen" >&2; exit 2; }
done

W="$(mktemp -d)"
SPID=""; APID=""
cleanup() {
  [ -n "$APID" ] && kill "$APID" 2>/dev/null
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

ADMIN=$("$REL/sesame" api-key new); ADMIN_KEY=$(echo "$ADMIN" | awk '/^key:/{print $2}'); ADMIN_HASH=$(echo "$ADMIN" | awk '/^hash:/{print $2}')
SVC=$("$REL/sesame" api-key new); SVC_KEY=$(echo "$SVC" | awk '/^key:/{print $2}'); SVC_HASH=$(echo "$SVC" | awk '/^hash:/{print $2}')

(cd "$W" && exec env SESAME_BIND="127.0.0.1:$SPORT" SESAME_METRICS_BIND=none SESAME_LOG_LEVEL=warn \
    SESAME_ADMIN_API_KEYS="$ADMIN_HASH" SESAME_SERVICE_API_KEYS="$SVC_HASH" SESAME_ACCESS_TTL=1h SESAME_RATE_LIMITS=false \
    taskset -c 1 "$REL/sesame" serve >"$W/sesame.log" 2>&1) &
SPID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$SPORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$SPORT/healthz" >/dev/null || { echo "sesame did not start" >&2; cat "$W/sesame.log" >&2; exit 1; }

(exec env SESAME_URL="http://127.0.0.1:$SPORT" SESAME_SERVICE_API_KEY="$SVC_KEY" BIND="127.0.0.1:$APORT" RUST_LOG=warn \
    taskset -c 0 "$REL/resource-server" >"$W/api.log" 2>&1) &
APID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null || { echo "resource-server did not start" >&2; cat "$W/api.log" >&2; exit 1; }

LG() { taskset -c 1 "$REL/sesame-loadgen" "$@"; }
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%FT%TZ)"
LG mint --sesame "http://127.0.0.1:$SPORT" --admin-key "$ADMIN_KEY" --count "$TOKENS" --out "$W/tokens" || exit 1

for run in $(seq 1 "$RUNS"); do
  # Maximum rate of each route, then both routes at the same offered rate
  # (half the protected route's maximum): CPU per request depends on load
  # (fewer wake-ups per request when busier), so the ratio is taken at
  # equal load.
  declare -A max
  for route in bare hello; do
    out=$(LG closed --url "http://127.0.0.1:$APORT/api/$route" --tokens "$W/tokens" --duration "$DURATION" --server-pid "$APID" --connections 64)
    echo "run=$run route=$route $out"
    max[$route]=$(echo "$out" | sed -E 's/.*"rps":([0-9.]+).*/\1/')
  done
  half=$(awk -v r="${max[hello]}" 'BEGIN{printf "%d", r/2}')
  for route in bare hello; do
    echo "run=$run route=$route $(LG open --url "http://127.0.0.1:$APORT/api/$route" --tokens "$W/tokens" --duration "$DURATION" --rate "$half" --server-pid "$APID" --connections 64)"
  done
done
echo "stats $(curl -s "http://127.0.0.1:$APORT/api/stats")"
echo "revocations $(LG revocations --sesame "http://127.0.0.1:$SPORT" --api "http://127.0.0.1:$APORT/api/hello" --tokens "$W/tokens" --count "$REVOCATIONS")"
