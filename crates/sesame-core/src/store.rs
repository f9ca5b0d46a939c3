//! The store traits and their contracts.
//!
//! Two traits, as the design splits them: [`AccountStore`] (users,
//! credentials, key ring, audit log) and [`SessionStore`] (sessions, refresh
//! rotation, revocation and the revocation rows that feed liveness checks).
//! One type may implement both (the SQL stores do, on one database).
//!
//! Contracts every implementation keeps, proven by the conformance tests:
//! - **Store time.** Every time a store writes or compares (creation, expiry,
//!   rotation age) is the store's own clock, never a caller's.
//! - **Atomic rotation.** [`SessionStore::rotate`] classifies with
//!   [`crate::rotation::decide`] and applies the decision with one conditional
//!   write; a lost race re-reads and re-decides with `lost_race = true`.
//! - **Revocation writes its row.** Every revocation inserts a revocation row
//!   `(seq, sid, reason, not_after)` in the same transaction, `seq` strictly
//!   increasing, so other instances and resource servers learn of it.
//! - **Errors keep their source** and say whether the store was unreachable
//!   ([`StoreError::Unavailable`]) so the HTTP layer can answer 503.

use crate::clock::UnixTime;
use crate::ids::{Email, SessionId, UserId};
use crate::keys::KeyRecord;
use crate::rotation::{Presented, ReuseClass, RotationPolicy};
use crate::session::{Aal, RevokeReason, Session, Transport};
use std::fmt;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or timed out: 503 `storage_unavailable`.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A uniqueness constraint failed (email already taken).
    #[error("conflict")]
    Conflict,
    /// Anything else (corrupt row, bug).
    #[error("store error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Who a user is: an account with email and password, or a shadow row for
/// a user authenticated elsewhere (DESIGN §3, sessions for external users),
/// which exists so that listing, revoking and disabling work the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A local account.
    Email(Email),
    /// An externally authenticated user, by the caller's own id for them.
    External(ExternalId),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Email(e) => e.fmt(f),
            Self::External(x) => write!(f, "external:{}", x.0),
        }
    }
}

/// A caller-chosen id for an externally authenticated user: 1–200
/// characters, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ExternalId(String);

