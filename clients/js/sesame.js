// Sesame browser client (DESIGN §7): plain ES module, no dependencies, no
// build step. Types are in sesame.d.ts.
//
// Design decisions, each for a reason:
// - The access token lives in a closure, never in storage: a script that can
//   read localStorage (an XSS, an extension) must not find a bearer token.
//   The refresh token is the HttpOnly `__Host-sesame_rt` cookie the server
//   sets (hybrid transport), so no tab can read it either.
// - Refreshes are scheduled from `expires_in` measured with a monotonic
//   clock (`performance.now()`) at receipt, never from the token's `exp`
//   against `Date.now()`: a user's wall clock may be hours off.
// - Tabs share the cookie jar, so two tabs refreshing at once present the
//   same refresh token. A Web Lock makes them take turns, and the new access
//   token is shared over a BroadcastChannel so the second tab need not rotate
//   at all. Without Web Locks the server's grace window answers the second
//   tab with the same successor, so correctness never depends on the lock.

const LOCK_PREFIX = 'sesame-refresh-';
const CHANNEL_PREFIX = 'sesame-';
/** Scheduled refreshes of one origin happen at most this often (ms). */
const MIN_REFRESH_INTERVAL_MS = 5000;
/** How long a new tab waits for another tab to hand it a token (ms). */
const ASK_TIMEOUT_MS = 150;
/** How long a tab that found the lock taken waits for the holder's news (ms). */
const CONTENDED_WAIT_MS = 2000;
/** A token with less than this left is refreshed before use (ms). */
const EXPIRY_MARGIN_MS = 5000;
/** Back-off for scheduled refreshes that failed for transient reasons (ms). */
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
/** Problem codes on a 401 that mean the access token (or session) is no good. */
const TOKEN_CODES = new Set(['invalid_token', 'session_revoked', 'session_expired']);

/**
 * When this client (or any client of the same origin in this document) last
 * rotated, by origin: "at most once per 5 s per origin" holds even if an app
 * creates two clients for one server.
 * @type {Map<string, number>}
 */
const lastRotation = new Map();

// ---------------------------------------------------------------------------
// Errors

/** Any failure the client reports; `status` and `code` come from the server's problem+json. */
export class SesameError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, code?: string | null, problem?: any, retryAfter?: number | null, cause?: unknown }} [info]
   */
  constructor(message, info = {}) {
    super(message, info.cause === undefined ? undefined : { cause: info.cause });
    this.name = 'SesameError';
    /** HTTP status, 0 when no answer arrived. */
    this.status = info.status ?? 0;
    /** The problem's stable `code`, if the server sent one. */
    this.code = info.code ?? null;
    /** The whole problem+json body, if any. */
    this.problem = info.problem ?? null;
    /** Seconds from `Retry-After`, if the server sent it. */
    this.retryAfter = info.retryAfter ?? null;
  }
}

/** The session is over (refresh refused, revoked, logged out in another tab): sign in again. */
export class SessionLostError extends SesameError {
  /** @param {string} message @param {ConstructorParameters<typeof SesameError>[1] & { reason?: string | null }} [info] */
  constructor(message, info = {}) {
    super(message, info);
    this.name = 'SessionLostError';
    /** Why, in the server's words (`logout`, `revoked_by_user`, `reuse_detected`, …) when known. */
    this.reason = info.reason ?? null;
  }
}

/** The server answered 5xx or `storage_unavailable`: show a maintenance view and retry later. */
export class MaintenanceError extends SesameError {
  /** @param {string} message @param {ConstructorParameters<typeof SesameError>[1]} [info] */
  constructor(message, info = {}) {
    super(message, info);
    this.name = 'MaintenanceError';
  }
}

/** No answer at all (offline, server unreachable): the session is kept; retry. */
export class OfflineError extends SesameError {
  /** @param {string} message @param {ConstructorParameters<typeof SesameError>[1]} [info] */
  constructor(message, info = {}) {
    super(message, info);
    this.name = 'OfflineError';
  }
}

