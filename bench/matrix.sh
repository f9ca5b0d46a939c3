#!/usr/bin/env bash
# The benchmark issue's matrix with `sesame-loadgen`, one backend after the
# other, in one go: W1 `GET /auth/me` (closed loop), W2 refresh (closed loop,
# each connection on its own rotation chain; then open loop at half that
# maximum for p99), W3 login (closed loop, 8 connections) and W1 at
# 1 000 req/s during a login flood (64 connections retrying at once).
#
#   usage: RUNS=3 DURATION=8 bench/matrix.sh [sqlite] [postgres] [mariadb] [redis]
#
# Needs a release build (`cargo build --release -p sesame-server -p
# sesame-loadgen`) and, for postgres/mariadb/redis, the local servers
# (127.0.0.1:5432 user postgres, 127.0.0.1:3306 root, 127.0.0.1:6379); it
# creates and drops the database `sesame_bench` and uses the Redis key prefix
# `sesame_bench:`. Sesame runs pinned to cpu0, the load to cpu1; everything on
# 127.0.0.1, every loop bounded by --duration. Output: one line per
# measurement, `backend workload run` + the generator's JSON, then medians.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/sesame}"
LG="${LG:-$ROOT/target/release/sesame-loadgen}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-8}"
OUT="${OUT:-$(mktemp)}"
[ -x "$BIN" ] && [ -x "$LG" ] || { echo "build first: cargo build --release -p sesame-server -p sesame-loadgen" >&2; exit 2; }
PASSWORD="correct horse battery staple"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

backend_env() {
  case $1 in
    sqlite) echo "" ;;
    postgres) echo "SESAME_DATABASE_URL=postgres://postgres@127.0.0.1:5432/sesame_bench" ;;
    mariadb) echo "SESAME_DATABASE_URL=mysql://root@127.0.0.1:3306/sesame_bench" ;;
    redis) echo "SESAME_SESSION_STORE_URL=redis://127.0.0.1:6379 SESAME_SESSION_STORE_PREFIX=sesame_bench:" ;;
  esac
}

reset_backend() {
  case $1 in
    postgres) psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS sesame_bench" -c "CREATE DATABASE sesame_bench" ;;
    mariadb) mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS sesame_bench; CREATE DATABASE sesame_bench" ;;
    redis) redis-cli -h 127.0.0.1 --scan --pattern 'sesame_bench:*' | xargs -r -n 500 redis-cli -h 127.0.0.1 DEL >/dev/null ;;
  esac
}

emit() { # backend workload run json
  local line; line=$(tail -1)
  case $line in
    "{"*) echo "$1 $2 $3 $line" | tee -a "$OUT" ;;
    *) echo "$1 $2 $3 FAILED $line" | tee -a "$OUT" ;;
  esac
}

run_backend() {
  local b=$1 dir port keys key hash pid url
  dir=$(mktemp -d); port=$(free_port); url="http://127.0.0.1:$port"
  reset_backend "$b"
  keys=$("$BIN" api-key new); key=$(echo "$keys" | awk '/^key:/{print $2}'); hash=$(echo "$keys" | awk '/^hash:/{print $2}')
  # shellcheck disable=SC2046
  (cd "$dir" && exec env $(backend_env "$b") SESAME_BIND="127.0.0.1:$port" SESAME_PUBLIC_URL="$url" \
      SESAME_METRICS_BIND=none SESAME_LOG_LEVEL=warn SESAME_RATE_LIMITS=false SESAME_ADMIN_API_KEYS="$hash" \
      taskset -c 0 "$BIN" serve >"$dir/serve.log" 2>&1) &
  pid=$!
  for _ in $(seq 1 50); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.2; done
  if ! kill -0 "$pid" 2>/dev/null; then echo "sesame-$b did not start:" >&2; cat "$dir/serve.log" >&2; rm -rf "$dir"; return; fi
  curl -s -o /dev/null -H "Origin: $url" -H 'Content-Type: application/json' \
    -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" "$url/auth/register"
  local g=(taskset -c 1 "$LG")
  for run in $(seq 1 "$RUNS"); do
    "${g[@]}" mint --sesame "$url" --admin-key "$key" --count 64 --out "$dir/at" --refresh-out "$dir/rt" >/dev/null
    "${g[@]}" closed --url "$url/auth/me" --tokens "$dir/at" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$b" w1_me "$run"
    "${g[@]}" closed --url "$url/auth/refresh" --mode refresh --tokens "$dir/rt" --origin "$url" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$b" w2_refresh "$run"
    local max half
    max=$(tail -1 "$OUT" | sed 's/^[^{]*//' | python3 -c 'import json, sys; print(int(json.load(sys.stdin)["rps"]))' 2>/dev/null || echo 1000)
    half=$((max / 2)); [ "$half" -ge 1 ] || half=1
    "${g[@]}" mint --sesame "$url" --admin-key "$key" --count 64 --out "$dir/at2" --refresh-out "$dir/rt" >/dev/null
    "${g[@]}" open --url "$url/auth/refresh" --mode refresh --tokens "$dir/rt" --origin "$url" --rate "$half" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$b" w2_refresh_half "$run"
    "${g[@]}" closed --url "$url/auth/login" --mode login --email bench@example.com --password "$PASSWORD" --origin "$url" --connections 8 --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$b" w3_login "$run"
    "${g[@]}" closed --url "$url/auth/login" --mode login --email bench@example.com --password "$PASSWORD" --origin "$url" --connections 64 --duration $((DURATION + 4)) --warmup 0 >/dev/null 2>&1 &
    local flood=$!
    sleep 2
    "${g[@]}" open --url "$url/auth/me" --tokens "$dir/at" --rate 1000 --duration "$DURATION" 2>&1 | emit "$b" w1_me_during_login_flood "$run"
    wait "$flood"
  done
  echo "$b RSS_after_runs $(grep VmRSS "/proc/$pid/status" | awk '{print $2" kB"}')" | tee -a "$OUT"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
  reset_backend "$b"
  rm -rf "$dir"
}

backends=("$@"); [ ${#backends[@]} -eq 0 ] && backends=(sqlite postgres mariadb redis)
echo "# matrix $(date -u +%FT%TZ) $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); runs=$RUNS duration=${DURATION}s" | tee -a "$OUT"
for b in "${backends[@]}"; do run_backend "$b"; done

# Medians per backend and workload.
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    parts = line.split(" ", 3)
    if len(parts) < 4 or not parts[3].startswith("{"):
        continue
    d = json.loads(parts[3])
    rows.setdefault((parts[0], parts[1]), []).append(d)
print("\nbackend workload: median req/s | median p50 / p99 ms | median server CPU µs/req | errors (sum)")
for (b, w), ds in rows.items():
    med = lambda k: statistics.median([d[k] for d in ds if d.get(k) is not None] or [float("nan")])
    print(f"{b} {w}: {med('rps'):.0f} | {med('p50_ms'):.2f} / {med('p99_ms'):.2f} | "
          f"{med('server_cpu_us_per_req'):.0f} | {sum(d['errors'] for d in ds)}")
PY
echo "raw lines: $OUT"
