#!/usr/bin/env bash
# The benchmark issue's whole matrix in one go, with `sesame-loadgen`:
# every server pinned to cpu0, the load generator to cpu1, everything on
# 127.0.0.1, every loop bounded by --duration.
#
#   usage: RUNS=3 DURATION=6 bench/matrix.sh [target …]
#   targets (default: all, in this order):
#     raw              each backend's own PK read and single-row update rate
#                      (through sqlx / redis-rs, Sesame's pool shape) and one
#                      core's Argon2id rate: the ceilings the goals are ratios of
#     sqlite postgres mariadb redis
#                      Sesame on that backend: W1 GET /auth/me (10 000 tokens;
#                      max, then half of it for p50/p99), W2 refresh (each
#                      connection its own chain; max, half), W3 login (round-
#                      robin over 64 accounts), W1 at
#                      1 000 req/s during a 64-connection login flood, W4 mixed
#                      (90 % /auth/me, 9 % refresh, 1 % login; max with 32
#                      connections — no more logins in flight than Sesame's
#                      hashing queue admits, so errors are real failures —
#                      then half of it)
#     resource-server  the sesame-axum example: bare route vs protected route
#                      (10 000 tokens), max and at the same half load
#     express express-keyobj session-jwt
#                      the peers in ../shared/peers (PEERS=…): W1 /me, W2, W3,
#                      W4 as above (session-jwt does not rotate: its "refresh"
#                      is a verify and a sign)
#
# Needs a release build (`cargo build --release -p sesame-server
# -p sesame-loadgen -p resource-server`), the peers' `npm ci`, and for
# postgres/mariadb the local servers (127.0.0.1:5432 user postgres,
# 127.0.0.1:3306 root): it creates and drops the database `sesame_bench`.
# Redis-backed targets (Sesame's Redis store, express, raw redis) share one
# private redis-server started here on a free port with AOF `everysec` (as
# the peers' own harness runs it). PostgreSQL, MariaDB and that Redis are not
# pinned: they run where the kernel puts them, for Sesame and the peers alike.
#
# Output: one line per measurement (`target workload run` + the generator's
# JSON), then medians, the ratios the goals name, and RSS.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
REL="$ROOT/target/release"
BIN="${BIN:-$REL/sesame}"
LG="${LG:-$REL/sesame-loadgen}"
RS="${RS:-$REL/resource-server}"
PEERS="${PEERS:-$ROOT/../shared/peers}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-6}"
TOKENS="${TOKENS:-10000}"
OUT="${OUT:-$(mktemp)}"
PASSWORD="correct horse battery staple"
for b in "$BIN" "$LG" "$RS"; do
  [ -x "$b" ] || { echo "build first: cargo build --release -p sesame-server -p sesame-loadgen -p resource-server" >&2; exit 2; }
done

W="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
g() { taskset -c 1 "$LG" "$@"; }
wait_http() { for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null; }

emit() { # target workload run  (reads the generator's output on stdin)
  local line; line=$(tail -1)
  case $line in
    "{"*) echo "$1 $2 $3 $line" | tee -a "$OUT" ;;
    *) echo "$1 $2 $3 FAILED $line" | tee -a "$OUT" ;;
  esac
}
note() { echo "$*" | tee -a "$OUT"; }
# The "rps" of the last emitted line, halved (the half-load rate).
half_of_last() { tail -1 "$OUT" | sed 's/^[^{]*//' | python3 -c 'import json, sys; print(max(1, int(json.load(sys.stdin)["rps"]) // 2))' 2>/dev/null || echo 100; }

# --- the private Redis -------------------------------------------------------
RPORT=""
redis_up() {
  [ -n "$RPORT" ] && return 0
  RPORT=$(free_port); mkdir -p "$W/redis"
  redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$W/redis" --save "" --appendonly yes \
    --appendfsync everysec --daemonize no --protected-mode yes >"$W/redis.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis-server did not start" >&2; cat "$W/redis.log" >&2; exit 1
}