/** 429: wait `retryAfter` seconds. */
export class RateLimitedError extends SesameError {
  /** @param {string} message @param {ConstructorParameters<typeof SesameError>[1]} [info] */
  constructor(message, info = {}) {
    super(message, info);
    this.name = 'RateLimitedError';
  }
}

/**
 * 401 `mfa_required`: the password was right and the account has a second
 * factor. Finish with `client.loginMfa(error.challenge, code)`.
 */
export class MfaRequiredError extends SesameError {
  /** @param {string} message @param {ConstructorParameters<typeof SesameError>[1]} [info] */
  constructor(message, info = {}) {
    super(message, info);
    this.name = 'MfaRequiredError';
    /** The one-time challenge (`smc_…`), valid a few minutes. */
    this.challenge = typeof info.problem?.challenge === 'string' ? info.problem.challenge : '';
    /** Accepted methods, e.g. `['totp', 'recovery_code']`. */
    this.methods = Array.isArray(info.problem?.methods) ? info.problem.methods.filter((/** @type {unknown} */ m) => typeof m === 'string') : [];
  }
}

/**
 * 403 `reauthentication_required`: the last password or factor check is
 * older than `max_auth_age`. Call `client.reauthenticate(…)`, then retry.
 */
export class ReauthenticationRequiredError extends SesameError {
  /** @param {string} message @param {ConstructorParameters<typeof SesameError>[1]} [info] */
  constructor(message, info = {}) {
    super(message, info);
    this.name = 'ReauthenticationRequiredError';
  }
}

/** @param {unknown} e @returns {e is SesameError} */
export const isSesameError = (e) => e instanceof SesameError;
/** @param {unknown} e @returns {e is SessionLostError} */
export const isSessionLostError = (e) => e instanceof SessionLostError;
/** @param {unknown} e @returns {e is MaintenanceError} */
export const isMaintenanceError = (e) => e instanceof MaintenanceError;
/** @param {unknown} e @returns {e is OfflineError} */
export const isOfflineError = (e) => e instanceof OfflineError;
/** @param {unknown} e @returns {e is RateLimitedError} */
export const isRateLimitedError = (e) => e instanceof RateLimitedError;
/** @param {unknown} e @returns {e is MfaRequiredError} */
export const isMfaRequiredError = (e) => e instanceof MfaRequiredError;
/** @param {unknown} e @returns {e is ReauthenticationRequiredError} */
export const isReauthenticationRequiredError = (e) => e instanceof ReauthenticationRequiredError;

// ---------------------------------------------------------------------------
// Helpers

/**
 * A `next` parameter made safe to navigate to: only a path that starts with
 * exactly one `/` (so never `//evil.example`, `/\evil.example` or
 * `https://…`), without control characters (the URL parser drops tabs and
 * newlines, which would turn `/\t/evil` into `//evil`). Anything else gives
 * `fallback`.
 * @param {string | null | undefined} next
 * @param {string} [fallback]
 * @returns {string}
 */
export function safeNext(next, fallback = '/dashboard') {
  if (typeof next !== 'string' || next.length === 0 || next.length > 2048) return fallback;
  if (next[0] !== '/' || next[1] === '/' || next[1] === '\\') return fallback;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(next)) return fallback;
  try {
    const base = 'http://sesame.invalid';
    const u = new URL(next, base);
    if (u.origin !== base) return fallback;
    const out = u.pathname + u.search + u.hash;
    // `/a/../..//evil.example` normalises to `//evil.example`.
    return out.startsWith('//') ? fallback : out;
  } catch {
    return fallback;
  }
}

/**
 * `Retry-After` in seconds (delta-seconds only; Sesame never sends a date).
 * @param {Response} res
 * @returns {number | null}
 */
function retryAfter(res) {
  const v = res.headers.get('retry-after');
  if (v === null || !/^\d+$/.test(v.trim())) return null;
  return Number(v.trim());
}

/**
 * The problem+json body of a failed answer, or null.
 * @param {Response} res
 * @returns {Promise<any>}
 */
