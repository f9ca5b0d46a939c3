#!/usr/bin/env bash
# Refresh and /auth/me throughput of a release `sesame` on each storage
# backend, measured with the peers' wrk harness (../shared/peers/bench.sh).
#
#   usage: bench/backends.sh [sqlite] [postgres] [mariadb] [redis]     (default: all four)
#
# Needs: wrk, curl, jq (apt), a release build (cargo build --release), and for
# postgres/mariadb/redis the local servers (127.0.0.1:5432 user postgres,
# 127.0.0.1:3306 root, 127.0.0.1:6379); it creates and drops `sesame_bench`.
# The harness is copied to a temp dir and given an `Origin` header, which
# Sesame's CSRF check requires on every unsafe /auth/ request. Sesame runs
# pinned to cpu0, wrk to cpu1; load goes to 127.0.0.1 only and every run is
# bounded by wrk -d. Output: the harness's RESULT lines, 3 runs per backend.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="$ROOT/target/release/sesame"
PEERS="${PEERS:-$ROOT/../shared/peers}"
PORT="${PORT:-8090}"
RUNS="${RUNS:-3}"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -f "$PEERS/bench.sh" ] || { echo "peers harness not found at $PEERS (set PEERS=)" >&2; exit 2; }

H="$(mktemp -d)"
trap 'rm -rf "$H"' EXIT
cp -r "$PEERS/bench.sh" "$PEERS/lua" "$H/"
sed -i 's|local args=(-s -o "$WORK/b" -D "$WORK/h" -w .%{http_code}. --max-time 10 -X "$method")|&\n  args+=(-H "Origin: $BASE")|' "$H/bench.sh"
sed -i 's|^export LUA_DIR="$HERE/lua"|&\nexport ORIGIN="$BASE"|' "$H/bench.sh"
sed -i 's|{ \["Content-Type"\] = "application/json" }|{ ["Content-Type"] = "application/json", ["Origin"] = os.getenv("ORIGIN") }|; s|{ \["Cookie"\] = cookie }|{ ["Cookie"] = cookie, ["Origin"] = os.getenv("ORIGIN") }|' "$H/lua/login.lua" "$H/lua/refresh.lua"
grep -q 'Origin: $BASE' "$H/bench.sh" && grep -q ORIGIN "$H/lua/refresh.lua" || { echo "could not patch the harness" >&2; exit 2; }

run_one() {
  local name=$1; shift
  local dir; dir=$(mktemp -d)
  (cd "$dir" && exec env "$@" SESAME_BIND="127.0.0.1:$PORT" SESAME_METRICS_BIND=none SESAME_LOG_LEVEL=warn SESAME_RATE_LIMITS=false \
      taskset -c 0 "$BIN" serve >"$dir/serve.log" 2>&1) &
  local pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
  if ! kill -0 "$pid" 2>/dev/null; then echo "sesame-$name did not start:" >&2; cat "$dir/serve.log" >&2; rm -rf "$dir"; return; fi
  for run in $(seq 1 "$RUNS"); do
    RUN_LABEL=$run ME_PATH=/auth/me WORKLOADS="contract me refresh" ME_DURATION=8s REFRESH_DURATION=8s \
      timeout 120 "$H/bench.sh" "http://127.0.0.1:$PORT" "sesame-$name"
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
  # The next backend binds the same port: wait until it is free.
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || break; sleep 0.2; done
  rm -rf "$dir"
}

backends=("$@"); [ ${#backends[@]} -eq 0 ] && backends=(sqlite postgres mariadb redis)
for b in "${backends[@]}"; do
  case "$b" in
    sqlite) run_one sqlite SESAME_DATABASE_URL=sqlite://sesame.db ;;
    postgres)
      psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS sesame_bench" -c "CREATE DATABASE sesame_bench"
      run_one postgres SESAME_DATABASE_URL=postgres://postgres@127.0.0.1:5432/sesame_bench
      psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS sesame_bench" ;;
    mariadb)
      mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS sesame_bench; CREATE DATABASE sesame_bench"
      run_one mariadb SESAME_DATABASE_URL=mysql://root@127.0.0.1:3306/sesame_bench
      mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS sesame_bench" ;;
    redis)
      run_one redis SESAME_DATABASE_URL=sqlite://sesame.db SESAME_SESSION_STORE_URL=redis://127.0.0.1:6379 \
        SESAME_SESSION_STORE_PREFIX="bench$RANDOM:" ;;
    *) echo "unknown backend $b" >&2; exit 2 ;;
  esac
done
