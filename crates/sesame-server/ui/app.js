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
  isMfaRequiredError,
  isReauthenticationRequiredError,
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
  account_deleted: 'Your account was deleted. Goodbye!',
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
      // The server's messages read after the field's name ("is too common; choose another").
      const FIELDS = { password: 'The password', new_password: 'The new password', email: 'The email address', code: 'The code' };
      const sentence = (x) => {
        if (typeof x?.message !== 'string' || !x.message) return '';
        const subject = typeof x.field === 'string' && Object.hasOwn(FIELDS, x.field) ? FIELDS[x.field] : '';
        const text = subject && /^[a-z]/.test(x.message) ? `${subject} ${x.message}` : x.message;
        return /[.!?]$/.test(text) ? text : `${text}.`;
      };
      const text = errors.map(sentence).filter(Boolean).join(' ');
      return text || 'Please check the form.';
    }
    case 'account_disabled':
      return 'This account is disabled.';
    case 'email_not_verified':
      return 'Confirm your email address first: follow the link we emailed you.';
    case 'session_limit_reached':
      return 'You are signed in on too many devices. Sign out one of them first.';
    case 'csrf_rejected':
      return 'The server refused a request from this page (origin not allowed).';
    case 'not_found':
      return 'That session no longer exists.';
    case 'invalid_mfa_code':
      return 'That code is not right (or was used already). Check the app and try again.';
    case 'mfa_challenge_invalid':
      return 'That sign-in took too long or had too many tries. Sign in again.';
    case 'link_invalid':
      return 'This link is no longer valid: it was used already or it expired.';
    case 'reauthentication_required':
      return 'Confirm it is you first.';
    default:
      return e.message || 'Something went wrong. Please try again.';
  }
}

// ---------------------------------------------------------------------------
// The redirect policy.

/** Pages that never need a session (a lost one is no reason to leave them). */
const PUBLIC_PAGES = new Set(['login', 'register', 'verify', 'forgot', 'reset', 'maintenance']);

/** @param {string | null} reason */
function toLogin(reason) {
  if (PUBLIC_PAGES.has(page)) return;
  const next = location.pathname + location.search;
  const q = new URLSearchParams({ next });
  if (reason) q.set('reason', reason);
  location.replace(`/login?${q}`);
}

/**
 * The one-time token of a mail link, from the URL fragment (`#token=…`),
 * which never reaches the server or a Referer. Cleared from the address bar
 * (and history) once read.
 */
function takeFragmentToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  return token && token.length <= 512 ? token : null;
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

/**
 * A field check before sending: marks `input` by `ok`; when not ok, shows
 * `message` in `error` and focuses the field.
 * @param {HTMLInputElement} input
 * @param {boolean} ok
 * @param {HTMLElement} error
 * @param {string} message
 * @returns {boolean} `ok`
 */