impl ExternalId {
    /// Checks an id as a caller sent it.
    pub fn parse(s: &str) -> Option<Self> {
        (!s.is_empty() && s.chars().count() <= 200 && !s.chars().any(char::is_control))
            .then(|| Self(s.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value stored in `users.email_key` for a shadow user: a leading
    /// space, which no normalised email key has, keeps the two apart.
    pub fn email_key(&self) -> String {
        format!(" external:{}", self.0)
    }
}

/// A user account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Email account or external identity.
    pub identity: Identity,
    /// Whether the address was proven.
    pub email_verified: bool,
    /// Disabled accounts cannot log in and have no sessions.
    pub disabled: bool,
    /// Whether a confirmed second factor (TOTP) guards login.
    pub mfa_enabled: bool,
    /// Creation time.
    pub created_at: UnixTime,
}

impl User {
    /// The email of a local account.
    pub fn email(&self) -> Option<&Email> {
        match &self.identity {
            Identity::Email(e) => Some(e),
            Identity::External(_) => None,
        }
    }

    /// The external id of a shadow user.
    pub fn external_id(&self) -> Option<&ExternalId> {
        match &self.identity {
            Identity::External(x) => Some(x),
            Identity::Email(_) => None,
        }
    }
}

/// A one-time token (handoff code; later email verification and reset
/// links), stored only as the SHA-256 of the token.
#[derive(Clone, PartialEq)]
pub struct OneTimeToken {
    /// What it is for, e.g. `handoff`.
    pub kind: &'static str,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// The user it belongs to.
    pub user_id: UserId,
    /// What redeeming it needs (claims, transport, …), never a secret.
    pub payload: serde_json::Value,
    /// Store time after which it is void.
    pub expires_at: UnixTime,
}

impl fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimeToken")
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A user's TOTP factor as stored.
#[derive(Clone, PartialEq)]
pub struct TotpFactor {
    /// The shared secret sealed with the master key (AAD: `totp:` + user id).
    pub sealed_secret: Vec<u8>,
    /// Confirmed with a code; only a confirmed factor guards login.
    pub confirmed: bool,
}

impl fmt::Debug for TotpFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpFactor")
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

/// A user with the stored password hash, for login.
#[derive(Clone, PartialEq)]
pub struct UserCredential {
    /// The user.
    pub user: User,
    /// Argon2id PHC string.
    pub password_hash: String,
}

impl fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A user to create.
#[derive(Clone)]
pub struct NewUser {
    /// Id, chosen by the engine.
    pub id: UserId,
    /// Normalised email.
    pub email: Email,
    /// PHC string.
    pub password_hash: String,
    /// Whether the address counts as proven (CLI-created users, say).
    pub email_verified: bool,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Its id.
    pub id: SessionId,
    /// Its user.
    pub user_id: UserId,
    /// Fixed transport.
    pub transport: Transport,
    /// SHA-256 of generation 0's secret.
    pub first_hash: [u8; 32],
    /// SHA-256 of the login's user agent.
    pub ua_hash: [u8; 32],
    /// Refresh key version.
    pub key_version: u8,
    /// Idle lifetime in seconds (`None`: no idle expiry).
    pub idle_ttl: Option<i64>,
    /// Absolute lifetime in seconds.
    pub max_age: i64,
    /// Assurance level.
    pub aal: Aal,
    /// Client IP.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Application claims.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Session cap to enforce atomically with the insert.
    pub cap: Option<SessionCap>,
    /// An earlier session of the same browser to end (`replaced`).
    pub replaces: Option<SessionId>,
}

/// `max_sessions_per_user` and what happens at the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCap {
    /// Most live sessions a user may have.
    pub max: u32,
    /// Evict the least recently used (true) or refuse the login (false).
    pub evict_oldest: bool,
}

/// What creating a session did.
#[derive(Debug, Clone)]
pub enum Created {
    /// Created; lists sessions it revoked (evicted or replaced).
    Session {
        /// The new session.
        session: Session,
        /// Sessions it ended.
        revoked: Vec<SessionId>,
    },
    /// The cap refuses a new session.
    LimitReached,
}

/// The result of a rotation attempt: the state machine's answer, applied.
#[derive(Debug, Clone)]
pub enum RotationOutcome {
    /// No such session.
    NotFound,
    /// Committed generation + 1.
    Rotated(Session),
    /// The parent inside the grace window; the successor is the current generation.
    Grace(Session),
    /// Too late to answer, too early to call it reuse.
    Stale,
    /// Replay; the session (or the user's sessions) are now revoked.
    Reused {
        /// The session.
        session: Session,
        /// How it looks.
        class: ReuseClass,
        /// Every session revoked because of it.
        revoked: Vec<SessionId>,
    },
    /// Already revoked.
    Revoked(RevokeReason),
    /// Expired.
    Expired,
    /// Wrong channel for the transport.
    TransportMismatch,
    /// A valid token the store has never seen as current: restored backup?
    RollbackSuspected,
}

/// A revocation row, for liveness sets and the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Strictly increasing sequence number from the store.
    pub seq: i64,
    /// The revoked session.
    pub session_id: SessionId,
    /// Why.
    pub reason: RevokeReason,
    /// After this time no access token of the session can be valid anyway.
    pub not_after: UnixTime,
}

/// A security event for the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Event name, e.g. `login_failed`, `refresh_reuse_detected`.
    pub kind: &'static str,
    /// The user, when known.
    pub user_id: Option<UserId>,
    /// The session, when known.
    pub session_id: Option<SessionId>,
    /// Client IP.
    pub ip: Option<String>,
    /// Extra structured detail (never a secret).
    pub detail: serde_json::Value,
}

