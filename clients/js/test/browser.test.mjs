// End to end in headless Chromium (Debian's `chromium`, driven by
// playwright-core) against a real `sesame serve`. Races are forced — both
// tabs call client.refresh() in the same instant through page.evaluate —
// never waited for; every wait is bounded.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startProxy, postgresDatabase, until, CSP, chromiumForTests, shot } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
const WAIT = 15000;

let n = 0;
const email = () => `browser${Date.now()}-${n++}@example.com`;

/** Chromium for this file; CSP violations and page errors from every page. */
const { violations, newContext, open } = chromiumForTests(WAIT);

/** The live session rows of the dashboard. @param {import('playwright-core').Page} page */
const liveRows = (page) => page.locator('#sessions-body tr');

/** Waits until the dashboard lists `count` live sessions. */
async function expectLive(page, count) {
  await until(async () => (await liveRows(page).count()) === count, WAIT, `${count} live session(s)`);
}

/** Registers through the form and lands on the dashboard. */
async function registerIn(page, base, address) {
  await page.goto(`${base}/register`);
  await page.fill('#register-email', address);
  await page.fill('#register-password', PASSWORD);
  await page.click('#register-submit');
  await page.waitForURL(`${base}/dashboard`);
  await expectLive(page, 1);
}

/** @param {import('playwright-core').Page} page */
const hidden = (page, sel) => page.locator(sel).evaluate((e) => /** @type {HTMLElement} */ (e).hidden);