db_reset() {
  case $1 in
    postgres) psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS sesame_bench" -c "CREATE DATABASE sesame_bench" ;;
    mariadb) mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS sesame_bench; CREATE DATABASE sesame_bench" ;;
    redis) redis-cli -p "$RPORT" FLUSHALL >/dev/null ;;
  esac
}
db_url() {
  case $1 in
    postgres) echo "postgres://postgres@127.0.0.1:5432/sesame_bench" ;;
    mariadb) echo "mysql://root@127.0.0.1:3306/sesame_bench" ;;
    redis) echo "redis://127.0.0.1:$RPORT" ;;
    sqlite) echo "sqlite:$W/raw-sqlite" ;;
  esac
}

# --- raw ceilings ------------------------------------------------------------
run_raw() {
  redis_up
  for run in $(seq 1 "$RUNS"); do
    taskset -c 0 "$LG" argon2 --seconds "$DURATION" 2>&1 | emit machine argon2id "$run"
  done
  for b in sqlite postgres mariadb redis; do
    db_reset "$b"; mkdir -p "$W/raw-sqlite"
    for op in read update; do
      for run in $(seq 1 "$RUNS"); do
        taskset -c 0 "$LG" raw --backend "$(db_url "$b")" --op "$op" --duration "$DURATION" 2>&1 | emit "raw-$b" "$op" "$run"
      done
    done
    db_reset "$b"; rm -rf "$W/raw-sqlite"
  done
}

# --- Sesame --------------------------------------------------------------------
sesame_env() {
  case $1 in
    sqlite) echo "" ;;
    postgres|mariadb) echo "SESAME_DATABASE_URL=$(db_url "$1")" ;;
    redis) echo "SESAME_SESSION_STORE_URL=$(db_url redis) SESAME_SESSION_STORE_PREFIX=sesame_bench:" ;;
  esac
}

run_sesame() {
  local b=$1 dir port url keys key hash pid
  [ "$b" = redis ] && redis_up
  dir="$W/sesame-$b"; mkdir -p "$dir"; port=$(free_port); url="http://127.0.0.1:$port"
  db_reset "$b"
  keys=$("$BIN" api-key new); key=$(echo "$keys" | awk '/^key:/{print $2}'); hash=$(echo "$keys" | awk '/^hash:/{print $2}')
  # shellcheck disable=SC2046
  (cd "$dir" && exec env $(sesame_env "$b") SESAME_BIND="127.0.0.1:$port" SESAME_PUBLIC_URL="$url" \
      SESAME_METRICS_BIND=none SESAME_LOG_LEVEL=warn SESAME_RATE_LIMITS=false SESAME_ADMIN_API_KEYS="$hash" \
      SESAME_ACCESS_TTL=1h taskset -c 0 "$BIN" serve >"$dir/serve.log" 2>&1) &
  pid=$!; PIDS+=("$pid")
  if ! wait_http "$url/healthz"; then echo "sesame-$b did not start:" >&2; cat "$dir/serve.log" >&2; return; fi
  sleep 1  # start-up (migrations, key loading) frees what it used
  note "sesame-$b rss_idle_kib $(rss_kib "$pid")"
  # 64 accounts for the logins: one account logged into thousands of times
  # measures how a login scales with that account's session count instead.
  g users --base "$url" --count 64 --out "$dir/u_at" --refresh-out "$dir/u_rt" --prefix bench- >/dev/null || { echo "users failed" >&2; return; }
  g mint --sesame "$url" --admin-key "$key" --count "$TOKENS" --out "$dir/at" >/dev/null || { echo "mint failed" >&2; return; }
  note "sesame-$b rss_after_${TOKENS}_sessions_kib $(rss_kib "$pid")"
  local t="sesame-$b" login=(--email "bench-{i}@example.com" --users 64 --password "$PASSWORD" --origin "$url")
  chains() { g mint --sesame "$url" --admin-key "$key" --count 64 --out "$dir/at64" --refresh-out "$dir/rt" >/dev/null; }
  for run in $(seq 1 "$RUNS"); do
    g closed --url "$url/auth/me" --tokens "$dir/at" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$t" w1 "$run"
    g open --url "$url/auth/me" --tokens "$dir/at" --rate "$(half_of_last)" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$t" w1_half "$run"
    chains
    g closed --url "$url/auth/refresh" --mode refresh --tokens "$dir/rt" --origin "$url" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$t" w2 "$run"
    local half; half=$(half_of_last); chains
    g open --url "$url/auth/refresh" --mode refresh --tokens "$dir/rt" --origin "$url" --rate "$half" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$t" w2_half "$run"
    g closed --url "$url/auth/login" --mode login "${login[@]}" --connections 8 --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$t" w3 "$run"
    g closed --url "$url/auth/login" --mode login "${login[@]}" --connections 64 --duration $((DURATION + 4)) --warmup 0 --server-pid "$pid" >"$dir/flood.json" 2>&1 &
    local flood=$!
    sleep 2
    g open --url "$url/auth/me" --tokens "$dir/at" --rate 1000 --duration "$DURATION" 2>&1 | emit "$t" w1_during_login_flood "$run"
    wait "$flood"; emit "$t" login_flood "$run" <"$dir/flood.json"
    chains
    g closed --url "$url/auth/me" --mode mixed --refresh-url "$url/auth/refresh" --login-url "$url/auth/login" \
      --tokens "$dir/at" --refresh-tokens "$dir/rt" "${login[@]}" --connections 32 --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$t" w4 "$run"
    half=$(half_of_last); chains
    g open --url "$url/auth/me" --mode mixed --refresh-url "$url/auth/refresh" --login-url "$url/auth/login" \
      --tokens "$dir/at" --refresh-tokens "$dir/rt" "${login[@]}" --rate "$half" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$t" w4_half "$run"
  done
  note "sesame-$b rss_after_runs_kib $(rss_kib "$pid")"
  sleep 2
  note "sesame-$b rss_2s_later_kib $(rss_kib "$pid")"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
  db_reset "$b"
}