/// Which audit rows to read: every filter is optional; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this user's events.
    pub user: Option<UserId>,
    /// Only this session's events.
    pub session: Option<SessionId>,
    /// Only events of this kind (e.g. `login_failed`).
    pub kind: Option<String>,
    /// At or after this time.
    pub since: Option<UnixTime>,
    /// Before this time.
    pub until: Option<UnixTime>,
    /// Rows with an id below this one (paging: the last id of a page).
    pub before_id: Option<i64>,
    /// At most this many rows (1–1000).
    pub limit: u32,
}

/// One audit row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Increasing id (paging cursor).
    pub id: i64,
    /// Store time.
    pub at: UnixTime,
    /// Event name.
    pub kind: String,
    /// The user, when known.
    pub user_id: Option<UserId>,
    /// The session, when known.
    pub session_id: Option<SessionId>,
    /// Client IP as recorded.
    pub ip: Option<String>,
    /// Structured detail.
    pub detail: serde_json::Value,
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Sessions past their end (expired or revoked) by more than the grace.
    pub sessions: u64,
    /// Revocation rows past `not_after`.
    pub revocations: u64,
    /// One-time tokens expired.
    pub one_time_tokens: u64,
    /// Audit rows older than the retention.
    pub audit: u64,
}

/// Users, credentials, the key ring and the audit log.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + fmt::Debug {
    /// Creates a user. A taken email (case-insensitive) is [`StoreError::Conflict`].
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// The user with this email key, with the password hash.
    async fn user_by_email(&self, email: &Email) -> Result<Option<UserCredential>, StoreError>;
    /// The user with this id.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    /// The user with this id, with the password hash.
    async fn credential_by_id(&self, id: UserId) -> Result<Option<UserCredential>, StoreError>;
    /// Replaces a password hash.
    async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), StoreError>;
    /// Sets the disabled flag; `false` if there is no such user.
    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError>;
    /// Users ordered by creation, paged.
    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError>;
    /// The key ring's records.
    async fn load_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Replaces the whole key ring atomically.
    async fn save_keys(&self, records: &[KeyRecord]) -> Result<(), StoreError>;
    /// Appends to the audit log (store time).
    async fn audit(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// Cheap reachability check; returns the store's clock.
    async fn ping(&self) -> Result<UnixTime, StoreError>;
    /// The shadow user of an external id, created (with `new_id`) if absent.
    async fn external_user(
        &self,
        external: &ExternalId,
        new_id: UserId,
    ) -> Result<User, StoreError>;
    /// Deletes a user row (sessions must have been revoked first); `false`
    /// if there is no such user.
    async fn delete_user(&self, id: UserId) -> Result<bool, StoreError>;
    /// Stores a one-time token (its hash is the key).
    async fn put_one_time(&self, token: OneTimeToken) -> Result<(), StoreError>;
    /// Consumes a one-time token of `kind` atomically: returns it once, if
    /// it exists and has not expired (store time), and never again.
    async fn take_one_time(
        &self,
        kind: &'static str,
        hash: &[u8; 32],
    ) -> Result<Option<OneTimeToken>, StoreError>;
    /// Audit rows matching `filter`, newest first.
    async fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    /// Deletes expired one-time tokens and audit rows older than
    /// `audit_before` (store time); returns the counts (`sessions` and
    /// `revocations` are the session store's).
    async fn purge_accounts(&self, audit_before: UnixTime) -> Result<Purged, StoreError>;
    /// Changes a local account's email and whether it counts as verified.
    /// A taken address (case-insensitive) is [`StoreError::Conflict`];
    /// `false` if there is no such local account.
    async fn set_email(
        &self,
        id: UserId,
        email: &Email,
        verified: bool,
    ) -> Result<bool, StoreError>;
    /// Marks the email verified if the account's address is still `email`
    /// (a link mailed to an old address proves nothing about a new one);
    /// `false` otherwise.
    async fn mark_email_verified(&self, id: UserId, email: &Email) -> Result<bool, StoreError>;
    /// The user's TOTP factor, confirmed or pending.
    async fn totp_factor(&self, id: UserId) -> Result<Option<TotpFactor>, StoreError>;
    /// Stores a pending (unconfirmed) factor, replacing an earlier pending
    /// one; `false` (nothing changed) if a confirmed factor exists or there
    /// is no such user.
    async fn put_pending_totp(&self, id: UserId, sealed_secret: &[u8]) -> Result<bool, StoreError>;
    /// Confirms the pending factor, records `step` as its last used step
    /// and replaces the recovery codes with `recovery` (SHA-256 each), in
    /// one transaction; `false` if no factor is pending.
    async fn confirm_totp(
        &self,
        id: UserId,
        step: i64,
        recovery: &[[u8; 32]],
    ) -> Result<bool, StoreError>;
    /// Removes the factor and every recovery code; `false` if there was none.
    async fn remove_totp(&self, id: UserId) -> Result<bool, StoreError>;
    /// Records `step` as used if it is newer than the last used step, in
    /// one conditional write: each code works once, and never after a newer
    /// one. `false` when refused.
    async fn use_totp_step(&self, id: UserId, step: i64) -> Result<bool, StoreError>;
    /// Consumes one recovery code (by its SHA-256); `false` if unknown or used.
    async fn use_recovery_code(&self, id: UserId, hash: &[u8; 32]) -> Result<bool, StoreError>;
    /// How many unused recovery codes the user has.
    async fn recovery_codes_left(&self, id: UserId) -> Result<u32, StoreError>;
}

