#!/usr/bin/env bash
# The browser client and web UI (CI stage `browser`): type check, the
# client's tests with node's runner against the debug `sesame`, and the end
# to end tests in headless Chromium (Debian's package, driven by
# playwright-core; no browser download). Flags and how to run one test:
# DEVELOPERS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium
fi
command -v psql >/dev/null || echo "note: psql not found; the store-cut test needs it to create its database"
# The same build as the schemathesis stage: a no-op after the test stage,
# and it embeds the current clients/js/sesame.js and UI assets.
cargo build --locked -q -p sesame-server
export SESAME_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/sesame"
cd clients/js
npm ci --no-audit --no-fund
npx tsc --noEmit
node --test test/client.test.mjs
node --test --test-concurrency=1 test/browser.test.mjs test/account.browser.test.mjs