# --- the resource-server example -------------------------------------------------
run_resource_server() {
  local dir="$W/rs" sport aport keys key hash svc skey shash spid apid
  mkdir -p "$dir"; sport=$(free_port); aport=$(free_port)
  keys=$("$BIN" api-key new); key=$(echo "$keys" | awk '/^key:/{print $2}'); hash=$(echo "$keys" | awk '/^hash:/{print $2}')
  svc=$("$BIN" api-key new); skey=$(echo "$svc" | awk '/^key:/{print $2}'); shash=$(echo "$svc" | awk '/^hash:/{print $2}')
  # Sesame only mints, serves the JWKS and the revocation feed: cpu1, beside the load.
  (cd "$dir" && exec env SESAME_BIND="127.0.0.1:$sport" SESAME_METRICS_BIND=none SESAME_LOG_LEVEL=warn \
      SESAME_ADMIN_API_KEYS="$hash" SESAME_SERVICE_API_KEYS="$shash" SESAME_ACCESS_TTL=1h SESAME_RATE_LIMITS=false \
      taskset -c 1 "$BIN" serve >"$dir/sesame.log" 2>&1) &
  spid=$!; PIDS+=("$spid")
  wait_http "http://127.0.0.1:$sport/healthz" || { echo "sesame did not start" >&2; cat "$dir/sesame.log" >&2; return; }
  (exec env SESAME_URL="http://127.0.0.1:$sport" SESAME_SERVICE_API_KEY="$skey" BIND="127.0.0.1:$aport" RUST_LOG=warn \
      taskset -c 0 "$RS" >"$dir/api.log" 2>&1) &
  apid=$!; PIDS+=("$apid")
  wait_http "http://127.0.0.1:$aport/healthz" || { echo "resource-server did not start" >&2; cat "$dir/api.log" >&2; return; }
  note "resource-server rss_idle_kib $(rss_kib "$apid")"
  g mint --sesame "http://127.0.0.1:$sport" --admin-key "$key" --count "$TOKENS" --out "$dir/at" >/dev/null || return
  local api="http://127.0.0.1:$aport/api"
  for run in $(seq 1 "$RUNS"); do
    g closed --url "$api/bare" --tokens "$dir/at" --duration "$DURATION" --server-pid "$apid" 2>&1 | emit resource-server w1_bare "$run"
    g closed --url "$api/hello" --tokens "$dir/at" --duration "$DURATION" --server-pid "$apid" 2>&1 | emit resource-server w1 "$run"
    # Both routes at the same offered load (half the protected maximum):
    # CPU per request depends on load, so the ratio is taken at equal load.
    local half; half=$(half_of_last)
    g open --url "$api/bare" --tokens "$dir/at" --rate "$half" --duration "$DURATION" --server-pid "$apid" 2>&1 | emit resource-server w1_bare_half "$run"
    g open --url "$api/hello" --tokens "$dir/at" --rate "$half" --duration "$DURATION" --server-pid "$apid" 2>&1 | emit resource-server w1_half "$run"
  done
  note "resource-server stats $(curl -s "$api/stats")"
  note "resource-server rss_after_runs_kib $(rss_kib "$apid")"
  kill -TERM "$apid" "$spid"; wait "$apid" "$spid" 2>/dev/null
}