function requireField(input, ok, error, message) {
  markInvalid(input, !ok);
  if (!ok) {
    error.textContent = message;
    input.focus();
  }
  return ok;
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
    resend.hidden = true;
    $('login-resend-status').textContent = '';
    let ok;
    try {
      error.textContent = '';
      ok = await client.login({ email: String(email), password: String(password) });
      recovered();
    } catch (e) {
      if (isMfaRequiredError(e)) {
        submit.disabled = false;
        return showMfa(e.challenge);
      }
      handleError(e, error, submit);
      if (isSesameError(e) && e.code === 'email_not_verified') {
        pendingEmail = String(email);
        resend.hidden = false;
      }
    }
    if (!isCountingDown(error)) submit.disabled = false;
    if (ok) location.assign(next);
    else if (error.textContent && !isCountingDown(error)) pwInput.focus();
  });

  // email_not_verified: the password was right; offer a new link.
  let pendingEmail = '';
  const resend = /** @type {HTMLButtonElement} */ ($('login-resend'));
  resend.addEventListener('click', async () => {
    const status = $('login-resend-status');
    const done = await guarded(async () => {
      await client.resendVerification(pendingEmail);
      return true;
    }, error, resend);
    if (done) {
      status.textContent = `We sent a new link to ${pendingEmail}. Follow it, then sign in.`;
      resend.hidden = true;
    }
  });

  // The second step, after `mfa_required`.
  const mfaForm = /** @type {HTMLFormElement} */ ($('mfa-form'));
  const mfaSubmit = /** @type {HTMLButtonElement} */ ($('mfa-submit'));
  const mfaInput = /** @type {HTMLInputElement} */ ($('mfa-code'));
  const mfaError = $('mfa-error');
  let challenge = '';
  /** @param {string} c */
  function showMfa(c) {
    challenge = c;
    form.hidden = true;
    mfaForm.hidden = false;
    mfaForm.reset();
    mfaError.textContent = '';
    markInvalid(mfaInput, false);
    $('login-title').textContent = 'Two-step sign-in';
    mfaInput.focus();
  }
  /** @param {string} [message] */
  function backToPassword(message) {
    challenge = '';
    mfaForm.hidden = true;
    form.hidden = false;
    $('login-title').textContent = 'Sign in';
    /** @type {HTMLInputElement} */ ($('login-password')).value = '';
    error.textContent = message ?? '';
    $('login-password').focus();
  }
  $('mfa-back').addEventListener('click', () => backToPassword());
  mfaForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const code = mfaInput.value.trim().replace(/\s+/g, '');
    if (!requireField(mfaInput, code !== '', mfaError, 'Enter the code from your app, or a recovery code.')) return;
    mfaSubmit.disabled = true;
    let ok;
    try {
      mfaError.textContent = '';
      ok = await client.loginMfa(challenge, code);
      recovered();
    } catch (e) {
      if (isSesameError(e) && e.code === 'mfa_challenge_invalid') {
        mfaSubmit.disabled = false;
        return backToPassword(messageFor(e));
      }
      handleError(e, mfaError, mfaSubmit);
    }
    if (!isCountingDown(mfaError)) mfaSubmit.disabled = false;
    if (ok) return location.assign(next);
    if (mfaError.textContent && !isCountingDown(mfaError)) {
      markInvalid(mfaInput, true);
      mfaInput.select();
      mfaInput.focus();
    }
  });
  $('login-email').focus();
}

/** A page without a session: retry means "is the server back?". */
function probeView() {
  reloadView = async () => {
    const ready = await probe().catch(() => false);
    if (ready) recovered();
    else scheduleRetry($('maintenance-status'));
  };
}

function initVerify() {
  probeView();
  const status = $('verify-status');
  const token = takeFragmentToken();
  const resendForm = /** @type {HTMLFormElement} */ ($('verify-resend-form'));
  const error = $('verify-error');
  const resendButton = /** @type {HTMLButtonElement} */ ($('verify-resend'));
  function failed(text) {
    status.textContent = text;
    resendForm.hidden = false;
    $('verify-email').focus();
  }
  resendForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($('verify-email'));
    const email = input.value.trim();
    if (!requireField(input, email !== '', error, 'Enter your email address.')) return;
    $('verify-notice').textContent = '';
    const done = await guarded(async () => {
      await client.resendVerification(email);
      return true;
    }, error, resendButton);
    if (done) $('verify-notice').textContent = 'If the address has an account that still needs confirming, a new link is on its way.';
    else if (error.textContent && !isCountingDown(error)) input.focus();
  });
  if (!token) {
    failed('This page needs the link from your email. Open the link again, or get a new one.');
    return;
  }
  (async () => {
    try {
      await client.verifyEmail(token);
      recovered();
      status.textContent = 'Your email address is confirmed. Thank you!';
      $('verify-ok').hidden = false;
      // Signed in in this browser? Then the dashboard; else the login page.
      const signedIn = await client.restore().catch(() => false);
      $('verify-continue').setAttribute('href', signedIn ? '/dashboard' : '/login');
      $('verify-continue').textContent = signedIn ? 'Go to your account' : 'Sign in';
      $('verify-title').focus();
    } catch (e) {
      if (isSesameError(e) && (e.code === 'link_invalid' || e.code === 'invalid_request')) {
        failed('This link is no longer valid: it was used already, it expired, or the address changed since.');
      } else {
        status.textContent = '';
        handleError(e, status);
      }
    }
  })();
}