describe('the web UI in Chromium', () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let srv;
  /** @type {import('playwright-core').BrowserContext} */
  let first;
  /** @type {import('playwright-core').BrowserContext} */
  let second;
  let address;
  let page1;
  let page2;
  let page1b;

  before(async () => {
    srv = await startServer({ host: 'localhost' });
    first = await newContext();
    second = await newContext();
  });
  after(async () => {
    await first?.close();
    await second?.close();
    await srv?.close();
  });

  test('every page and asset answers with the CSP and framing headers', async () => {
    const ctx = await newContext();
    try {
      const page = await open(ctx);
      for (const path of ['/login', '/register', '/maintenance', '/ui/sesame.js', '/ui/app.js', '/ui/style.css']) {
        const res = await page.goto(`${srv.url}${path}`);
        assert.ok(res, path);
        const h = res.headers();
        assert.equal(res.status(), 200, path);
        assert.equal(h['content-security-policy'], CSP, path);
        assert.equal(h['x-frame-options'], 'DENY', path);
        assert.equal(h['referrer-policy'], 'no-referrer', path);
        assert.equal(h['x-content-type-options'], 'nosniff', path);
        if (path.endsWith('.js')) assert.match(h['content-type'], /^text\/javascript/);
        if (path.startsWith('/ui/') === false) {
          assert.match(h['content-type'], /^text\/html/);
          await page.waitForLoadState('networkidle');
          await shot(page, path.slice(1));
        }
      }
      // Signed out, the dashboard sends you to the login page and back after.
      await page.goto(`${srv.url}/dashboard`);
      await page.waitForURL(/\/login\?next=%2Fdashboard/);
      // `/` goes to the dashboard.
      const root = await page.request.get(`${srv.url}/`, { maxRedirects: 0 });
      assert.equal(root.status(), 303);
      assert.equal(root.headers().location, '/dashboard');
      assert.equal(root.headers()['content-security-policy'], CSP);
    } finally {
      await ctx.close();
    }
  });

  test('register → the dashboard lists one session, this device', async () => {
    address = email();
    page1 = await open(first);
    await registerIn(page1, srv.url, address);
    await until(async () => (await page1.textContent('#whoami'))?.includes(address), WAIT, 'who am I');
    assert.equal(await liveRows(page1).first().getAttribute('data-current'), 'true');
    assert.match((await liveRows(page1).first().textContent()) ?? '', /This device/);
    // Chromium kept the __Host- Secure cookie on http://localhost (a
    // potentially trustworthy origin), HttpOnly, out of the page's reach.
    const rt = (await first.cookies()).find((c) => c.name === '__Host-sesame_rt');
    assert.ok(rt, 'refresh cookie stored');
    assert.equal(rt.httpOnly, true);
    assert.equal(rt.secure, true);
    assert.equal(rt.sameSite, 'Strict');
    assert.equal(await page1.evaluate(() => document.cookie), '', 'no cookie readable by scripts');
    assert.equal(await page1.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)), '{}{}', 'no token in storage');
    await shot(page1, 'dashboard');
  });

  test('a second browser logs in (keyboard only) → both list two sessions', async () => {
    page2 = await open(second, `${srv.url}/login`);
    // The email field has focus; Tab moves to the password, Enter submits.
    assert.equal(await page2.evaluate(() => document.activeElement?.id), 'login-email');
    await page2.keyboard.type(address);
    await page2.keyboard.press('Tab');
    assert.equal(await page2.evaluate(() => document.activeElement?.id), 'login-password');
    await page2.keyboard.type(PASSWORD);
    await page2.keyboard.press('Tab');
    assert.equal(await page2.evaluate(() => document.activeElement?.id), 'login-submit');
    await page2.keyboard.press('Enter');
    await page2.waitForURL(`${srv.url}/dashboard`);
    await expectLive(page2, 2);
    await page1.click('#reload');
    await expectLive(page1, 2);
  });

  test('revoking the second from the first sends the second to /login at its next action', async () => {
    const other = page1.locator('#sessions-body tr:not([data-current]) button');
    await other.click();
    await expectLive(page1, 1);
    await until(async () => (await page1.locator('#ended-body tr[data-reason="revoked_by_user"]').count()) === 1, WAIT, 'the ended session');
    assert.match((await page1.locator('#ended-body tr').first().textContent()) ?? '', /Signed out from another device/);
    await shot(page1, 'dashboard-after-revoke');
    // The second browser does not know yet; its next action finds out.
    assert.equal(new URL(page2.url()).pathname, '/dashboard');
    await page2.click('#reload');
    await page2.waitForURL(/\/login\?next=%2Fdashboard&reason=revoked_by_user/);
    assert.match((await page2.textContent('#login-notice')) ?? '', /signed out from another device/i);
    await shot(page2, 'login-after-revoke');
  });

  test('a new tab takes the token from the open one; two tabs refreshing at once: one rotation, no reuse', async () => {
    const rotated = await srv.counter('sesame_refreshes_total', 'result="rotated"');
    page1b = await open(first, `${srv.url}/dashboard`);
    await expectLive(page1b, 1);
    assert.equal(await srv.counter('sesame_refreshes_total', 'result="rotated"'), rotated, 'the new tab asked the other tab instead of rotating');

    const grace = await srv.counter('sesame_grace_answers_total');
    const reuse = await srv.counter('sesame_refresh_reuse_total');
    // Forced race: a third tab of the same browser holds the refresh lock
    // while both tabs call refresh(), so both calls are provably in flight
    // at once (queued on the lock, as navigator.locks.query() shows) before
    // either can reach the server. Then the holder lets go, as a tab that
    // closed mid-refresh would.
    const lock = `sesame-refresh-${new URL(srv.url).origin}`;
    const holder = await open(first, `${srv.url}/ui/style.css`);
    await holder.evaluate((name) => {
      navigator.locks.request(name, () => new Promise((release) => Object.assign(window, { release })));
    }, lock);
    const queued = () =>
      holder.evaluate(async (name) => {
        const s = await navigator.locks.query();
        return { held: (s.held ?? []).filter((l) => l.name === name).length, pending: (s.pending ?? []).filter((l) => l.name === name).length };
      }, lock);
    await until(async () => (await queued()).held === 1, WAIT, 'the holder to take the lock');
    const call = () => /** @type {any} */ (window).sesameUi.client.refresh();
    const racing = Promise.all([page1.evaluate(call), page1b.evaluate(call)]);
    await until(async () => (await queued()).pending === 2, WAIT, 'both refreshes queued on the lock');
    await holder.evaluate(() => /** @type {any} */ (window).release());
    const [a, b] = await racing;
    await holder.close();
    assert.ok(typeof a === 'string' && a.length > 20);
    assert.equal(a, b, 'the second tab took the first tab\'s new token (Web Locks + BroadcastChannel)');
    assert.equal(await srv.counter('sesame_refreshes_total', 'result="rotated"'), rotated + 1, 'exactly one rotation');
    assert.equal(await srv.counter('sesame_grace_answers_total'), grace, 'no concurrent refresh reached the server');
    assert.equal(await srv.counter('sesame_refresh_reuse_total'), reuse, 'no reuse recorded');
    // Both tabs are still signed in, and the session is live and unrevoked.
    for (const p of [page1, page1b]) {
      await p.click('#reload');
      await expectLive(p, 1);
      assert.equal(new URL(p.url()).pathname, '/dashboard');
    }
    assert.equal(await page1.locator('#ended-body tr[data-reason="reuse_detected"]').count(), 0);
    // And a rotation after the race works: the cookie in the jar is current.
    await page1b.evaluate(call);
    await page1.click('#reload');
    await expectLive(page1, 1);
  });

  test('logout everywhere reaches the other tab', async () => {
    await page1.click('#logout-all');
    await page1.waitForURL(/\/login\?reason=logout_all/);
    await page1b.waitForURL(/\/login\?next=%2Fdashboard&reason=logout/);
    assert.match((await page1b.textContent('#login-notice')) ?? '', /You signed out/);
    const rt = (await first.cookies()).find((c) => c.name === '__Host-sesame_rt');
    assert.equal(rt, undefined, 'the refresh cookie was expired');
    await shot(page1, 'login-after-logout-all');
  });

  test('the server stopped (SIGTERM) and restarted: the tab continues without a new login', async () => {
    const ctx = await newContext();
    try {
      const page = await open(ctx);
      await registerIn(page, srv.url, email());
      const sid = await liveRows(page).first().getAttribute('data-session');
      await srv.stop('SIGTERM');
      try {
        await page.click('#reload');
        await until(async () => !(await hidden(page, '#banner')), WAIT, 'the offline banner');
        assert.match((await page.textContent('#banner-text')) ?? '', /still signed in/);
        assert.equal(new URL(page.url()).pathname, '/dashboard');
        await shot(page, 'offline-banner');
      } finally {
        await srv.restart();
      }
      // The banner's own retry (with back-off) or the button: either way, bounded.
      await page.click('#banner-retry');
      await until(async () => await hidden(page, '#banner'), WAIT, 'the banner to go');
      await expectLive(page, 1);
      assert.equal(await liveRows(page).first().getAttribute('data-session'), sid, 'the same session');
      assert.equal(new URL(page.url()).pathname, '/dashboard');
      // The refresh cookie survived the restart as well.
      const token = await page.evaluate(() => /** @type {any} */ (window).sesameUi.client.refresh());
      assert.ok(token);
    } finally {
      await ctx.close();
    }
  });

  test('no CSP violation and no script error on any page', () => {
    assert.deepEqual(violations, []);
  });
});

