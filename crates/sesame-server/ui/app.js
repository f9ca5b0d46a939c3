// The Sesame web UI: one module for every page, dispatched on
// <body data-page>. It talks to the server only through the browser client
// (sesame.js, the same file clients/js publishes) and applies the redirect
// policy of DESIGN §7:
//   401 after a failed refresh  → /login?next=… (with why, in words)
//   5xx / storage_unavailable   → the maintenance view, rendered in place, with retry
//   no answer (offline)         → a banner; the session is kept; retry with back-off
//   429                         → "Try again in N s" next to the form
// Everything is rendered with textContent/DOM calls, never innerHTML, and
// there is no inline script or style (the CSP forbids both).

import {
  createClient,
  safeNext,
  isSessionLostError,
  isMaintenanceError,
  isOfflineError,
  isRateLimitedError,
  isSesameError,
} from './sesame.js';

const page = document.body.dataset.page ?? '';
const params = new URLSearchParams(location.search);
/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** What "retry" re-runs on this page (set by each page's init). */
let reloadView = null;
let retryTimer = 0;
let retryDelay = 1000;
const RETRY_MAX_MS = 15000;

const client = createClient({
  baseUrl: location.origin,
  onSessionLost: ({ reason }) => toLogin(reason),
  // Also for the background refresh, which no page step awaits.
  onMaintenance: () => showMaintenance(),
  onOffline: () => showOffline(),
  onOnline: () => hideBanner(),
  onLogin: () => {
    // Another tab signed in: this one holds that session now.
    if (page === 'login' || page === 'register') location.assign(safeNext(params.get('next')));
    else if (reloadView) reloadView();
  },
});
// The page's client, for the console and for the browser tests, which
// drive it with page.evaluate (the token is in this page's memory anyway).
Object.defineProperty(window, 'sesameUi', { value: Object.freeze({ client }) });

// ---------------------------------------------------------------------------
// Words for the server's reasons and codes.

const REASONS = {
  logout: 'Signed out',
  logout_all: 'Signed out everywhere',
  revoked_by_user: 'Signed out from another device',
  revoked_by_admin: 'Ended by an administrator',
  reuse_detected: 'Ended for safety: an old sign-in token was used again',
  password_changed: 'Ended because the password was changed',
  replaced: 'Replaced by a new sign-in in the same browser',
  expired: 'Expired after a period without use',
  session_expired: 'Expired after a period without use',
  evicted: 'Ended to stay within the limit of signed-in devices',
  account_disabled: 'Ended because the account was disabled',
  account_deleted: 'Ended because the account was deleted',
  restored: 'Ended after a restore from backup',
};

const LOGIN_NOTICES = {
  logout: 'You signed out.',
  logout_all: 'You signed out everywhere.',
  revoked_by_user: 'This device was signed out from another device. Sign in again to continue.',
  revoked_by_admin: 'An administrator ended your session. Sign in again to continue.',
  reuse_detected: 'Your session was ended for safety: an old sign-in token was used again. Sign in again, and consider changing your password.',
  password_changed: 'Your password was changed, so this device was signed out. Sign in with the new password.',
  replaced: 'You signed in again in this browser.',
  expired: 'Your session expired. Sign in again to continue.',
  session_expired: 'Your session expired. Sign in again to continue.',
  evicted: 'This device was signed out to stay within the limit of signed-in devices.',
  account_disabled: 'This account is disabled.',
  account_deleted: 'This account was deleted.',
};

/** @param {unknown} e */
function messageFor(e) {
  if (!isSesameError(e)) return 'Something went wrong. Please try again.';
  switch (e.code) {
    case 'invalid_credentials':
      return page === 'dashboard' ? 'The current password is wrong.' : 'Wrong email or password.';
    case 'email_taken':
      return 'An account with this email already exists. Sign in instead?';
    case 'invalid_request': {
      const errors = Array.isArray(e.problem?.errors) ? e.problem.errors : [];
      const text = errors.map((x) => (typeof x?.message === 'string' ? x.message : '')).filter(Boolean).join(' ');
      return text || 'Please check the form.';
    }
    case 'account_disabled':
      return 'This account is disabled.';
    case 'email_not_verified':
      return 'Confirm your email address first: check your inbox.';
    case 'session_limit_reached':
      return 'You are signed in on too many devices. Sign out one of them first.';
    case 'csrf_rejected':
      return 'The server refused a request from this page (origin not allowed).';
    case 'not_found':
      return 'That session no longer exists.';
    default:
      return e.message || 'Something went wrong. Please try again.';
  }
}

// ---------------------------------------------------------------------------
// The redirect policy.

/** @param {string | null} reason */
function toLogin(reason) {
  if (page === 'login' || page === 'register') return;
  const next = location.pathname + location.search;
  const q = new URLSearchParams({ next });
  if (reason) q.set('reason', reason);
  location.replace(`/login?${q}`);
}

/**
 * Shows what an error means, where it belongs.
 * @param {unknown} e @param {HTMLElement | null} errorEl @param {HTMLButtonElement | null} [submit]
 */
function handleError(e, errorEl, submit = null) {
  if (isSessionLostError(e)) return; // onSessionLost navigates
  if (isMaintenanceError(e)) return showMaintenance();
  if (isOfflineError(e)) return showOffline();
  if (isRateLimitedError(e)) return countdown(errorEl, submit, e.retryAfter ?? 5);
  if (errorEl) errorEl.textContent = messageFor(e);
}

/**
 * Runs a step of the page; any success means the server is back.
 * @template T @param {() => Promise<T>} fn @param {HTMLElement | null} errorEl
 * @param {HTMLButtonElement | null} [submit]
 * @returns {Promise<T | undefined>}
 */
async function guarded(fn, errorEl, submit = null) {
  if (errorEl) errorEl.textContent = '';
  try {
    const r = await fn();
    recovered();
    return r;
  } catch (e) {
    handleError(e, errorEl, submit);
    return undefined;
  }
}

function recovered() {
  clearTimeout(retryTimer);
  retryTimer = 0;
  retryDelay = 1000;
  hideBanner();
  const view = $('maintenance-view');
  if (!view.hidden) {
    const hadFocus = view.contains(document.activeElement);
    view.hidden = true;
    $('main').hidden = false;
    if (hadFocus) $('main').focus();
  }
}

/**
 * One pending retry at a time: the client's hook and the failed step both
 * report the same failure, and that must not double the back-off.
 * @param {HTMLElement | null} statusEl
 */
function scheduleRetry(statusEl) {
  if (!reloadView || retryTimer) return;
  const delay = retryDelay;
  retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
  if (statusEl) statusEl.textContent = `Trying again in ${Math.round(delay / 1000)} s.`;
  retryTimer = setTimeout(() => retryNow(), delay);
}

async function retryNow() {
  clearTimeout(retryTimer);
  retryTimer = 0;
  if (reloadView) await reloadView();
}

function showMaintenance() {
  const view = $('maintenance-view');
  if (view.hidden) {
    $('main').hidden = true;
    view.hidden = false;
    $('maintenance-title').focus();
  }
  scheduleRetry($('maintenance-status'));
}

function showOffline() {
  const banner = $('banner');
  banner.hidden = false;
  $('banner-retry').hidden = !reloadView;
  $('banner-text').textContent = "Can't reach the server. You're still signed in; we'll keep trying.";
  scheduleRetry(null);
}

function hideBanner() {
  $('banner').hidden = true;
}

/**
 * "Try again in N s" from Retry-After, counting down; the submit button
 * waits too, so a keyboard user cannot hammer it.
 * @param {HTMLElement | null} el @param {HTMLButtonElement | null} submit @param {number} seconds
 */
function countdown(el, submit, seconds) {
  if (!el) return;
  let left = Math.max(1, Math.ceil(seconds));
  const tick = () => {
    if (left <= 0) {
      el.textContent = '';
      if (submit) submit.disabled = false;
      return;
    }
    el.textContent = `Too many attempts. Try again in ${left} s.`;
    left -= 1;
    setTimeout(tick, 1000);
  };
  if (submit) submit.disabled = true;
  tick();
}

/** Whether the server is ready again (the store answers). */
async function probe() {
  let res;
  try {
    res = await fetch('/readyz', { cache: 'no-store' });
  } catch {
    throw Object.assign(new Error('offline'), { offline: true });
  }
  return res.ok;
}

$('banner-retry').addEventListener('click', () => retryNow());
$('maintenance-retry').addEventListener('click', () => retryNow());

// ---------------------------------------------------------------------------
// Small DOM helpers.

/** @param {string} tag @param {Record<string, string>} [attrs] @param {(Node | string)[]} [children] */
function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

/** Unix seconds as a <time> with the local date. @param {number | null | undefined} s */
function time(s) {
  if (typeof s !== 'number') return document.createTextNode('—');
  const d = new Date(s * 1000);
  return el('time', { datetime: d.toISOString() }, [d.toLocaleString()]);
}

/** @param {HTMLFormElement} form */
function fieldsOf(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** @param {HTMLInputElement} input @param {boolean} bad */
function markInvalid(input, bad) {
  if (bad) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

// ---------------------------------------------------------------------------
// Pages.

function initLogin() {
  const reason = params.get('reason');
  const notice = $('login-notice');
  if (reason) {
    // `reason` comes from the URL: only our own words are ever shown.
    notice.textContent = Object.hasOwn(LOGIN_NOTICES, reason) ? LOGIN_NOTICES[reason] : 'Please sign in to continue.';
    notice.hidden = false;
  }
  const next = safeNext(params.get('next'));
  // Keep `next` when switching to the register page.
  $('to-register').setAttribute('href', `/register?${new URLSearchParams({ next })}`);
  const form = /** @type {HTMLFormElement} */ ($('login-form'));
  const submit = /** @type {HTMLButtonElement} */ ($('login-submit'));
  const error = $('login-error');
  reloadView = async () => {
    const ready = await probe().catch(() => false);
    if (ready) recovered();
    else scheduleRetry($('maintenance-status'));
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const { email, password } = fieldsOf(form);
    const emailInput = /** @type {HTMLInputElement} */ ($('login-email'));
    const pwInput = /** @type {HTMLInputElement} */ ($('login-password'));
    markInvalid(emailInput, !email);
    markInvalid(pwInput, !password);
    if (!email || !password) {
      error.textContent = 'Enter your email and password.';
      (!email ? emailInput : pwInput).focus();
      return;
    }
    submit.disabled = true;
    const ok = await guarded(() => client.login({ email: String(email), password: String(password) }), error, submit);
    if (!isCountingDown(error)) submit.disabled = false;
    if (ok) location.assign(next);
    else if (error.textContent && !isCountingDown(error)) pwInput.focus();
  });
  $('login-email').focus();
}

/** @param {HTMLElement} el */
function isCountingDown(el) {
  return (el.textContent ?? '').startsWith('Too many attempts');
}

function initRegister() {
  const next = safeNext(params.get('next'));
  $('to-login').setAttribute('href', `/login?${new URLSearchParams({ next })}`);
  const form = /** @type {HTMLFormElement} */ ($('register-form'));
  const submit = /** @type {HTMLButtonElement} */ ($('register-submit'));
  const error = $('register-error');
  reloadView = async () => {
    const ready = await probe().catch(() => false);
    if (ready) recovered();
    else scheduleRetry($('maintenance-status'));
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const { email, password } = fieldsOf(form);
    const emailInput = /** @type {HTMLInputElement} */ ($('register-email'));
    const pwInput = /** @type {HTMLInputElement} */ ($('register-password'));
    const short = String(password ?? '').length < 8;
    markInvalid(emailInput, !email);
    markInvalid(pwInput, short);
    if (!email || short) {
      error.textContent = !email ? 'Enter your email address.' : 'The password needs at least 8 characters.';
      (!email ? emailInput : pwInput).focus();
      return;
    }
    submit.disabled = true;
    const r = await guarded(() => client.register({ email: String(email), password: String(password) }), error, submit);
    if (!isCountingDown(error)) submit.disabled = false;
    if (r?.status === 'signed_in') location.assign(next);
    else if (r?.status === 'verification_sent') {
      const notice = $('register-notice');
      notice.textContent = 'Almost there: we sent you an email. Follow its link to confirm your address.';
      notice.hidden = false;
    } else if (error.textContent && !isCountingDown(error)) {
      emailInput.focus();
    }
  });
  $('register-email').focus();
}

function initMaintenance() {
  const status = $('maintenance-page-status');
  const next = safeNext(params.get('next'));
  reloadView = async () => {
    let ready = false;
    try {
      ready = await probe();
    } catch {
      ready = false;
    }
    if (ready) location.assign(next);
    else scheduleRetry(status);
  };
  $('maintenance-page-retry').addEventListener('click', () => retryNow());
  scheduleRetry(status);
}

function initDashboard() {
  const root = $('dashboard');
  const accountError = $('account-error');
  const sessionsStatus = $('sessions-status');

  async function load() {
    const data = await guarded(async () => {
      const me = await client.me();
      const sessions = await client.sessions();
      return { me, sessions };
    }, accountError);
    if (!data) return false;
    render(data.me, data.sessions);
    root.setAttribute('aria-busy', 'false');
    return true;
  }
  reloadView = load;

  function render(me, sessions) {
    const who = $('whoami');
    who.replaceChildren(
      'Signed in as ',
      el('strong', {}, [me.user.email ?? me.user.external_id ?? me.user.id]),
      '. Account created ',
      time(me.user.created_at),
      '.',
    );
    const live = sessions.filter((s) => s.active);
    const ended = sessions.filter((s) => !s.active);
    $('sessions-body').replaceChildren(...live.map(sessionRow));
    $('ended-body').replaceChildren(...ended.map(endedRow));
    $('ended').hidden = ended.length === 0;
    $('ended-empty').hidden = ended.length !== 0;
    $('logout-others').hidden = live.length < 2;
  }

  function sessionRow(s) {
    const device = el('td', {}, [s.device]);
    if (s.current) device.append(el('span', { class: 'badge' }, ['This device']));
    const actions = el('td');
    if (!s.current) {
      const b = el('button', { type: 'button', class: 'secondary', 'aria-label': `Sign out ${s.device} (${s.ip ?? 'unknown IP'})`, 'data-session': s.id }, ['Sign out']);
      b.addEventListener('click', () => revoke(s));
      actions.append(b);
    }
    return el('tr', { 'data-session': s.id, ...(s.current ? { 'data-current': 'true' } : {}) }, [
      device,
      el('td', {}, [s.ip ?? '—']),
      el('td', {}, [time(s.created_at)]),
      el('td', {}, [time(s.last_seen_at)]),
      actions,
    ]);
  }

  function endedRow(s) {
    const reason = s.revoke_reason ?? '';
    return el('tr', { 'data-session': s.id, 'data-reason': reason }, [
      el('td', {}, [s.device]),
      el('td', {}, [s.ip ?? '—']),
      el('td', {}, [time(s.revoked_at ?? s.expires_at)]),
      el('td', {}, [Object.hasOwn(REASONS, reason) ? REASONS[reason] : 'Ended']),
    ]);
  }

  async function revoke(s) {
    sessionsStatus.textContent = '';
    const ok = await guarded(async () => {
      await client.revokeSession(s.id);
      return true;
    }, accountError);
    if (!ok || !client.signedIn) return;
    await load();
    sessionsStatus.textContent = `Signed out ${s.device}.`;
    $('sessions-title').setAttribute('tabindex', '-1');
    $('sessions-title').focus();
  }

  $('reload').addEventListener('click', () => load());
  $('logout').addEventListener('click', async () => {
    const done = await guarded(async () => {
      await client.logout();
      return true;
    }, accountError);
    if (done) location.assign('/login?reason=logout');
  });
  $('logout-all').addEventListener('click', async () => {
    const done = await guarded(async () => {
      await client.logoutAll();
      return true;
    }, accountError);
    if (done) location.assign('/login?reason=logout_all');
  });
  $('logout-others').addEventListener('click', async () => {
    const done = await guarded(async () => {
      await client.logoutOthers();
      return true;
    }, accountError);
    if (!done) return;
    await load();
    sessionsStatus.textContent = 'Your other devices were signed out.';
  });

  const pwForm = /** @type {HTMLFormElement} */ ($('password-form'));
  pwForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const error = $('password-error');
    const status = $('password-status');
    status.textContent = '';
    const f = fieldsOf(pwForm);
    const cur = /** @type {HTMLInputElement} */ ($('current-password'));
    const neu = /** @type {HTMLInputElement} */ ($('new-password'));
    const rep = /** @type {HTMLInputElement} */ ($('confirm-password'));
    [cur, neu, rep].forEach((i) => markInvalid(i, false));
    let problem = null;
    if (!f.current_password) problem = [cur, 'Enter your current password.'];
    else if (String(f.new_password ?? '').length < 8) problem = [neu, 'The new password needs at least 8 characters.'];
    else if (f.new_password !== f.confirm_password) problem = [rep, 'The two new passwords differ.'];
    if (problem) {
      markInvalid(problem[0], true);
      error.textContent = problem[1];
      problem[0].focus();
      return;
    }
    const done = await guarded(async () => {
      await client.changePassword({ currentPassword: String(f.current_password), newPassword: String(f.new_password) });
      return true;
    }, error);
    if (!done) {
      if (error.textContent) {
        markInvalid(cur, true);
        cur.focus();
      }
      return;
    }
    pwForm.reset();
    status.textContent = 'Password changed. Your other devices were signed out.';
    await load();
  });

  load();
}

const PAGES = {
  login: initLogin,
  register: initRegister,
  dashboard: initDashboard,
  maintenance: initMaintenance,
};
PAGES[page]?.();
