// The account-lifecycle pages end to end in headless Chromium (Debian's
// `chromium`, driven by playwright-core) against a real `sesame serve` in
// development mode, whose mail goes to the loopback-only `/dev/outbox`:
// verification, password reset, TOTP enrolment and the second sign-in step,
// the re-authentication prompt and account deletion. TOTP codes are
// computed here (RFC 6238) from the secret the page shows. Every wait is
// bounded.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startServer, until, delay, CSP, chromiumForTests, shot } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'a brand new passphrase';
const WAIT = 15000;
/** The server's `max_auth_age` here: its minimum, so the prompt test waits 30 s, not 5 min. */
const MAX_AUTH_AGE_S = 30;

let n = 0;
const email = () => `account${Date.now()}-${n++}@example.com`;

/** Chromium for this file; CSP violations and page errors from every page. */
const { violations, newContext, open } = chromiumForTests(WAIT);

/** Registers through the form and lands on the dashboard. */
async function registerIn(page, base, address, password = PASSWORD) {
  await page.goto(`${base}/register`);
  await page.fill('#register-email', address);
  await page.fill('#register-password', password);
  await page.click('#register-submit');
  await page.waitForURL(`${base}/dashboard`);
  await page.waitForSelector('#email-state strong');
}

/** Signs in through the password step. */
async function fillLogin(page, base, address, password) {
  await page.goto(`${base}/login`);
  await page.fill('#login-email', address);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
}

/**
 * The newest link of `kind` (`verify`, `reset`) mailed to `to`, from the
 * development outbox.
 */
async function mailLink(srv, to, kind, after = 0) {
  const re = new RegExp(`https?://[^\\s"<>]+/${kind}#token=[A-Za-z0-9_-]+`);
  return until(
    async () => {
      const res = await fetch(`http://127.0.0.1:${srv.port}/dev/outbox`, { signal: AbortSignal.timeout(5000) });
      const mails = await res.json();
      const hits = mails.filter((m) => m.to === to && re.test(m.text));
      return hits.length > after ? hits[hits.length - 1].text.match(re)[0] : null;
    },
    WAIT,
    `a ${kind} link mailed to ${to}`,
  );
}

/** How many `kind` links `to` was sent so far. */
async function mailCount(srv, to, kind) {
  const res = await fetch(`http://127.0.0.1:${srv.port}/dev/outbox`, { signal: AbortSignal.timeout(5000) });
  const re = new RegExp(`/${kind}#token=`);
  return (await res.json()).filter((m) => m.to === to && re.test(m.text)).length;
}

/** RFC 4648 base32 to bytes. @param {string} s */
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of s.replace(/=+$/, '').replace(/\s+/g, '').toUpperCase()) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 (SHA-1, 30 s, 6 digits) at time step `step`. @param {string} secret @param {number} step */
function totpAt(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32(secret)).update(counter).digest();
  const off = h[h.length - 1] & 0x0f;
  const bin = ((h[off] & 0x7f) << 24) | (h[off + 1] << 16) | (h[off + 2] << 8) | h[off + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}
const stepNow = () => Math.floor(Date.now() / 1000 / 30);
/** Not within a second and a half of a step boundary, so a code cannot go stale on its way. */
async function awayFromStepEdge() {
  if (Date.now() % 30000 > 28500) await delay(2000);
}

/**
 * Opens a mail link as a fresh load: from a page already on the link's
 * path, a `#…` change alone would be a same-document navigation.
 * @param {import('playwright-core').Page} page @param {string} link
 */
async function openLink(page, link) {
  await page.goto('about:blank');
  await page.goto(link);
}

/** @param {import('playwright-core').Page} page @param {string} sel */
const visible = (page, sel) => page.locator(sel).isVisible();