describe('rate limits in Chromium', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { SESAME_RATE_LIMITS: 'true', SESAME_RATE_LIMIT_LOGIN_ACCOUNT: '1/1h' } });
  });
  after(async () => {
    await srv?.close();
  });

  test('429 on login → an inline "try again in N s" from Retry-After', async () => {
    const ctx = await newContext();
    try {
      const page = await open(ctx, `${srv.url}/login`);
      const address = email();
      await page.fill('#login-email', address);
      await page.fill('#login-password', 'not the password at all');
      await page.click('#login-submit');
      await until(async () => /Wrong email or password/.test((await page.textContent('#login-error')) ?? ''), WAIT, 'the first refusal');
      await page.click('#login-submit');
      await until(async () => /Try again in \d+ s/.test((await page.textContent('#login-error')) ?? ''), WAIT, 'the countdown');
      assert.equal(await page.locator('#login-submit').isDisabled(), true, 'the button waits too');
      assert.equal(await page.getAttribute('#login-error', 'role'), 'alert');
      assert.equal(new URL(page.url()).pathname, '/login');
      await shot(page, 'login-rate-limited');
    } finally {
      await ctx.close();
    }
  });
});

describe('the store cut in Chromium (PostgreSQL through a proxy)', () => {
  const db = (() => {
    if (!process.env.SESAME_TEST_POSTGRES_URL) return null;
    return postgresDatabase();
  })();
  const skip = db
    ? false
    : 'SESAME_TEST_POSTGRES_URL is not set: skipping "store cut → maintenance view → restored"';
  if (skip) {
    console.log(`# skipped by name: ${skip}`);
    if (process.env.SESAME_REQUIRE_BACKENDS === '1') {
      test('the store cut needs PostgreSQL (SESAME_REQUIRE_BACKENDS=1)', () => {
        assert.fail('SESAME_TEST_POSTGRES_URL is unset but SESAME_REQUIRE_BACKENDS=1');
      });
    }
  }

  test('store cut → the maintenance view; restored → the page continues', { skip }, async () => {
    if (!db) return;
    const proxy = await startProxy(db.host, db.port);
    const srv = await startServer({
      databaseUrl: db.url(proxy.port),
      env: {
        SESAME_DATABASE_ACQUIRE_TIMEOUT: '1s',
        SESAME_DATABASE_STATEMENT_TIMEOUT: '1s',
        SESAME_REQUEST_TIMEOUT: '3s',
      },
    });
    const ctx = await newContext();
    try {
      const page = await open(ctx);
      await registerIn(page, srv.url, email());
      const sid = await liveRows(page).first().getAttribute('data-session');
      proxy.cut();
      await page.click('#reload');
      await until(async () => !(await hidden(page, '#maintenance-view')), WAIT, 'the maintenance view');
      assert.equal(await hidden(page, '#main'), true, 'the page itself is replaced by the view');
      assert.equal(new URL(page.url()).pathname, '/dashboard', 'rendered in place, no navigation');
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'maintenance-title', 'focus moves to the view');
      await shot(page, 'maintenance-view');
      proxy.restore();
      // Retry until the pool has reconnected; each click is one bounded attempt.
      await until(
        async () => {
          if (await hidden(page, '#maintenance-view')) return true;
          await page.click('#maintenance-retry');
          await page.waitForTimeout(250);
          return hidden(page, '#maintenance-view');
        },
        WAIT,
        'the page to continue',
      );
      await expectLive(page, 1);
      assert.equal(await liveRows(page).first().getAttribute('data-session'), sid, 'the same session, no new login');
      assert.equal(new URL(page.url()).pathname, '/dashboard');
    } finally {
      await ctx.close();
      await srv.close();
      await proxy.close();
      db.drop();
    }
  });
});
