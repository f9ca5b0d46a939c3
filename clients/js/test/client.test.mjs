// The client in node against a real `sesame serve` (debug binary). Node has
// no cookie jar, so each "browser" is a cookieFetch jar; BroadcastChannel is
// real (node has it), Web Locks are absent (node has none), which is the
// fallback path: the server's grace window.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  createClient,
  safeNext,
  isSessionLostError,
  isOfflineError,
  isRateLimitedError,
  SessionLostError,
} from '../sesame.js';
import { startServer, cookieFetch, freePort } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let n = 0;
const email = () => `user${Date.now()}-${n++}@example.com`;

/** One browser: a cookie jar and its own tab channel, for `createClient`. */
function browserOf(url) {
  const f = cookieFetch(url);
  return { fetch: f, BroadcastChannel: f.BroadcastChannel };
}

/** Every client made here, closed at the end so node can exit. */
const clients = [];
/** @param {import('../sesame.js').ClientOptions} o */
function client(o) {
  const c = createClient(o);
  clients.push(c);
  return c;
}
after(() => clients.forEach((c) => c.close()));

/** Records the hooks a client calls. */
function hooks() {
  const calls = { lost: [], offline: 0, online: 0, login: 0, maintenance: 0 };
  return {
    calls,
    onSessionLost: (i) => calls.lost.push(i),
    onOffline: () => calls.offline++,
    onOnline: () => calls.online++,
    onLogin: () => calls.login++,
    onMaintenance: () => calls.maintenance++,
  };
}