/// Sessions, rotation and revocation.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Creates a session at store time, ending `replaces` (reason `replaced`)
    /// and enforcing `cap`, all in one transaction.
    async fn create_session(&self, new: NewSession) -> Result<Created, StoreError>;
    /// One session by id, live or not.
    async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError>;
    /// Rotation: see the module contract.
    async fn rotate(
        &self,
        id: SessionId,
        presented: &Presented,
        policy: &RotationPolicy,
    ) -> Result<RotationOutcome, StoreError>;
    /// Revokes one session if it is live; returns it as it now is (`None` if absent).
    async fn revoke(
        &self,
        id: SessionId,
        reason: RevokeReason,
    ) -> Result<Option<Session>, StoreError>;
    /// Revokes every live session of a user except `keep`; returns the ids revoked.
    async fn revoke_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError>;
    /// Revokes every live session (backup restore); returns how many.
    async fn revoke_all(&self, reason: RevokeReason) -> Result<u64, StoreError>;
    /// A user's live sessions plus those revoked at or after `revoked_since`,
    /// most recently used first.
    async fn list_sessions(
        &self,
        user: UserId,
        revoked_since: UnixTime,
    ) -> Result<Vec<Session>, StoreError>;
    /// Revocation rows with `seq > after`, oldest first, at most `limit`.
    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError>;
    /// The store's clock.
    async fn now(&self) -> Result<UnixTime, StoreError>;
    /// Replaces the application claims of every live session of a user (they
    /// reach access tokens at the next refresh); returns how many changed.
    async fn set_user_claims(
        &self,
        user: UserId,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, StoreError>;
    /// Deletes sessions that ended (expired, or revoked) before
    /// `ended_before`, and revocation rows whose `not_after` has passed
    /// (store time); returns the counts.
    async fn purge_sessions(&self, ended_before: UnixTime) -> Result<Purged, StoreError>;
    /// How many sessions are live now (not revoked, not expired): a gauge.
    async fn count_live(&self) -> Result<u64, StoreError>;
    /// Records a fresh credential check on a live session (re-authentication,
    /// DESIGN §3): `auth_time` becomes the store's now and `aal` the level
    /// proven. Returns the session as it now is, `None` if it is not live.
    async fn reauthenticate(&self, id: SessionId, aal: Aal) -> Result<Option<Session>, StoreError>;
}
