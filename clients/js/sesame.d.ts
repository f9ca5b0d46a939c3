// Type declarations for sesame.js (the Sesame browser client).

/** A user as Sesame returns it. */
export interface User {
  id: string;
  email: string | null;
  email_verified: boolean;
  /** Whether a TOTP second factor is enrolled. */
  mfa_enabled?: boolean;
  created_at: number;
  external_id?: string;
}

/** One session (device) as `GET /auth/sessions` returns it; times are Unix seconds. */
export interface Session {
  id: string;
  /** This browser's session. */
  current: boolean;
  /** A readable label parsed from the user agent, e.g. "Chrome on Linux". */
  device: string;
  user_agent: string | null;
  ip: string | null;
  transport: 'hybrid' | 'cookie' | 'bearer';
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  aal: string;
  revoked_at: number | null;
  /** Why it ended (`logout`, `revoked_by_user`, `reuse_detected`, `password_changed`, …); null while live. */
  revoke_reason: string | null;
  active: boolean;
}

/** `GET /auth/me`. */
export interface Me {
  user: User;
  session: Session;
  claims: Record<string, unknown>;
}

export interface Credentials {
  email: string;
  password: string;
}

export interface SignInResult {
  /** `verification_sent` when the server requires a verified email first. */
  status: 'signed_in' | 'verification_sent';
  user: User | null;
  sessionId: string | null;
}

/** `POST /auth/mfa/totp`: a pending factor, active after `confirmTotp`. */
export interface TotpEnrolment {
  /** The base32 secret, for typing into an app that cannot scan. */
  secret: string;
  otpauth_uri: string;
  /** The QR code of `otpauth_uri` as a `data:image/svg+xml;base64,…` URI (rendered by the server). */
  qr_svg: string;
}

/** `POST /auth/reauthenticate`. */
export interface Reauthentication {
  /** Unix seconds of this check. */
  auth_time: number;
  aal: string;
}

/** What proves it is still the user: the password, or a TOTP or recovery code. */
export type ReauthProof = { password: string } | { code: string };

export interface SessionLostInfo {
  /** The server's reason (`logout`, `revoked_by_user`, `reuse_detected`, …) or the refusal's code. */
  reason: string | null;
  code: string | null;
  error: SessionLostError;
}

/** Timers and the monotonic clock; replaceable for tests. */
export interface ClientClock {
  /** Milliseconds from a monotonic clock (default `performance.now()`). */
  now?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: unknown) => void;
}

/** The subset of the Web Locks API the client uses. */
export interface LockManagerLike {
  request(name: string, callback: (lock: unknown) => Promise<unknown>): Promise<unknown>;
  request(name: string, options: { ifAvailable: boolean }, callback: (lock: unknown) => Promise<unknown>): Promise<unknown>;
}

export interface ClientOptions {
  /** Sesame's URL, e.g. `https://auth.example.com` (its origin gets the bearer token). */
  baseUrl: string;
  /** Other origins whose requests through `client.fetch` carry the bearer token. */
  apiOrigins?: string[];
  /** Refresh this many seconds before expiry, but never before half the lifetime (default 60). */
  refreshBeforeExpiry?: number;
  /** The session is over (refresh refused, revoked, logged out in another tab): show the login page. */
  onSessionLost?: (info: SessionLostInfo) => void;
  /** 5xx or `storage_unavailable`: show the maintenance view with a retry. */
  onMaintenance?: (info: { error: MaintenanceError; retryAfter: number | null }) => void;
  /** No answer from the server: show an offline banner; the session is kept. */
  onOffline?: (info: { error: OfflineError }) => void;
  /** The server answers again after `onOffline`. */
  onOnline?: () => void;
  /** Another tab signed in; this one now holds that session's token. */
  onLogin?: (info: { user: User | null; sessionId: string | null; fromOtherTab: boolean }) => void;
  /** A token arrived or was dropped. */
  onTokenChange?: (info: { user: User | null; sessionId: string | null }) => void;
  /** The `fetch` to use (default `globalThis.fetch`). */
  fetch?: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  /** Web Locks (default `navigator.locks`; `null`: none, rely on the server's grace window). */
  locks?: LockManagerLike | null;
  /** BroadcastChannel constructor (default the global; `null`: no cross-tab sharing). */
  BroadcastChannel?: typeof BroadcastChannel | null;
  /** Monotonic clock and timers (tests). */
  clock?: ClientClock;
}

export interface SesameClient {
  /** The signed-in user, if known. */
  readonly user: User | null;
  /** This browser's session id, if signed in. */
  readonly sessionId: string | null;
  /** Whether an access token is held in memory. */
  readonly signedIn: boolean;