async function problemOf(res) {
  const type = res.headers.get('content-type') ?? '';
  if (!type.includes('json')) return null;
  try {
    return await res.clone().json();
  } catch {
    return null;
  }
}

/**
 * The error for a non-2xx answer, classified by the redirect policy.
 * @param {Response} res
 * @param {any} problem
 * @returns {SesameError}
 */
function errorFor(res, problem) {
  const code = problem && typeof problem.code === 'string' ? problem.code : null;
  const info = {
    status: res.status,
    code,
    problem,
    retryAfter: retryAfter(res),
  };
  const message = (problem && (problem.detail || problem.title)) || `HTTP ${res.status}`;
  if (res.status === 429) return new RateLimitedError(message, info);
  if (res.status === 401 && code === 'mfa_required') return new MfaRequiredError(message, info);
  if (res.status === 403 && code === 'reauthentication_required') return new ReauthenticationRequiredError(message, info);
  if (res.status >= 500 || code === 'storage_unavailable') return new MaintenanceError(message, info);
  return new SesameError(message, info);
}

/**
 * Decodes a JWT's `exp` without verifying it. Only used to order two tokens
 * of the same session (both from the same server clock), never to decide
 * when to refresh.
 * @param {string} jwt
 * @returns {number}
 */
function expOf(jwt) {
  try {
    const part = jwt.split('.')[1] ?? '';
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp : 0;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------
// The client

/**
 * Creates a client for the Sesame server at `baseUrl`.
 * @param {import('./sesame.js').ClientOptions} options
 * @returns {import('./sesame.js').SesameClient}
 */
export function createClient(options) {
  if (!options || typeof options.baseUrl !== 'string') {
    throw new TypeError('createClient: baseUrl is required');
  }
  const base = new URL(options.baseUrl);
  const origin = base.origin;
  const basePath = base.pathname.replace(/\/$/, '');
  /** Origins that get the bearer token: Sesame's own and the app's APIs. */
  const bearerOrigins = new Set([origin]);
  for (const o of options.apiOrigins ?? []) bearerOrigins.add(new URL(o).origin);
  const refreshBeforeExpiry = options.refreshBeforeExpiry ?? 60;
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  /** @type {{ now: () => number, setTimeout: (fn: () => void, ms: number) => unknown, clearTimeout: (id: unknown) => void }} */
  const clock = {
    now: options.clock?.now ?? (() => performance.now()),
    setTimeout: options.clock?.setTimeout ?? ((fn, ms) => setTimeout(fn, ms)),
    clearTimeout: options.clock?.clearTimeout ?? ((id) => clearTimeout(/** @type {any} */ (id))),
  };
  /** @type {import('./sesame.js').LockManagerLike | null} */
  const locks = options.locks === undefined ? /** @type {any} */ (globalThis.navigator?.locks ?? null) : options.locks;
  const Channel = options.BroadcastChannel === undefined ? globalThis.BroadcastChannel ?? null : options.BroadcastChannel;
  const hooks = {
    onSessionLost: options.onSessionLost ?? null,
    onMaintenance: options.onMaintenance ?? null,
    onOffline: options.onOffline ?? null,
    onOnline: options.onOnline ?? null,
    onLogin: options.onLogin ?? null,
    onTokenChange: options.onTokenChange ?? null,
  };
  const lockName = LOCK_PREFIX + origin;
  const tabId = Math.random().toString(36).slice(2) + clock.now().toString(36);

  // --- In-memory state (never persisted) ---
  /** @type {string | null} */
  let accessToken = null;
  /** `performance.now()` at which the token expires. */
  let expiresAt = 0;
  /** Bumped whenever a new token arrives, from this tab or another. */
  let tokenVersion = 0;
  /** @type {any} */
  let user = null;
  /** @type {string | null} */
  let sessionId = null;
  /** @type {any} */
  let timer = null;
  /** @type {Promise<string> | null} */
  let inflight = null;
  /** Session-lost is reported once per session, not once per failed call. */
  let lostReported = false;
  let offline = false;
  let backoff = BACKOFF_MIN_MS;
  let closed = false;
  /** Bumped by every piece of cross-tab news (a token, a logout, a released lock). */
  let news = 0;
  /** Token messages this tab has posted after a rotation. */
  let tokenPosts = 0;
  /** Waiters for another tab's news while this tab is queued on the lock. @type {Set<() => void>} */
  const waiters = new Set();

  /** @type {BroadcastChannel | null} */
  const channel = Channel ? new Channel(CHANNEL_PREFIX + origin) : null;

  /** @param {any} msg */
  function post(msg) {
    if (!channel || closed) return;
    try {
      channel.postMessage({ ...msg, from: tabId });
    } catch {
      // A closed channel (page unloading) is not an error worth surfacing.
    }
  }

  function wake() {
    news++;
    for (const w of waiters) w();
    waiters.clear();
  }

  /** Seconds the current token still has, by the monotonic clock. */
  function remaining() {
    return accessToken ? Math.max(0, (expiresAt - clock.now()) / 1000) : 0;
  }

  /**
   * Takes a token (from the server or another tab) and schedules its refresh.
   * @param {string} token @param {number} expiresIn seconds, as of now
   * @param {any} u @param {string | null} sid
   */
  function adopt(token, expiresIn, u, sid) {
    accessToken = token;
    expiresAt = clock.now() + expiresIn * 1000;
    if (u !== undefined && u !== null) user = u;
    if (sid) sessionId = sid;
    tokenVersion++;
    lostReported = false;
    schedule(expiresIn);
    wake();
    hooks.onTokenChange?.({ user, sessionId });
  }

  function forget() {
    accessToken = null;
    expiresAt = 0;
    user = null;
    sessionId = null;
    tokenVersion++;
    if (timer !== null) clock.clearTimeout(timer);
    timer = null;
    wake();
    hooks.onTokenChange?.({ user: null, sessionId: null });
  }

  /**
   * The refresh delay of DESIGN §7: max(expires_in − refreshBeforeExpiry,
   * expires_in / 2), and never sooner than 5 s after this origin's last
   * rotation.
   * @param {number} expiresIn seconds
   */
  function schedule(expiresIn) {
    if (timer !== null) clock.clearTimeout(timer);
    let delay = Math.max(expiresIn - refreshBeforeExpiry, expiresIn / 2) * 1000;
    const last = lastRotation.get(origin);
    if (last !== undefined) delay = Math.max(delay, last + MIN_REFRESH_INTERVAL_MS - clock.now());
    timer = clock.setTimeout(scheduledRefresh, Math.max(0, delay));
  }

  /** @param {number} ms */
  function retryLater(ms) {
    if (timer !== null) clock.clearTimeout(timer);
    timer = clock.setTimeout(scheduledRefresh, ms);
  }

  async function scheduledRefresh() {
    timer = null;
    if (closed || !accessToken) return;
    try {
      await refreshInternal({ force: false });
      backoff = BACKOFF_MIN_MS;
    } catch (e) {
      if (e instanceof OfflineError || e instanceof MaintenanceError) {
        // Transient: keep the session and try again, further apart each time.
        retryLater(backoff);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      } else if (e instanceof RateLimitedError) {
        retryLater((e.retryAfter ?? 5) * 1000);
      }
      // SessionLostError was reported through onSessionLost already.
    }
  }

  // --- Failure reporting: the redirect policy's hooks ---

  /** @param {SessionLostError} err */
  function lost(err) {
    forget();
    if (!lostReported) {
      lostReported = true;
      hooks.onSessionLost?.({ reason: err.reason, code: err.code, error: err });
    }
    return err;
  }

  /** @param {SesameError} err */
  function report(err) {
    if (err instanceof MaintenanceError) hooks.onMaintenance?.({ error: err, retryAfter: err.retryAfter });
    if (err instanceof OfflineError && !offline) {
      offline = true;
      hooks.onOffline?.({ error: err });
    }
    return err;
  }

  function online() {
    if (offline) {
      offline = false;
      hooks.onOnline?.();
    }
  }

  /**
   * `fetch` that turns "no answer" into an OfflineError.
   * @param {string | URL | Request} input @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async function send(input, init) {
    let res;
    try {
      res = await doFetch(input, init);
    } catch (cause) {
      // An abort is the caller's decision, not a network failure.
      if (cause && /** @type {any} */ (cause).name === 'AbortError') throw cause;
      throw report(new OfflineError('The server could not be reached', { cause }));
    }
    online();
    return res;
  }

  /** @param {string} path */
  const url = (path) => origin + basePath + path;

  /**
   * A request to Sesame without the access token (register, login, refresh).
   * @param {string} method @param {string} path @param {any} [body]
   */
  function sesameRequest(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return send(url(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // The refresh cookie is HttpOnly and SameSite=Strict; the browser sends it.
      credentials: 'include',
      cache: 'no-store',
    });
  }

  // --- Refresh ---

  /**
   * One rotation through the cookie. Called with the lock held (where there is one).
   * @param {boolean} quiet a lost session is returned, not reported (restore())
   * @param {string | null} why the reason a 401 gave just before, if any
   */
  async function rotate(quiet, why) {
    let res = await sesameRequest('POST', '/auth/refresh');
    let problem = res.ok ? null : await problemOf(res);
    if (res.status === 401 && problem?.code === 'refresh_token_stale') {
      // Our request carried the parent of the cookie that is in the jar now
      // (another request rotated in between); the jar's token is current.
      res = await sesameRequest('POST', '/auth/refresh');
      problem = res.ok ? null : await problemOf(res);
    }
    if (res.ok) {
      const body = await res.json();
      lastRotation.set(origin, clock.now());
      adopt(body.access_token, body.expires_in, body.user, body.session_id);
      tokenPosts++;
      post({ type: 'token', access_token: body.access_token, expires_in: body.expires_in, user: body.user, session_id: body.session_id });
      return body.access_token;
    }
    const err = errorFor(res, problem);
    // Tabs queued behind us on the lock go ahead and find out for themselves
    // ('refresh-done', posted as the lock is released). A failure is
    // deliberately not broadcast as a logout: a tab that merely had no
    // cookie yet must not sign out a tab whose login is in flight.
    if (res.status === 401 || res.status === 400) {
      // Every 401 from /auth/refresh means this browser's refresh cookie is
      // spent, missing or revoked; 400 is a cookie we cannot use
      // (duplicate, wrong transport). Either way: sign in again.
      // The answer that ended the session also expired the cookie, so the
      // refresh only says "no token": the earlier 401 knew why.
      const reason = problem?.reason ?? why ?? err.code;
      const gone = new SessionLostError(err.message, { status: err.status, code: err.code, problem, reason });
      throw quiet ? (forget(), gone) : lost(gone);
    }
    throw report(err);
  }

  /**
   * Runs `fn` holding the cross-tab lock. Reports whether another tab held it
   * when we asked, so the caller knows to wait for that tab's news first.
   * @template T @param {(contended: boolean) => Promise<T>} fn @returns {Promise<T>}
   */
  async function withLock(fn) {
    if (!locks) return fn(false);
    const NOT_ACQUIRED = Symbol('not acquired');
    const first = await locks.request(lockName, { ifAvailable: true }, async (/** @type {any} */ lock) =>
      lock ? fn(false) : NOT_ACQUIRED,
    );
    if (first !== NOT_ACQUIRED) return /** @type {T} */ (first);
    return /** @type {T} */ (await locks.request(lockName, () => fn(true)));
  }

  /**
   * Resolves when another tab's token (or failure) arrives, or after `ms`.
   * @param {number} ms
   */
  function waitForNews(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        waiters.delete(done);
        resolve(undefined);
      };
      const t = setTimeout(done, ms);
      waiters.add(done);
    });
  }

  /**
   * A token at least as new as the moment of the call: rotates unless
   * another tab rotated while this one waited for the lock.
   * @param {{ force: boolean, stale?: string | null, quiet?: boolean, why?: string | null }} opts
   *   force: rotate even within 5 s of the last rotation (explicit calls and
   *   a 401 on the current token). stale: the token that was refused; any
   *   other token is good enough.
   */
  function refreshInternal(opts) {
    if (inflight) return inflight;
    const seen = tokenVersion;
    const heard = news;
    inflight = withLock(async (contended) => {
      const posted = tokenPosts;
      try {
        return await decide(contended);
      } finally {
        // Tabs queued behind this one wait for news; when there is none to
        // share (no rotation was needed), say so rather than make them wait.
        if (tokenPosts === posted) post({ type: 'refresh-done' });
      }
    }).finally(() => {
      inflight = null;
    });
    return inflight;

    /** @param {boolean} contended */
    async function decide(contended) {
      if (tokenVersion !== seen && accessToken && accessToken !== opts.stale) return accessToken;
      if (contended) {
        // The holder posts its result before it releases the lock, but the
        // message and the lock grant travel separately: wait for the message
        // unless it is already here.
        if (news === heard) await waitForNews(CONTENDED_WAIT_MS);
        if (tokenVersion !== seen && accessToken && accessToken !== opts.stale) return accessToken;
        if (tokenVersion !== seen && !accessToken && lostReported) {
          throw new SessionLostError('Signed out in another tab', { reason: 'logout' });
        }
      }
      const last = lastRotation.get(origin);
      if (!opts.force && accessToken && last !== undefined && clock.now() - last < MIN_REFRESH_INTERVAL_MS) {
        return accessToken;
      }
      return rotate(opts.quiet ?? false, opts.why ?? null);
    }
  }

  /**
   * Asks the other tabs for their token (a new tab, before it rotates).
   * @returns {Promise<boolean>} whether one answered
   */
  async function askOtherTabs() {
    if (!channel) return false;
    const seen = tokenVersion;
    post({ type: 'ask' });
    await waitForNews(ASK_TIMEOUT_MS);
    return tokenVersion !== seen && accessToken !== null;
  }

  /**
   * A usable access token: the current one, another tab's, or a new one.
   * @param {boolean} [quiet] report a lost session only by the rejection
   */
  async function token(quiet = false) {
    if (accessToken && expiresAt - clock.now() > EXPIRY_MARGIN_MS) return accessToken;
    if (!accessToken && (await askOtherTabs()) && accessToken) return accessToken;
    return refreshInternal({ force: true, stale: accessToken, quiet });
  }

  // --- Cross-tab messages ---
  if (channel) {
    channel.onmessage = (ev) => {
      const m = ev.data;
      if (!m || typeof m !== 'object' || m.from === tabId || closed) return;
      switch (m.type) {
        case 'ask':
          // Hand our token over only if it has a useful life left.
          if (accessToken && remaining() > 10) {
            post({ type: 'token', to: m.from, access_token: accessToken, expires_in: remaining(), user, session_id: sessionId });
          }
          break;
        case 'token':
          if (m.to && m.to !== tabId) break;
          if (typeof m.access_token !== 'string' || typeof m.expires_in !== 'number') break;
          // Keep whichever token of the session lives longer (ordered by the
          // server's `exp`, never by this machine's clock).
          if (accessToken && sessionId === m.session_id && expOf(m.access_token) < expOf(accessToken)) {
            wake();
            break;
          }
          if (!m.to) lastRotation.set(origin, clock.now());
          adopt(m.access_token, m.expires_in, m.user, m.session_id);
          break;
        case 'login':
          if (typeof m.access_token !== 'string' || typeof m.expires_in !== 'number') break;
          adopt(m.access_token, m.expires_in, m.user, m.session_id);
          hooks.onLogin?.({ user, sessionId, fromOtherTab: true });
          break;
        case 'logout': {
          const reason = typeof m.reason === 'string' ? m.reason : 'logout';
          lost(new SessionLostError('Signed out in another tab', { reason }));
          break;
        }
        case 'refresh-done':
          wake();
          break;
      }
    };
  }

  // Back online: a refresh that was waiting for the network goes now.
  const onlineListener = () => {
    if (accessToken && timer !== null && offline) retryLater(0);
  };
  globalThis.addEventListener?.('online', onlineListener);

  // --- Authenticated requests ---

  /**
   * Whether `target` gets the bearer token.
   * @param {string} target
   */
  function bearerFor(target) {
    try {
      return bearerOrigins.has(new URL(target, origin).origin);
    } catch {
      return false;
    }
  }

  /**
   * `fetch` with the access token: attached only to Sesame's origin and
   * `apiOrigins`; after a 401 the token is refreshed and the request retried
   * once; a refresh that fails with 401 reports a lost session.
   * @param {string | URL | Request} input @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async function authFetch(input, init = {}) {
    const target = input instanceof Request ? input.url : String(input);
    if (!bearerFor(target)) return send(input, init);
    const sesame = new URL(target, origin).origin === origin;
    const attempt = async (/** @type {string} */ t) => {
      const headers = new Headers(input instanceof Request ? input.headers : undefined);
      new Headers(init.headers).forEach((v, k) => headers.set(k, v));
      headers.set('Authorization', `Bearer ${t}`);
      const req = input instanceof Request ? input.clone() : input;
      return send(req, { credentials: sesame ? 'include' : init.credentials, ...init, headers });
    };
    const used = await token();
    const res = await attempt(used);
    if (res.status !== 401) return res;
    const problem = await problemOf(res);
    // A 401 that is about something else (a wrong current password) is the
    // caller's to handle; only a refused token is worth a refresh.
    if (problem?.code && !TOKEN_CODES.has(problem.code)) return res;
    const why = problem?.code === 'session_revoked' ? problem.reason ?? null : problem?.code === 'session_expired' ? 'expired' : null;
    const next = await refreshInternal({ force: true, stale: used, why });
    return attempt(next);
  }

  /**
   * JSON call to Sesame with the token; non-2xx answers become errors.
   * @param {string} method @param {string} path @param {any} [body]
   */
  async function api(method, path, body) {
    /** @type {RequestInit} */
    const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
    if (body !== undefined) {
      init.headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
      init.body = JSON.stringify(body);
    }
    const res = await authFetch(url(path), init);
    if (res.ok) return res.status === 204 ? null : res.json();
    const problem = await problemOf(res);
    const err = errorFor(res, problem);
    if (res.status === 401 && problem && TOKEN_CODES.has(problem.code)) {
      // The retry after a successful refresh was refused too: the session is gone.
      throw lost(new SessionLostError(err.message, { status: 401, code: err.code, problem, reason: problem.reason ?? err.code }));
    }
    throw report(err);
  }

  /**
   * Register or login: a token answer, shared with every tab.
   * @param {string} path @param {{ email: string, password: string }} creds
   * @returns {Promise<import('./sesame.js').SignInResult>}
   */
  async function signIn(path, creds) {
    return tokensFrom(await sesameRequest('POST', path, { email: creds.email, password: creds.password }));
  }

  /**
   * A sign-in answer (register, login, login/mfa): a token answer is shared
   * with every tab.
   * @param {Response} res
   * @returns {Promise<import('./sesame.js').SignInResult>}
   */
  async function tokensFrom(res) {
    if (res.status === 202) return { status: 'verification_sent', user: null, sessionId: null };
    if (!res.ok) throw report(errorFor(res, await problemOf(res)));
    const body = await res.json();
    lastRotation.set(origin, clock.now());
    adopt(body.access_token, body.expires_in, body.user, body.session_id);
    post({ type: 'login', access_token: body.access_token, expires_in: body.expires_in, user: body.user, session_id: body.session_id });
    return { status: 'signed_in', user: body.user, sessionId: body.session_id };
  }

  /**
   * An unauthenticated call to Sesame whose answer has no tokens.
   * @param {string} path @param {any} body
   */
  async function publicCall(path, body) {
    const res = await sesameRequest('POST', path, body);
    if (!res.ok) throw report(errorFor(res, await problemOf(res)));
    return res.status === 204 ? null : res.json();
  }

  /**
   * The end of this browser's session: forget, tell every tab.
   * @param {string} reason
   */
  function ended(reason) {
    forget();
    lostReported = true;
    post({ type: 'logout', reason });
  }

  /** @type {import('./sesame.js').SesameClient} */
  const client = {
    get user() {
      return user;
    },
    get sessionId() {
      return sessionId;
    },
    get signedIn() {
      return accessToken !== null;
    },

    register: (creds) => signIn('/auth/register', creds),
    login: (creds) => signIn('/auth/login', creds),

    async loginMfa(challenge, code) {
      return tokensFrom(await sesameRequest('POST', '/auth/login/mfa', { challenge, code }));
    },

    async verifyEmail(token) {
      await publicCall('/auth/verify', { token });
      // A signed-in tab's `user` is stale now; `me()` gives the new state.
      if (user) user = { ...user, email_verified: true };
    },

    async resendVerification(email) {
      if (email === undefined && accessToken) await api('POST', '/auth/verify/resend');
      else await publicCall('/auth/verify/resend', { email });
    },

    async forgotPassword(email) {
      await publicCall('/auth/password/forgot', { email });
    },

    async resetPassword(token, password) {
      await publicCall('/auth/password/reset', { token, password });
      // Every session of the account ended, this browser's too if it had one.
      if (accessToken) ended('password_changed');
    },

    async reauthenticate(proof) {
      /** @type {Record<string, string>} */
      const body = {};
      if ('code' in proof && typeof proof.code === 'string') body.code = proof.code;
      else if ('password' in proof && typeof proof.password === 'string') body.password = proof.password;
      return api('POST', '/auth/reauthenticate', body);
    },

    async changeEmail(email) {
      const body = await api('POST', '/auth/email', { email });
      if (body?.user) user = body.user;
      return body.user;
    },

    beginTotp: () => api('POST', '/auth/mfa/totp'),

    async confirmTotp(code) {
      const body = await api('POST', '/auth/mfa/totp/confirm', { code });
      return body.recovery_codes;
    },

    async removeTotp() {
      await api('DELETE', '/auth/mfa/totp');
    },

    async deleteAccount() {
      await api('DELETE', '/auth/account');
      ended('account_deleted');
    },

    async logout() {
      // The access token if we have one, else the refresh cookie alone
      // identifies the session; the server expires the cookies either way.
      /** @type {Record<string, string>} */
      const headers = {};
      if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
      const res = await send(url('/auth/logout'), { method: 'POST', headers, credentials: 'include', cache: 'no-store' });
      if (!res.ok && res.status !== 401) throw report(errorFor(res, await problemOf(res)));
      // 401: nothing to end (no token, no cookie): signed out all the same.
      ended('logout');
    },

    async logoutAll() {
      await api('POST', '/auth/logout-all');
      ended('logout');
    },

    async logoutOthers() {
      await api('POST', '/auth/logout-others');
    },

    me: () => api('GET', '/auth/me'),

    async sessions() {
      const body = await api('GET', '/auth/sessions');
      return body.sessions;
    },

    async revokeSession(id) {
      const current = id === sessionId;
      await api('DELETE', `/auth/sessions/${encodeURIComponent(id)}`);
      if (current) ended('revoked_by_user');
    },

    async changePassword({ currentPassword, newPassword }) {
      await api('POST', '/auth/password', { current_password: currentPassword, new_password: newPassword });
    },

    refresh: () => refreshInternal({ force: true, stale: null }),

    async restore() {
      try {
        await token(true);
        return true;
      } catch (e) {
        if (e instanceof SessionLostError) return false;
        throw e;
      }
    },

    fetch: authFetch,

    close() {
      closed = true;
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
      globalThis.removeEventListener?.('online', onlineListener);
      channel?.close();
    },
  };
  return client;
}
