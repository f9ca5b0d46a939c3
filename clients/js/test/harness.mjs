// Test harness: a real `sesame serve` (the debug binary) per test file, a
// cookie jar for node's fetch, a TCP proxy that can cut a connection, and a
// throwaway PostgreSQL database. Nothing here imitates the server.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..', '..');

/** The debug binary: $SESAME_BIN, else $CARGO_TARGET_DIR/debug/sesame, else target/debug/sesame. */
export function sesameBin() {
  const candidates = [
    process.env.SESAME_BIN,
    process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, 'debug', 'sesame'),
    join(repoRoot, 'target', 'debug', 'sesame'),
  ].filter(Boolean);
  const bin = candidates.find((p) => existsSync(p));
  if (!bin) {
    throw new Error(`no sesame binary (tried ${candidates.join(', ')}): run \`cargo build -p sesame-server\` or set SESAME_BIN`);
  }
  return bin;
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => res(port));
    });
  });
}

/** @param {number} ms */
export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `check` every 50 ms until it returns truthy or `ms` pass.
 * @template T @param {() => Promise<T> | T} check @param {number} ms @param {string} what
 * @returns {Promise<T>}
 */
export async function until(check, ms, what) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ''}`);
    await delay(50);
  }
}

/**
 * Starts `sesame serve` in development mode on 127.0.0.1 with its own
 * temporary directory (SQLite database and generated dev secrets, so a
 * restart keeps every session).
 * @param {{ host?: string, env?: Record<string, string>, databaseUrl?: string }} [opts]
 */
export async function startServer(opts = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sesame-js-'));
  const port = await freePort();
  const metricsPort = await freePort();
  const host = opts.host ?? 'localhost';
  const url = `http://${host}:${port}`;
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    SESAME_MODE: 'development',
    SESAME_BIND: `127.0.0.1:${port}`,
    SESAME_PUBLIC_URL: url,
    SESAME_DATABASE_URL: opts.databaseUrl ?? `sqlite://${join(dir, 'sesame.db')}`,
    SESAME_DEV_SECRETS_FILE: join(dir, 'sesame-dev.secrets'),
    SESAME_METRICS_BIND: `127.0.0.1:${metricsPort}`,
    // Many sign-ins from one address; the test of 429 turns limits back on.
    SESAME_RATE_LIMITS: 'false',
    // Development mode accepts cheap hashing; the tests sign in often.
    SESAME_ARGON2_MEMORY_KIB: '1024',
    SESAME_ARGON2_ITERATIONS: '1',
    SESAME_LOG_LEVEL: 'warn',
    ...opts.env,
  };
  const bin = sesameBin();
  /** @type {import('node:child_process').ChildProcess | null} */
  let child = null;
  let log = '';

  async function up() {
    log = '';
    child = spawn(bin, ['serve'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d) => (log += d));
    child.stderr?.on('data', (d) => (log += d));
    const exited = new Promise((r) => child?.once('exit', r));
    await Promise.race([
      until(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 20000, 'sesame /healthz'),
      exited.then(() => {
        throw new Error(`sesame exited at start:\n${log}`);
      }),
    ]);
  }

  /** Stops the process (SIGTERM: graceful shutdown) and waits for it. */
  async function down(signal = 'SIGTERM') {
    if (!child || child.exitCode !== null) return;
    const c = child;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    // Graceful shutdown is bounded; past 10 s it is a bug, and the test
    // still ends.
    const force = setTimeout(() => c.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(force);
  }

  await up();
  return {
    url,
    port,
    dir,
    env,
    get log() {
      return log;
    },
    /** Sesame's metrics as text. */
    async metrics() {
      return (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    },
    /**
     * One counter's value (0 when the series does not exist yet).
     * @param {string} name @param {string} [labels] e.g. `result="rotated"`
     */
    async counter(name, labels = '') {
      // Without labels: the sum over every series of the counter.
      const text = await this.metrics();
      let sum = 0;
      for (const line of text.split('\n')) {
        const [series, value] = line.split(' ');
        if (labels ? series === `${name}{${labels}}` : series === name || series.startsWith(`${name}{`)) {
          sum += Number(value);
        }
      }
      return sum;
    },
    stop: down,
    async restart() {
      await down();
      await up();
    },
    async close() {
      await down();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * node's fetch with a cookie jar and the `Origin` a browser would send.
 * It ignores `Secure` and `SameSite`: it stands for one browser talking to
 * one origin, and the tests assert what the server sets.
 * @param {string} origin
 * @param {{ userAgent?: string }} [opts]
 */
export function cookieFetch(origin, opts = {}) {
  /** @type {Map<string, string>} */
  const jar = new Map();
  const scope = Math.random().toString(36).slice(2);
  /** @type {typeof fetch & { jar: Map<string, string>, setCookies: string[][] }} */
  const f = Object.assign(
    async (/** @type {any} */ input, /** @type {RequestInit} */ init = {}) => {
      const headers = new Headers(init.headers);
      const method = (init.method ?? 'GET').toUpperCase();
      const target = new URL(String(input instanceof Request ? input.url : input));
      if (target.origin === new URL(origin).origin) {
        if (method !== 'GET' && method !== 'HEAD') headers.set('Origin', origin);
        if (jar.size > 0 && init.credentials !== 'omit') {
          headers.set('Cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
        }
      }
      if (opts.userAgent) headers.set('User-Agent', opts.userAgent);
      const res = await fetch(input, { ...init, headers });
      const set = res.headers.getSetCookie();
      f.setCookies.push(set);
      for (const c of set) {
        const [pair, ...attrs] = c.split(';');
        const i = pair.indexOf('=');
        const name = pair.slice(0, i).trim();
        const value = pair.slice(i + 1).trim();
        const maxAge = attrs.map((a) => a.trim()).find((a) => a.toLowerCase().startsWith('max-age='));
        if (value === '' || (maxAge && Number(maxAge.split('=')[1]) <= 0)) jar.delete(name);
        else jar.set(name, value);
      }
      return res;
    },
    {
      jar,
      setCookies: /** @type {string[][]} */ ([]),
      // Clients in one node process share BroadcastChannels as tabs of one
      // browser do; each jar is its own browser, so its own channel scope.
      BroadcastChannel: class extends BroadcastChannel {
        constructor(/** @type {string} */ name) {
          super(`${scope}:${name}`);
        }
      },
    },
  );
  return f;
}

/**
 * A TCP proxy in front of `upstream` that can cut every connection (and
 * refuse new ones) and be restored: the store outage of the fault tests.
 * @param {string} host @param {number} port
 */
export async function startProxy(host, port) {
  /** @type {Set<net.Socket>} */
  const sockets = new Set();
  let cut = false;
  const server = net.createServer((client) => {
    if (cut) return client.destroy();
    const up = net.connect(port, host);
    sockets.add(client);
    sockets.add(up);
    const drop = () => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    client.pipe(up);
    up.pipe(client);
  });
  const listenPort = await freePort();
  await new Promise((r) => server.listen(listenPort, '127.0.0.1', () => r(undefined)));
  return {
    port: listenPort,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      cut = false;
    },
    close() {
      this.cut();
      return new Promise((r) => server.close(() => r(undefined)));
    },
  };
}

/**
 * A fresh PostgreSQL database for one test run (created with `psql`), or
 * null when SESAME_TEST_POSTGRES_URL is unset. Databases left behind by a
 * killed run are dropped after an hour.
 */
export function postgresDatabase() {
  const raw = process.env.SESAME_TEST_POSTGRES_URL;
  if (!raw) return null;
  const base = new URL(raw);
  const now = Math.floor(Date.now() / 1000);
  const name = `sesame_ui_${now}_${Math.random().toString(16).slice(2, 10)}`;
  const psql = (/** @type {string} */ sql) =>
    execFileSync('psql', [raw, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], { encoding: 'utf8', timeout: 20000 });
  for (const old of psql("SELECT datname FROM pg_database WHERE datname LIKE 'sesame\\_ui\\_%'").split('\n')) {
    const ts = Number(old.split('_')[2]);
    if (old && ts && now - ts > 3600) psql(`DROP DATABASE IF EXISTS "${old}" WITH (FORCE)`);
  }
  psql(`CREATE DATABASE "${name}"`);
  return {
    host: base.hostname,
    port: Number(base.port || 5432),
    /** The database's URL, through `proxyPort` when given. */
    url(/** @type {number | undefined} */ proxyPort) {
      const u = new URL(raw);
      if (proxyPort) {
        u.hostname = '127.0.0.1';
        u.port = String(proxyPort);
      }
      u.pathname = `/${name}`;
      return u.toString();
    },
    drop() {
      psql(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

// ---------------------------------------------------------------------------
// Chromium: what both browser test files share.

/** Debian's Chromium (override with CHROMIUM_PATH). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** The flags DEVELOPERS.md documents. */
export const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];
/** Screenshots go here (git-ignored). */
export const SHOTS = resolve(repoRoot, 'clients', 'js', 'test-output');
/** The Content-Security-Policy of every UI page (DESIGN §7), no extra API origins. */
export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/**
 * A new page in `ctx` with `timeout` as its default, whose CSP violations and
 * page errors are pushed onto `violations`; goes to `url` if given.
 * @param {import('playwright-core').BrowserContext} ctx
 * @param {string | undefined} url
 * @param {string[]} violations
 * @param {number} timeout
 */
export async function openWatched(ctx, url, violations, timeout) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  page.on('pageerror', (e) => violations.push(`page error: ${e.message}`));
  if (url) await page.goto(url);
  return page;
}

/**
 * Chromium for one test file: launched before its tests (SHOTS created) and
 * closed after them. `open` makes a watched page (see `openWatched`) whose
 * CSP violations and page errors land in `violations`.
 * @param {number} timeout the pages' default timeout
 */
export function chromiumForTests(timeout) {
  /** @type {import('playwright-core').Browser | undefined} */
  let browser;
  /** @type {string[]} */
  const violations = [];
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30000 });
  });
  after(async () => {
    await browser?.close();
  });
  return {
    violations,
    /** @param {import('playwright-core').BrowserContextOptions} [opts] */
    newContext: (opts) => {
      if (!browser) throw new Error('Chromium is not running (outside a test?)');
      return browser.newContext(opts);
    },
    /** @param {import('playwright-core').BrowserContext} ctx @param {string} [url] */
    open: (ctx, url) => openWatched(ctx, url, violations, timeout),
  };
}

/** A full-page screenshot into SHOTS. @param {import('playwright-core').Page} page @param {string} name */
export const shot = (page, name) => page.screenshot({ path: resolve(SHOTS, `${name}.png`), fullPage: true });