  register(credentials: Credentials): Promise<SignInResult>;
  /** Rejects with `MfaRequiredError` when the account has a second factor; finish with `loginMfa`. */
  login(credentials: Credentials): Promise<SignInResult>;
  /** The second step of a login: a 6-digit TOTP code or a recovery code (`xxxx-xxxx-xxxx-xxxx`). Every tab signs in. */
  loginMfa(challenge: string, code: string): Promise<SignInResult>;
  /** Consumes the token of a verification link (`/verify#token=…`). */
  verifyEmail(token: string): Promise<void>;
  /** A new verification link: to the signed-in user without `email`, else to `email` (same answer whether it has an account). */
  resendVerification(email?: string): Promise<void>;
  /** Asks for a reset link; resolves the same whether or not the address has an account. */
  forgotPassword(email: string): Promise<void>;
  /** Sets a new password with the token of a reset link (`/reset#token=…`); every session of the account ends. */
  resetPassword(token: string, password: string): Promise<void>;
  /** A fresh password or factor check, for the actions that need one (`ReauthenticationRequiredError`). */
  reauthenticate(proof: ReauthProof): Promise<Reauthentication>;
  /** Needs a recent re-authentication. The new address is unverified until its link is followed. */
  changeEmail(email: string): Promise<User>;
  /** Starts enrolling a TOTP factor (needs a recent re-authentication). */
  beginTotp(): Promise<TotpEnrolment>;
  /** Activates the pending factor with a code from the app; the 10 recovery codes, shown once. */
  confirmTotp(code: string): Promise<string[]>;
  /** Removes the TOTP factor (needs a recent re-authentication). */
  removeTotp(): Promise<void>;
  /** Deletes the account (needs a recent re-authentication); every tab is signed out. */
  deleteAccount(): Promise<void>;
  /** Ends this session (every tab of this browser). */
  logout(): Promise<void>;
  /** Ends every session of the user. */
  logoutAll(): Promise<void>;
  /** Ends every session but this one. */
  logoutOthers(): Promise<void>;
  me(): Promise<Me>;
  sessions(): Promise<Session[]>;
  revokeSession(id: string): Promise<void>;
  changePassword(change: { currentPassword: string; newPassword: string }): Promise<void>;
  /** A new access token: rotates, unless another tab rotated while this call waited for the lock. */
  refresh(): Promise<string>;
  /** Whether a session can be resumed (another tab's token, or the refresh cookie), without reporting a loss. */
  restore(): Promise<boolean>;
  /** `fetch` with the bearer token for Sesame's origin and `apiOrigins`; one retry after a 401. */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Stops timers and leaves the tab channel. */
  close(): void;
}

export interface SesameErrorInfo {
  status?: number;
  code?: string | null;
  problem?: any;
  retryAfter?: number | null;
  cause?: unknown;
}

export class SesameError extends Error {
  constructor(message: string, info?: SesameErrorInfo);
  /** HTTP status; 0 when no answer arrived. */
  status: number;
  /** The problem's stable `code`. */
  code: string | null;
  /** The problem+json body. */
  problem: any;
  /** Seconds from `Retry-After`. */
  retryAfter: number | null;
}
export class SessionLostError extends SesameError {
  constructor(message: string, info?: SesameErrorInfo & { reason?: string | null });
  reason: string | null;
}
export class MaintenanceError extends SesameError {}
export class OfflineError extends SesameError {}
export class RateLimitedError extends SesameError {}
/** 401 `mfa_required` from `login`. */
export class MfaRequiredError extends SesameError {
  /** For `loginMfa`. */
  challenge: string;
  /** e.g. `['totp', 'recovery_code']`. */
  methods: string[];
}
/** 403 `reauthentication_required`: call `reauthenticate`, then retry. */
export class ReauthenticationRequiredError extends SesameError {}

export function isSesameError(e: unknown): e is SesameError;
export function isSessionLostError(e: unknown): e is SessionLostError;
export function isMaintenanceError(e: unknown): e is MaintenanceError;
export function isOfflineError(e: unknown): e is OfflineError;
export function isRateLimitedError(e: unknown): e is RateLimitedError;
export function isMfaRequiredError(e: unknown): e is MfaRequiredError;
export function isReauthenticationRequiredError(e: unknown): e is ReauthenticationRequiredError;

/** `next` if it is a path starting with exactly one `/`, else `fallback` (default `/dashboard`). */
export function safeNext(next: string | null | undefined, fallback?: string): string;

export function createClient(options: ClientOptions): SesameClient;