# --- the peers -------------------------------------------------------------------
run_peer() {
  local name=$1 dir port url pid cookie envs=() script
  dir="$W/$name"; mkdir -p "$dir"; port=$(free_port); url="http://127.0.0.1:$port"
  case $name in
    express|express-keyobj)
      redis_up; db_reset redis
      script="$PEERS/node-express-redis/server.js"; cookie=refresh_token
      envs=(REDIS_PORT="$RPORT" JWT_KEY="$([ "$name" = express ] && echo string || echo keyobject)") ;;
    session-jwt) script="$PEERS/session-jwt/server.js"; cookie=refresh ;;
  esac
  [ -f "$script" ] && [ -d "$(dirname "$script")/node_modules" ] || { echo "$name: run npm ci in $(dirname "$script")" >&2; return; }
  (exec env "${envs[@]}" PORT="$port" HOST=127.0.0.1 taskset -c 0 node "$script" >"$dir/server.log" 2>&1) &
  pid=$!; PIDS+=("$pid")
  for _ in $(seq 1 100); do curl -s -o /dev/null "$url/me" && break; sleep 0.1; done
  note "$name rss_idle_kib $(rss_kib "$pid")"
  users() { g users --base "$url" --count 64 --out "$dir/at" --refresh-out "$dir/rt" --refresh-cookie "$cookie" --prefix "$name-" >/dev/null; }
  users || { echo "$name: users failed" >&2; cat "$dir/server.log" >&2; return; }
  local login=(--email "$name-{i}@example.com" --users 64 --password "$PASSWORD" --origin "$url") rc=(--refresh-cookie "$cookie")
  for run in $(seq 1 "$RUNS"); do
    g closed --url "$url/me" --tokens "$dir/at" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$name" w1 "$run"
    g open --url "$url/me" --tokens "$dir/at" --rate "$(half_of_last)" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$name" w1_half "$run"
    users
    g closed --url "$url/auth/refresh" --mode refresh "${rc[@]}" --tokens "$dir/rt" --origin "$url" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$name" w2 "$run"
    local half; half=$(half_of_last); users
    g open --url "$url/auth/refresh" --mode refresh "${rc[@]}" --tokens "$dir/rt" --origin "$url" --rate "$half" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$name" w2_half "$run"
    g closed --url "$url/auth/login" --mode login "${login[@]}" --connections 8 --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$name" w3 "$run"
    users
    g closed --url "$url/me" --mode mixed "${rc[@]}" --refresh-url "$url/auth/refresh" --login-url "$url/auth/login" \
      --tokens "$dir/at" --refresh-tokens "$dir/rt" "${login[@]}" --connections 32 --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$name" w4 "$run"
    half=$(half_of_last); users
    g open --url "$url/me" --mode mixed "${rc[@]}" --refresh-url "$url/auth/refresh" --login-url "$url/auth/login" \
      --tokens "$dir/at" --refresh-tokens "$dir/rt" "${login[@]}" --rate "$half" --duration "$DURATION" --server-pid "$pid" 2>&1 | emit "$name" w4_half "$run"
  done
  note "$name rss_after_runs_kib $(rss_kib "$pid")"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(raw sqlite postgres mariadb redis resource-server express express-keyobj session-jwt)
note "# matrix $(date -u +%FT%TZ) $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); runs=$RUNS duration=${DURATION}s tokens=$TOKENS; $(node --version 2>/dev/null) $(redis-server --version | cut -d' ' -f3)"
for t in "${targets[@]}"; do
  case $t in
    raw) run_raw ;;
    sqlite|postgres|mariadb|redis) run_sesame "$t" ;;
    resource-server) run_resource_server ;;
    express|express-keyobj|session-jwt) run_peer "$t" ;;
    *) echo "unknown target $t" >&2 ;;
  esac
done

python3 "$HERE/summarize.py" "$OUT"
echo "raw lines: $OUT"