describe('the account pages in Chromium', () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let srv;
  /** A session signed in at the start, whose sign-in gets older than max_auth_age. */
  let staleCtx;
  let stalePage;
  let staleAddress;
  let staleAt = 0;

  before(async () => {
    srv = await startServer({ host: 'localhost', env: { SESAME_MAX_AUTH_AGE: `${MAX_AUTH_AGE_S}s` } });
    staleCtx = await newContext();
    stalePage = await open(staleCtx);
    staleAddress = email();
    await registerIn(stalePage, srv.url, staleAddress);
    staleAt = Date.now();
  });
  after(async () => {
    await staleCtx?.close();
    await srv?.close();
  });

  test('the new pages answer with the CSP and framing headers; without a token the link pages say so', async () => {
    const ctx = await newContext();
    try {
      const page = await open(ctx);
      for (const path of ['/verify', '/forgot', '/reset']) {
        const res = await page.goto(`${srv.url}${path}`);
        assert.ok(res, path);
        const h = res.headers();
        assert.equal(res.status(), 200, path);
        assert.match(h['content-type'], /^text\/html/, path);
        assert.equal(h['content-security-policy'], CSP, path);
        assert.equal(h['x-frame-options'], 'DENY', path);
        assert.equal(h['referrer-policy'], 'no-referrer', path);
        assert.equal(h['x-content-type-options'], 'nosniff', path);
        await page.waitForLoadState('networkidle');
      }
      await page.goto(`${srv.url}/verify`);
      await page.waitForSelector('#verify-resend-form', { state: 'visible' });
      assert.match((await page.textContent('#verify-status')) ?? '', /needs the link/);
      await page.goto(`${srv.url}/reset`);
      await page.waitForSelector('#reset-invalid', { state: 'visible' });
      assert.equal(await visible(page, '#reset-form'), false);
      assert.equal(await page.getAttribute('#reset-forgot', 'href'), '/forgot');
      // The login page links to /forgot; the forgot page answers the same for any address.
      await page.goto(`${srv.url}/login`);
      await page.click('#to-forgot');
      await page.waitForURL(`${srv.url}/forgot`);
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'forgot-email');
      await page.keyboard.type('nobody-here@example.com');
      await page.keyboard.press('Enter');
      await until(async () => /If nobody-here@example\.com has an account/.test((await page.textContent('#forgot-notice')) ?? ''), WAIT, 'the forgot notice');
      await shot(page, 'forgot');
    } finally {
      await ctx.close();
    }
  });

  test('register → the link from the outbox on /verify → verified, and the dashboard says so', async () => {
    const ctx = await newContext();
    try {
      const page = await open(ctx);
      const address = email();
      await registerIn(page, srv.url, address);
      assert.equal(await page.getAttribute('#email-state .badge', 'data-verified'), 'false');
      assert.equal(await visible(page, '#resend-verification'), true);
      // The dashboard's resend sends a second link.
      const before = await mailLink(srv, address, 'verify').then(() => mailCount(srv, address, 'verify'));
      await page.click('#resend-verification');
      await until(async () => /new confirmation link/.test((await page.textContent('#resend-status')) ?? ''), WAIT, 'resend status');
      const link = await mailLink(srv, address, 'verify', before);
      assert.ok(link.startsWith(`${srv.url}/verify#token=sev_`), link);
      await openLink(page, link);
      await until(async () => visible(page, '#verify-ok'), WAIT, 'verified');
      assert.match((await page.textContent('#verify-status')) ?? '', /confirmed/);
      // The token left the address bar (and the history entry).
      assert.equal(page.url(), `${srv.url}/verify`);
      assert.equal(await page.getAttribute('#verify-continue', 'href'), '/dashboard');
      await shot(page, 'verify');
      // The same link again: spent, and a new one is offered.
      await openLink(page, link);
      await page.waitForSelector('#verify-resend-form', { state: 'visible' });
      assert.match((await page.textContent('#verify-status')) ?? '', /no longer valid/);
      await page.fill('#verify-email', address);
      await page.click('#verify-resend');
      await until(async () => /a new link is on its way/.test((await page.textContent('#verify-notice')) ?? ''), WAIT, 'resend notice');
      await shot(page, 'verify-invalid');
      await page.goto(`${srv.url}/dashboard`);
      await until(async () => (await page.getAttribute('#email-state .badge', 'data-verified')) === 'true', WAIT, 'verified on the dashboard');
      assert.equal(await visible(page, '#resend-verification'), false);
    } finally {
      await ctx.close();
    }
  });

  test('forgot → the reset link → a new password; the older session goes to /login at its next action; the new password works', async () => {
    const oldCtx = await newContext();
    const ctx = await newContext();
    try {
      const address = email();
      const old = await open(oldCtx);
      await registerIn(old, srv.url, address);
      const page = await open(ctx, `${srv.url}/forgot`);
      await page.fill('#forgot-email', address);
      await page.click('#forgot-submit');
      await until(async () => /has an account, a link/.test((await page.textContent('#forgot-notice')) ?? ''), WAIT, 'the forgot notice');
      const link = await mailLink(srv, address, 'reset');
      assert.ok(link.startsWith(`${srv.url}/reset#token=spr_`), link);
      await openLink(page, link);
      assert.equal(page.url(), `${srv.url}/reset`, 'the token left the address bar');
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'reset-password');
      // Two different passwords: caught before any request.
      await page.fill('#reset-password', NEW_PASSWORD);
      await page.fill('#reset-confirm', `${NEW_PASSWORD}!`);
      await page.click('#reset-submit');
      assert.match((await page.textContent('#reset-error')) ?? '', /differ/);
      // A password the server refuses (too common): a field error, the link still works.
      await page.fill('#reset-password', 'password');
      await page.fill('#reset-confirm', 'password');
      await page.click('#reset-submit');
      await until(async () => /The password is too common/.test((await page.textContent('#reset-error')) ?? '') && (await page.getAttribute('#reset-password', 'aria-invalid')) === 'true', WAIT, 'the field error');
      assert.equal(await visible(page, '#reset-form'), true);
      await shot(page, 'reset-error');
      await page.fill('#reset-password', NEW_PASSWORD);
      await page.fill('#reset-confirm', NEW_PASSWORD);
      await page.click('#reset-submit');
      await until(async () => /Every session was signed out/.test((await page.textContent('#reset-status')) ?? ''), WAIT, 'reset done');
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'reset-login');
      await shot(page, 'reset');
      // The older browser finds out at its next action.
      await old.click('#reload');
      await old.waitForURL(/\/login\?next=%2Fdashboard&reason=password_changed/);
      assert.match((await old.textContent('#login-notice')) ?? '', /password was changed/);
      // The old password is refused, the new one works.
      await old.fill('#login-email', address);
      await old.fill('#login-password', PASSWORD);
      await old.click('#login-submit');
      await until(async () => /Wrong email or password/.test((await old.textContent('#login-error')) ?? ''), WAIT, 'old password refused');
      await old.fill('#login-password', NEW_PASSWORD);
      await old.click('#login-submit');
      await old.waitForURL(`${srv.url}/dashboard`);
      // The link is spent.
      await openLink(page, link);
      await page.fill('#reset-password', `${NEW_PASSWORD} again`);
      await page.fill('#reset-confirm', `${NEW_PASSWORD} again`);
      await page.click('#reset-submit');
      await page.waitForSelector('#reset-invalid', { state: 'visible' });
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'reset-forgot');
      await shot(page, 'reset-invalid');
    } finally {
      await oldCtx.close();
      await ctx.close();
    }
  });

  test('two-step sign-in: enrol from the dashboard, 10 recovery codes once; login asks for the code, a wrong one is refused, the right one signs in; turn it off', async () => {
    const ctx = await newContext();
    try {
      const page = await open(ctx);
      const address = email();
      await registerIn(page, srv.url, address);
      assert.match((await page.textContent('#totp-state')) ?? '', /^Off/);
      // Just registered: recent enough, no prompt.
      await page.click('#totp-enrol');
      await page.waitForSelector('#totp-setup', { state: 'visible' });
      assert.equal(await visible(page, '#reauth-form'), false);
      assert.match((await page.getAttribute('#totp-qr', 'src')) ?? '', /^data:image\/svg\+xml;base64,/);
      await until(
        () => page.evaluate(() => {
          const img = /** @type {HTMLImageElement} */ (document.getElementById('totp-qr'));
          return img.complete && img.naturalWidth > 0;
        }),
        WAIT,
        'the QR code rendered',
      );
      const secret = ((await page.textContent('#totp-secret')) ?? '').trim();
      assert.match(secret, /^[A-Z2-7]+=*$/);
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'totp-code');
      await shot(page, 'totp-setup');
      // Confirm with the previous step's code (within the server's ±1 step),
      // so the current step's is still unused for the login below.
      await awayFromStepEdge();
      const enrolStep = stepNow() - 1;
      await page.fill('#totp-code', totpAt(secret, enrolStep));
      await page.click('#totp-confirm');
      await page.waitForSelector('#recovery', { state: 'visible' });
      const codes = await page.locator('#recovery-codes li').allTextContents();
      assert.equal(codes.length, 10);
      for (const c of codes) assert.match(c.trim(), /^[A-Za-z0-9]{4}(-[A-Za-z0-9]{4}){3}$/);
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'recovery-title');
      assert.equal(await visible(page, '#totp-remove'), true);
      await shot(page, 'totp-recovery-codes');
      await page.click('#recovery-hide');
      assert.equal(await visible(page, '#recovery'), false);
      assert.equal(await page.locator('#recovery-codes li').count(), 0, 'the codes are gone from the page');
      // A reload shows the factor on, and no codes.
      await page.reload();
      await until(async () => /^On/.test((await page.textContent('#totp-state')) ?? ''), WAIT, 'factor on');
      assert.equal(await visible(page, '#recovery'), false);

      await page.click('#logout');
      await page.waitForURL(/\/login\?reason=logout/);
      await fillLogin(page, srv.url, address, PASSWORD);
      await page.waitForSelector('#mfa-form', { state: 'visible' });
      assert.equal(await visible(page, '#login-form'), false);
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'mfa-code');
      assert.equal(await page.getAttribute('#mfa-code', 'autocomplete'), 'one-time-code');
      assert.match((await page.textContent('#mfa-hint')) ?? '', /recovery code/);
      await shot(page, 'login-mfa');
      // A wrong code: an inline error, still on the second step.
      let wrong = '000000';
      for (let s = enrolStep - 1; s <= enrolStep + 3; s++) if (totpAt(secret, s) === wrong) wrong = '999999';
      await page.fill('#mfa-code', wrong);
      await page.press('#mfa-code', 'Enter');
      await until(async () => /not right/.test((await page.textContent('#mfa-error')) ?? ''), WAIT, 'the wrong-code error');
      assert.equal(await page.getAttribute('#mfa-code', 'aria-invalid'), 'true');
      assert.equal(new URL(page.url()).pathname, '/login');
      await shot(page, 'login-mfa-error');
      // The right code (a later step than the one used to enrol).
      await awayFromStepEdge();
      const step = Math.max(stepNow(), enrolStep + 1);
      await page.fill('#mfa-code', totpAt(secret, step));
      await page.press('#mfa-code', 'Enter');
      await page.waitForURL(`${srv.url}/dashboard`);
      await until(async () => /^On/.test((await page.textContent('#totp-state')) ?? ''), WAIT, 'signed in with the factor');
      const aal = await page.evaluate(async () => (await /** @type {any} */ (window).sesameUi.client.me()).session.aal);
      assert.equal(aal, 'aal2');
      // Turning it off (just signed in with the factor: no prompt).
      await page.click('#totp-remove');
      await until(async () => /^Off/.test((await page.textContent('#totp-state')) ?? ''), WAIT, 'factor off');
      assert.match((await page.textContent('#totp-status')) ?? '', /is off/);
      assert.equal(await visible(page, '#totp-enrol'), true);
    } finally {
      await ctx.close();
    }
  });

  test(`the re-authentication prompt appears for an email change after max_auth_age (${MAX_AUTH_AGE_S} s); satisfying it completes the change`, async () => {
    // The stale session signed in at the start of this file.
    const wait = staleAt + (MAX_AUTH_AGE_S + 1) * 1000 - Date.now();
    if (wait > 0) await delay(Math.min(wait, (MAX_AUTH_AGE_S + 1) * 1000));
    const page = stalePage;
    await page.goto(`${srv.url}/dashboard`);
    await page.waitForSelector('#email-state strong');
    const changed = email();
    await page.fill('#new-email', changed);
    await page.click('#email-submit');
    await page.waitForSelector('#reauth-form', { state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'reauth-input');
    assert.equal(await page.getAttribute('#reauth-input', 'type'), 'password');
    // The prompt sits right after the form that needed it.
    assert.equal(await page.evaluate(() => document.getElementById('email-form')?.nextElementSibling?.id), 'reauth-form');
    await shot(page, 'reauth-prompt');
    await page.keyboard.type('not the password');
    await page.keyboard.press('Enter');
    await until(async () => /password is wrong/.test((await page.textContent('#reauth-error')) ?? ''), WAIT, 'wrong password');
    assert.equal(await visible(page, '#reauth-form'), true);
    await page.fill('#reauth-input', PASSWORD);
    await page.keyboard.press('Enter');
    await until(async () => ((await page.textContent('#email-status')) ?? '').includes(changed), WAIT, 'the email changed');
    assert.equal(await visible(page, '#reauth-form'), false);
    assert.equal(await page.textContent('#email-state strong'), changed);
    assert.equal(await page.getAttribute('#email-state .badge', 'data-verified'), 'false');
    staleAddress = changed;
  });

  test('delete account: confirmation, then /login with a goodbye; the old session is gone', async () => {
    const page = stalePage;
    const otherCtx = await newContext();
    try {
      // A second browser signed in to the same account.
      const other = await open(otherCtx);
      await fillLogin(other, srv.url, staleAddress, PASSWORD);
      await other.waitForURL(`${srv.url}/dashboard`);
      await page.click('#delete-start');
      assert.equal(await visible(page, '#delete-confirm'), true);
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'delete-no');
      await shot(page, 'delete-confirm');
      // Keep it, then mean it (just re-authenticated above: no prompt).
      await page.click('#delete-no');
      assert.equal(await visible(page, '#delete-confirm'), false);
      await page.click('#delete-start');
      await page.click('#delete-yes');
      // Re-authenticated moments ago; should this machine be so slow that
      // max_auth_age passed since, the prompt asks again: satisfy it.
      await until(async () => page.url().includes('/login') || (await visible(page, '#reauth-form')), WAIT, 'deleted, or the prompt');
      if (!page.url().includes('/login')) {
        await page.fill('#reauth-input', PASSWORD);
        await page.press('#reauth-input', 'Enter');
      }
      await page.waitForURL(/\/login\?reason=account_deleted/);
      assert.match((await page.textContent('#login-notice')) ?? '', /deleted/);
      await shot(page, 'login-after-delete');
      // Neither this browser's session nor the other's lives on.
      assert.equal(await page.evaluate(() => /** @type {any} */ (window).sesameUi.client.restore()), false);
      await other.click('#reload');
      await other.waitForURL(/\/login\?/);
      await fillLogin(page, srv.url, staleAddress, PASSWORD);
      await until(async () => /Wrong email or password/.test((await page.textContent('#login-error')) ?? ''), WAIT, 'the account is gone');
    } finally {
      await otherCtx.close();
    }
  });

  test('no page broke its CSP or threw', () => {
    assert.deepEqual(violations, []);
  });
});