function initForgot() {
  probeView();
  const form = /** @type {HTMLFormElement} */ ($('forgot-form'));
  const submit = /** @type {HTMLButtonElement} */ ($('forgot-submit'));
  const error = $('forgot-error');
  const notice = $('forgot-notice');
  const input = /** @type {HTMLInputElement} */ ($('forgot-email'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    notice.textContent = '';
    const email = input.value.trim();
    if (!requireField(input, email !== '', error, 'Enter your email address.')) return;
    submit.disabled = true;
    const done = await guarded(async () => {
      await client.forgotPassword(email);
      return true;
    }, error, submit);
    if (!isCountingDown(error)) submit.disabled = false;
    if (done) {
      notice.textContent = `If ${email} has an account, a link to set a new password is on its way. It works for 30 minutes.`;
    } else if (error.textContent && !isCountingDown(error)) {
      markInvalid(input, true);
      input.focus();
    }
  });
  input.focus();
}

function initReset() {
  probeView();
  const token = takeFragmentToken();
  const form = /** @type {HTMLFormElement} */ ($('reset-form'));
  const submit = /** @type {HTMLButtonElement} */ ($('reset-submit'));
  const error = $('reset-error');
  const pw = /** @type {HTMLInputElement} */ ($('reset-password'));
  const rep = /** @type {HTMLInputElement} */ ($('reset-confirm'));
  /** @param {string} [text] */
  function invalid(text) {
    form.hidden = true;
    if (text) $('reset-invalid-text').textContent = text;
    $('reset-invalid').hidden = false;
    $('reset-forgot').focus();
  }
  if (!token) {
    invalid('This page needs the link from your email. Open the link again, or ask for a new one.');
    return;
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    markInvalid(pw, false);
    markInvalid(rep, false);
    let problem = null;
    if (pw.value.length < 8) problem = [pw, 'The new password needs at least 8 characters.'];
    else if (pw.value !== rep.value) problem = [rep, 'The two passwords differ.'];
    if (problem) {
      markInvalid(problem[0], true);
      error.textContent = problem[1];
      problem[0].focus();
      return;
    }
    submit.disabled = true;
    let done = false;
    try {
      error.textContent = '';
      await client.resetPassword(token, pw.value);
      recovered();
      done = true;
    } catch (e) {
      if (isSesameError(e) && e.code === 'link_invalid') {
        submit.disabled = false;
        return invalid();
      }
      // invalid_request (too short, too common…): the link is still good.
      handleError(e, error, submit);
    }
    if (!isCountingDown(error)) submit.disabled = false;
    if (done) {
      form.hidden = true;
      $('reset-status').textContent = 'Your password is set. Every session was signed out, on every device.';
      $('reset-done').hidden = false;
      $('reset-login').focus();
    } else if (error.textContent && !isCountingDown(error)) {
      markInvalid(pw, true);
      pw.focus();
    }
  });
  pw.focus();
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
    renderSecurity(me.user);
  }

  /** The signed-in user, as last loaded. */
  let current = null;

  function renderSecurity(user) {
    current = user;
    const state = $('email-state');
    if (user.email) {
      state.replaceChildren(
        el('strong', {}, [user.email]),
        user.email_verified ? el('span', { class: 'badge', 'data-verified': 'true' }, ['Verified']) : el('span', { class: 'badge unverified', 'data-verified': 'false' }, ['Not verified yet']),
      );
    } else {
      state.textContent = 'No email address on this account.';
    }
    $('resend-verification').hidden = !user.email || user.email_verified;
    const mfa = Boolean(user.mfa_enabled);
    $('totp-state').textContent = mfa
      ? 'On: signing in asks for a code from your authenticator app.'
      : 'Off: add a code from an authenticator app to your password.';
    $('totp-enrol').hidden = mfa;
    $('totp-remove').hidden = !mfa;
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

  // --- Re-authentication: one small form, shown next to the action that
  // needed it; satisfying it retries that action. ---
  const reauthForm = /** @type {HTMLFormElement} */ ($('reauth-form'));
  const reauthInput = /** @type {HTMLInputElement} */ ($('reauth-input'));
  const reauthError = $('reauth-error');
  /** @type {{ resolve: (ok: boolean) => void, focusBack: HTMLElement | null } | null} */
  let reauthPending = null;
  let reauthWithCode = false;

  /** @param {boolean} code */
  function reauthMode(code) {
    reauthWithCode = code;
    reauthInput.value = '';
    reauthInput.type = code ? 'text' : 'password';
    reauthInput.setAttribute('autocomplete', code ? 'one-time-code' : 'current-password');
    $('reauth-label').textContent = code ? 'Code from your authenticator app (or a recovery code)' : 'Your password';
    $('reauth-switch').hidden = !code;
  }

  /**
   * Asks for the password (or a code), placed after `anchor`.
   * @param {HTMLElement} anchor @returns {Promise<boolean>} whether it was satisfied
   */
  function askReauth(anchor) {
    reauthPending?.resolve(false);
    anchor.after(reauthForm);
    reauthMode(Boolean(current?.mfa_enabled));
    reauthError.textContent = '';
    markInvalid(reauthInput, false);
    reauthForm.hidden = false;
    reauthInput.focus();
    return new Promise((resolve) => {
      reauthPending = { resolve, focusBack: /** @type {HTMLElement | null} */ (document.activeElement) };
    });
  }
  /** @param {boolean} ok */
  function closeReauth(ok) {
    const p = reauthPending;
    reauthPending = null;
    reauthForm.hidden = true;
    reauthInput.value = '';
    p?.resolve(ok);
  }
  $('reauth-switch').addEventListener('click', () => {
    reauthMode(false);
    reauthInput.focus();
  });
  $('reauth-cancel').addEventListener('click', () => closeReauth(false));
  reauthForm.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') closeReauth(false);
  });
  reauthForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = reauthWithCode ? reauthInput.value.trim().replace(/\s+/g, '') : reauthInput.value;
    if (!value) {
      markInvalid(reauthInput, true);
      reauthError.textContent = reauthWithCode ? 'Enter the code from your app.' : 'Enter your password.';
      reauthInput.focus();
      return;
    }
    const submit = /** @type {HTMLButtonElement} */ ($('reauth-submit'));
    submit.disabled = true;
    const ok = await guarded(() => client.reauthenticate(reauthWithCode ? { code: value } : { password: value }), reauthError, submit);
    if (!isCountingDown(reauthError)) submit.disabled = false;
    if (ok) return closeReauth(true);
    if (reauthError.textContent && !isCountingDown(reauthError)) {
      markInvalid(reauthInput, true);
      reauthInput.select();
      reauthInput.focus();
    }
  });

  /**
   * Runs an action that may need a fresh password or factor check: on 403
   * `reauthentication_required` the prompt appears after `anchor`, and the
   * action runs again once it is satisfied.
   * @template T @param {() => Promise<T>} fn @param {HTMLElement} errorEl @param {HTMLElement} anchor
   * @returns {Promise<T | undefined>}
   */
  async function withReauth(fn, errorEl, anchor) {
    for (let i = 0; i < 3; i++) {
      errorEl.textContent = '';
      try {
        const r = await fn();
        recovered();
        return r;
      } catch (e) {
        if (!isReauthenticationRequiredError(e)) {
          handleError(e, errorEl);
          return undefined;
        }
        if (!(await askReauth(anchor))) return undefined;
      }
    }
    return undefined;
  }

  // --- Email ---
  const resendButton = /** @type {HTMLButtonElement} */ ($('resend-verification'));
  resendButton.addEventListener('click', async () => {
    $('resend-status').textContent = '';
    const done = await guarded(async () => {
      await client.resendVerification();
      return true;
    }, $('account-error'), resendButton);
    if (done) $('resend-status').textContent = `We sent a new confirmation link to ${current?.email ?? 'your address'}.`;
  });

  const emailForm = /** @type {HTMLFormElement} */ ($('email-form'));
  emailForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($('new-email'));
    const error = $('email-error');
    const status = $('email-status');
    status.textContent = '';
    const email = input.value.trim();
    if (!requireField(input, email !== '', error, 'Enter the new address.')) return;
    const user = await withReauth(() => client.changeEmail(email), error, emailForm);
    if (!user) {
      if (error.textContent) {
        markInvalid(input, true);
        input.focus();
      }
      return;
    }
    emailForm.reset();
    renderSecurity(user);
    status.textContent = `Your address is now ${user.email ?? email}. We sent it a confirmation link.`;
    status.setAttribute('tabindex', '-1');
    status.focus();
  });

  // --- Two-step sign-in ---
  const totpError = $('totp-error');
  const totpStatus = $('totp-status');
  const setup = $('totp-setup');
  $('totp-enrol').addEventListener('click', async () => {
    totpStatus.textContent = '';
    const enrolment = await withReauth(() => client.beginTotp(), totpError, $('totp-enrol').parentElement ?? $('totp-enrol'));
    if (!enrolment) return;
    const qr = enrolment.qr_svg.startsWith('data:image/svg+xml;base64,') ? enrolment.qr_svg : '';
    /** @type {HTMLImageElement} */ ($('totp-qr')).src = qr;
    $('totp-qr').hidden = !qr;
    $('totp-secret').textContent = enrolment.secret;
    setup.hidden = false;
    $('totp-enrol').hidden = true;
    $('totp-confirm-error').textContent = '';
    /** @type {HTMLInputElement} */ ($('totp-code')).value = '';
    $('totp-code').focus();
  });
  $('totp-cancel').addEventListener('click', () => {
    setup.hidden = true;
    $('totp-secret').textContent = '';
    $('totp-enrol').hidden = false;
    $('totp-enrol').focus();
  });
  const confirmForm = /** @type {HTMLFormElement} */ ($('totp-confirm-form'));
  confirmForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($('totp-code'));
    const error = $('totp-confirm-error');
    const code = input.value.replace(/\s+/g, '');
    if (!requireField(input, /^\d{6}$/.test(code), error, 'Enter the 6 digits the app shows.')) return;
    const codes = await withReauth(() => client.confirmTotp(code), error, confirmForm);
    if (!codes) {
      if (error.textContent) {
        markInvalid(input, true);
        input.select();
        input.focus();
      }
      return;
    }
    setup.hidden = true;
    $('totp-secret').textContent = '';
    /** @type {HTMLImageElement} */ ($('totp-qr')).removeAttribute('src');
    $('recovery-codes').replaceChildren(...codes.map((c) => el('li', {}, [el('code', {}, [c])])));
    $('recovery').hidden = false;
    $('recovery-title').focus();
    if (current) renderSecurity({ ...current, mfa_enabled: true });
    totpStatus.textContent = 'Two-step sign-in is on.';
  });
  $('recovery-hide').addEventListener('click', () => {
    $('recovery-codes').replaceChildren();
    $('recovery').hidden = true;
    $('totp-title').setAttribute('tabindex', '-1');
    $('totp-title').focus();
  });
  $('totp-remove').addEventListener('click', async () => {
    totpStatus.textContent = '';
    const done = await withReauth(
      async () => {
        await client.removeTotp();
        return true;
      },
      totpError,
      $('totp-remove').parentElement ?? $('totp-remove'),
    );
    if (!done) return;
    if (current) renderSecurity({ ...current, mfa_enabled: false });
    totpStatus.textContent = 'Two-step sign-in is off.';
    $('totp-enrol').focus();
  });

  // --- Delete account ---
  $('delete-start').addEventListener('click', () => {
    $('delete-confirm').hidden = false;
    $('delete-start').hidden = true;
    $('delete-no').focus();
  });
  $('delete-no').addEventListener('click', () => {
    $('delete-confirm').hidden = true;
    $('delete-start').hidden = false;
    $('delete-start').focus();
  });
  $('delete-yes').addEventListener('click', async () => {
    const done = await withReauth(
      async () => {
        await client.deleteAccount();
        return true;
      },
      $('delete-error'),
      $('delete-confirm'),
    );
    if (done) location.assign('/login?reason=account_deleted');
  });

  load();
}

const PAGES = {
  login: initLogin,
  register: initRegister,
  verify: initVerify,
  forgot: initForgot,
  reset: initReset,
  dashboard: initDashboard,
  maintenance: initMaintenance,
};
PAGES[page]?.();