/** A throwaway HTTP service that records the Authorization it gets. */
async function service(answer) {
  const seen = [];
  const port = await freePort();
  const srv = http.createServer((req, res) => {
    seen.push(req.headers.authorization ?? null);
    const [status, body] = answer(seen.length);
    res.writeHead(status, { 'content-type': 'application/json', 'access-control-allow-origin': '*' });
    res.end(JSON.stringify(body));
  });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${port}`, seen, close: () => new Promise((r) => (srv.closeAllConnections(), srv.close(r))) };
}

test('safeNext accepts only a path starting with exactly one slash', () => {
  const cases = [
    ['/dashboard', '/dashboard'],
    ['/dashboard?tab=1#x', '/dashboard?tab=1#x'],
    ['/', '/'],
    ['//evil.example', '/dashboard'],
    ['/\\evil.example', '/dashboard'],
    ['/\t/evil.example', '/dashboard'],
    ['/\n/evil.example', '/dashboard'],
    ['https://evil.example/', '/dashboard'],
    ['javascript:alert(1)', '/dashboard'],
    ['dashboard', '/dashboard'],
    ['', '/dashboard'],
    [null, '/dashboard'],
    [undefined, '/dashboard'],
    ['/a/../..//evil.example', '/dashboard'],
    ['/a/./b', '/a/b'],
  ];
  for (const [input, want] of cases) assert.equal(safeNext(input), want, JSON.stringify(input));
  assert.equal(safeNext('//x', '/login'), '/login');
});

describe('against one server', () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let srv;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv?.close();
  });

  test('register, me, sessions and logout in the hybrid transport', async () => {
    const f = cookieFetch(srv.url);
    const h = hooks();
    const c = client({ baseUrl: srv.url, fetch: f, BroadcastChannel: f.BroadcastChannel, ...h });
    const address = email();
    const r = await c.register({ email: address, password: PASSWORD });
    assert.equal(r.status, 'signed_in');
    assert.equal(r.user?.email, address);
    assert.ok(c.signedIn);
    // The refresh token is only the HttpOnly cookie, never in a body the page sees.
    const set = f.setCookies.flat().find((s) => s.startsWith('__Host-sesame_rt='));
    assert.match(set ?? '', /HttpOnly/);
    assert.match(set ?? '', /Secure/);
    assert.match(set ?? '', /SameSite=Strict/);
    assert.ok(f.jar.has('__Host-sesame_rt'));

    const me = await c.me();
    assert.equal(me.user.email, address);
    assert.equal(me.session.id, c.sessionId);
    const sessions = await c.sessions();
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0].current, true);
    assert.equal(sessions[0].active, true);

    await c.logout();
    assert.equal(c.signedIn, false);
    assert.equal(f.jar.has('__Host-sesame_rt'), false, 'the server expired the cookie');
    await assert.rejects(c.me(), (e) => isSessionLostError(e));
    assert.equal(h.calls.lost.length, 0, "the tab's own logout is not reported as a loss");
  });

  test('the bearer token goes only to Sesame and the apiOrigins', async () => {
    const api = await service(() => [200, { ok: true }]);
    const other = await service(() => [200, { ok: true }]);
    try {
      const c = client({ baseUrl: srv.url, apiOrigins: [api.origin], ...browserOf(srv.url) });
      await c.register({ email: email(), password: PASSWORD });
      assert.equal((await c.fetch(`${api.origin}/hello`)).status, 200);
      assert.equal((await c.fetch(`${other.origin}/hello`)).status, 200);
      assert.equal((await c.fetch(`${srv.url}/auth/me`)).status, 200);
      assert.match(api.seen[0] ?? '', /^Bearer ey/);
      assert.equal(other.seen[0], null, 'no token for an origin not listed');
    } finally {
      await api.close();
      await other.close();
    }
  });

  test('a 401 is retried once, after a refresh, with the new token', async () => {
    const api = await service((i) => (i === 1 ? [401, { code: 'invalid_token' }] : [200, { ok: true }]));
    try {
      const c = client({ baseUrl: srv.url, apiOrigins: [api.origin], ...browserOf(srv.url) });
      await c.register({ email: email(), password: PASSWORD });
      const rotated = await srv.counter('sesame_refreshes_total', 'result="rotated"');
      const res = await c.fetch(`${api.origin}/data`);
      assert.equal(res.status, 200);
      assert.equal(api.seen.length, 2, 'one retry');
      assert.notEqual(api.seen[0], api.seen[1], 'the retry carries the refreshed token');
      assert.equal(await srv.counter('sesame_refreshes_total', 'result="rotated"'), rotated + 1);
    } finally {
      await api.close();
    }
    const always = await service(() => [401, { code: 'invalid_token' }]);
    try {
      const c = client({ baseUrl: srv.url, apiOrigins: [always.origin], ...browserOf(srv.url) });
      await c.register({ email: email(), password: PASSWORD });
      const res = await c.fetch(`${always.origin}/data`);
      assert.equal(res.status, 401, "another service's refusal is the caller's to see");
      assert.equal(always.seen.length, 2, 'retried once, not more');
      assert.ok(c.signedIn, 'the session itself is fine');
    } finally {
      await always.close();
    }
  });

  test('a session revoked from another device is reported lost at its next call', async () => {
    const address = email();
    const a = client({ baseUrl: srv.url, ...browserOf(srv.url) });
    await a.register({ email: address, password: PASSWORD });
    const h = hooks();
    const b = client({ baseUrl: srv.url, ...browserOf(srv.url), ...h });
    await b.login({ email: address, password: PASSWORD });
    const list = await a.sessions();
    assert.equal(list.filter((s) => s.active).length, 2);
    assert.ok(b.sessionId);
    await a.revokeSession(/** @type {string} */ (b.sessionId));
    await assert.rejects(b.sessions(), (e) => e instanceof SessionLostError);
    assert.equal(h.calls.lost.length, 1);
    assert.equal(h.calls.lost[0].reason, 'revoked_by_user');
    assert.equal(b.signedIn, false);
    // A wrong current password is a form error, not a lost session.
    await assert.rejects(
      a.changePassword({ currentPassword: 'not the password', newPassword: 'another long passphrase' }),
      (e) => e.code === 'invalid_credentials' && !isSessionLostError(e),
    );
    assert.ok(a.signedIn);
  });

  test('a second client of the same browser asks the first for its token instead of rotating', async () => {
    const jar = cookieFetch(srv.url);
    const a = client({ baseUrl: srv.url, fetch: jar, BroadcastChannel: jar.BroadcastChannel });
    const address = email();
    await a.register({ email: address, password: PASSWORD });
    const rotated = await srv.counter('sesame_refreshes_total', 'result="rotated"');
    const b = client({ baseUrl: srv.url, fetch: jar, BroadcastChannel: jar.BroadcastChannel });
    const me = await b.me();
    assert.equal(me.user.email, address);
    assert.equal(b.sessionId, a.sessionId);
    assert.equal(await srv.counter('sesame_refreshes_total', 'result="rotated"'), rotated, 'no rotation: the token came from the other tab');
  });

  test('login and logout reach every client of the browser', async () => {
    const jar = cookieFetch(srv.url);
    const address = email();
    await client({ baseUrl: srv.url, ...browserOf(srv.url) }).register({ email: address, password: PASSWORD });
    const a = client({ baseUrl: srv.url, fetch: jar, BroadcastChannel: jar.BroadcastChannel });
    const h = hooks();
    const b = client({ baseUrl: srv.url, fetch: jar, BroadcastChannel: jar.BroadcastChannel, ...h });
    await a.login({ email: address, password: PASSWORD });
    await waitFor(() => b.signedIn, 'the login to reach the other client');
    assert.equal(h.calls.login, 1);
    assert.equal(b.user?.email, address);
    await a.logout();
    await waitFor(() => !b.signedIn, 'the logout to reach the other client');
    assert.equal(h.calls.lost.length, 1);
    assert.equal(h.calls.lost[0].reason, 'logout');
  });

  test('without Web Locks, two clients refreshing at once both succeed (the grace window)', async () => {
    const jar = cookieFetch(srv.url);
    const address = email();
    // No BroadcastChannel either: nothing coordinates them but the server.
    const a = client({ baseUrl: srv.url, fetch: jar, locks: null, BroadcastChannel: null });
    await a.register({ email: address, password: PASSWORD });
    const b = client({ baseUrl: srv.url, fetch: jar, locks: null, BroadcastChannel: null });
    const reused = await srv.counter('sesame_refresh_reuse_total');
    const [ta, tb] = await Promise.all([a.refresh(), b.refresh()]);
    assert.ok(ta && tb);
    assert.ok(a.signedIn && b.signedIn);
    const me = await b.me();
    assert.equal(me.session.active, true);
    assert.equal(await srv.counter('sesame_refresh_reuse_total'), reused);
    const live = (await a.sessions()).filter((s) => s.active);
    assert.equal(live.length, 1, 'still one live session');
  });

  test('offline keeps the session; after a restart the same session continues', async () => {
    const h = hooks();
    const c = client({ baseUrl: srv.url, ...browserOf(srv.url), ...h });
    await c.register({ email: email(), password: PASSWORD });
    const sid = c.sessionId;
    await srv.stop();
    try {
      await assert.rejects(c.me(), (e) => isOfflineError(e));
      await assert.rejects(c.sessions(), (e) => isOfflineError(e));
      assert.equal(h.calls.offline, 1, 'reported once while offline');
      assert.ok(c.signedIn, 'the session is kept');
      assert.equal(h.calls.lost.length, 0);
    } finally {
      await srv.restart();
    }
    const me = await c.me();
    assert.equal(me.session.id, sid);
    assert.equal(h.calls.online, 1);
    // The refresh cookie survived the restart too.
    await c.refresh();
    assert.equal((await c.me()).session.id, sid);
  });
});

describe('scheduling (fake monotonic clock)', () => {
  let srv;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv?.close();
  });

  test('the refresh is scheduled from expires_in, at most once per 5 s', async () => {
    let now = 1000;
    /** @type {{ fn: () => void, ms: number }[]} */
    const timers = [];
    const clock = {
      now: () => now,
      setTimeout: (fn, ms) => timers.push({ fn, ms }) - 1,
      clearTimeout: () => {},
    };
    const c = client({ baseUrl: srv.url, ...browserOf(srv.url), clock, refreshBeforeExpiry: 60 });
    await c.register({ email: email(), password: PASSWORD });
    // access_ttl is 10 min: max(600 − 60, 600 / 2) s.
    assert.equal(timers.at(-1)?.ms, 540_000);

    const c2 = client({ baseUrl: srv.url, fetch: cookieFetch(srv.url), clock, refreshBeforeExpiry: 400, BroadcastChannel: null });
    await c2.register({ email: email(), password: PASSWORD });
    assert.equal(timers.at(-1)?.ms, 300_000, 'never before half the lifetime');

    // The timer fires: one rotation, and the next refresh is scheduled from
    // the new answer's expires_in, measured at its receipt.
    const rotated = await srv.counter('sesame_refreshes_total', 'result="rotated"');
    now += 300_000;
    const before = timers.length;
    timers.at(-1)?.fn();
    await waitFor(() => timers.length > before, 'the next schedule');
    assert.equal(await srv.counter('sesame_refreshes_total', 'result="rotated"'), rotated + 1);
    assert.equal(timers.at(-1)?.ms, 300_000);

    // Fired again 1 s later (a timer that runs early): no second rotation.
    now += 1000;
    const count = timers.length;
    timers.at(-1)?.fn();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await srv.counter('sesame_refreshes_total', 'result="rotated"'), rotated + 1, 'at most once per 5 s');
    assert.equal(timers.length, count);
  });
});

describe('rate limits', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      env: { SESAME_RATE_LIMITS: 'true', SESAME_RATE_LIMIT_LOGIN_ACCOUNT: '2/1h' },
    });
  });
  after(async () => {
    await srv?.close();
  });

  test('429 on login is a RateLimitedError with Retry-After', async () => {
    const c = client({ baseUrl: srv.url, ...browserOf(srv.url) });
    const address = email();
    for (let i = 0; i < 2; i++) {
      await assert.rejects(c.login({ email: address, password: 'wrong password here' }), (e) => e.code === 'invalid_credentials');
    }
    await assert.rejects(c.login({ email: address, password: 'wrong password here' }), (e) => {
      assert.ok(isRateLimitedError(e), String(e));
      assert.equal(e.status, 429);
      assert.ok(typeof e.retryAfter === 'number' && e.retryAfter > 0, `Retry-After ${e.retryAfter}`);
      return true;
    });
  });
});

/** @param {() => boolean} check @param {string} what */
async function waitFor(check, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
