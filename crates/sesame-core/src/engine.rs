//! The engine: every use case of Sesame (register, login, refresh, logout,
//! session management, password change, key rotation) written once over the
//! store, clock and hasher traits. The HTTP server and library users call
//! these methods; nothing here knows about requests, cookies or SQL.

use crate::access::{AccessClaims, RESERVED_CLAIMS, VerifiedClaims, Verifier};
use crate::binding::{self, BindingKeys, BindingMode, IpPrefixes};
use crate::clock::{Clock, UnixTime};
use crate::crypto;
use crate::error::{Error, FieldError};
use crate::ids::{Email, SessionId, UserId};
use crate::keys::{self, KeyError, KeyRing, SigningAlg};
use crate::liveness::RevokedSet;
use crate::password::{HashError, HashParams, Password, PasswordError, PasswordHasher};
use crate::refresh::{RefreshKeys, RefreshToken};
use crate::rotation::{Channel, Presented, RotationPolicy};
use crate::session::{Aal, DeviceInfo, RevokeReason, Session, Transport};
use crate::store::{
    AccountStore, AuditEvent, AuditFilter, AuditRecord, Created, ExternalId, NewSession, NewUser,
    OneTimeToken, Purged, RotationOutcome, SessionCap, SessionStore, StoreError, User,
};
use serde_json::json;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use zeroize::Zeroizing;

mod account;
use crate::notice::{Notice, NoticeHook};
pub use account::{MFA_CHALLENGE_ATTEMPTS, TotpEnrolment};

/// The engine's settings (the server fills them from its configuration).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `iss` of access tokens.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access-token lifetime, seconds.
    pub access_ttl: i64,
    /// Clock leeway, seconds (≤ 60).
    pub leeway: i64,
    /// Absolute session lifetime, seconds.
    pub session_max_age: i64,
    /// Rotation rules (grace, late retry, answer cap, idle ttl, reuse policy).
    pub rotation: RotationPolicy,
    /// `max_sessions_per_user`.
    pub session_cap: Option<SessionCap>,
    /// `require_verified_email`.
    pub require_verified_email: bool,
    /// Argon2id parameters for new hashes.
    pub hash_params: HashParams,
    /// Algorithm of newly generated signing keys.
    pub signing_alg: SigningAlg,
    /// How long revoked sessions stay visible in the session list, seconds.
    pub revoked_session_visibility: i64,
    /// Log full IP addresses (else they are masked to their network).
    pub log_pii: bool,
    /// Token binding (§1); off by default.
    pub binding: BindingConfig,
    /// Lifetime of an email-verification link, seconds.
    pub email_verification_ttl: i64,
    /// Lifetime of a password-reset link, seconds.
    pub password_reset_ttl: i64,
    /// How recent a credential check must be for sensitive changes, seconds.
    pub max_auth_age: i64,
    /// Lifetime of an MFA login challenge, seconds.
    pub mfa_challenge_ttl: i64,
    /// The issuer name authenticator apps show next to the account.
    pub totp_issuer: String,
}

impl EngineConfig {
    /// The documented defaults (DESIGN §1–§3) for `issuer` and `audience`:
    /// EdDSA, 10-minute access tokens, 60 s leeway, 30-day sessions, the
    /// default rotation policy, OWASP Argon2id parameters, no binding.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl: 600,
            leeway: 60,
            session_max_age: 30 * 86_400,
            rotation: RotationPolicy::default(),
            session_cap: None,
            require_verified_email: false,
            hash_params: HashParams::OWASP,
            signing_alg: SigningAlg::EdDSA,
            revoked_session_visibility: 7 * 86_400,
            log_pii: false,
            binding: BindingConfig::default(),
            email_verification_ttl: 86_400,
            password_reset_ttl: 1_800,
            max_auth_age: 300,
            mfa_challenge_ttl: 300,
            totp_issuer: "Sesame".into(),
        }
    }
}

/// Token binding settings.
#[derive(Debug, Clone, Default)]
pub struct BindingConfig {
    /// `binding`.
    pub mode: BindingMode,
    /// Keys derived from `binding_key` (required unless the mode is `none`).
    pub keys: Option<BindingKeys>,
    /// Prefix lengths for `ip_ua`.
    pub prefixes: IpPrefixes,
}

/// Lifetime of a handoff code, seconds (DESIGN §3).
pub const HANDOFF_TTL: i64 = 60;
/// The one-time-token kind of handoff codes.
const HANDOFF: &str = "handoff";

/// Tokens handed to a client after login, register or refresh.
#[derive(Clone)]
pub struct Grant {
    /// The signed access token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The refresh token (`srt_…`).
    pub refresh_token: String,
    /// Seconds until the session's refresh stops working at the latest.
    pub refresh_expires_in: i64,
    /// The session.
    pub session: Session,
    /// The user.
    pub user: User,
    /// Whether this answers a parent token inside the grace window (§2) by
    /// re-sending its successor, instead of a fresh rotation or login.
    /// Operators count these apart, so the server needs to know.
    pub grace: bool,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("session", &self.session.id)
            .field("user", &self.user.id)
            .field("expires_in", &self.expires_in)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// What register did.
#[derive(Debug)]
pub enum Registered {
    /// Account created and signed in.
    SignedIn(Box<Grant>),
    /// `require_verified_email`: the same answer whether or not the address existed.
    VerificationSent,
}

/// An IP address reduced to its network (IPv4 /24, IPv6 /48) for logs.
pub fn mask_ip(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => "?".into(),
    }
}

/// Per-request facts the engine needs.
#[derive(Debug, Clone)]
pub struct LoginContext {
    /// IP and user agent.
    pub device: DeviceInfo,
    /// Transport chosen with `Sesame-Transport`.
    pub transport: Transport,
    /// A live refresh cookie that arrived with the login (to be `replaced`).
    pub replaces: Option<String>,
}

/// The engine. Cheap to share behind an `Arc`.
pub struct Engine {
    accounts: Arc<dyn AccountStore>,
    sessions: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    hasher: Arc<dyn PasswordHasher>,
    refresh_keys: RefreshKeys,
    master_key: Zeroizing<[u8; 32]>,
    ring: RwLock<Arc<KeyRing>>,
    verifier: Verifier,
    cfg: EngineConfig,
    revoked: RevokedSet,
    dummy_hash: String,
    on_revoked: Option<RevocationHook>,
    on_notice: Option<NoticeHook>,
    /// Recently read user rows ([`USER_CACHE_TTL`]): refresh and `/auth/me`
    /// need the user for their answer, and reading it each time doubled
    /// their store round trips. This instance forgets a user the moment it
    /// changes one; changes made elsewhere show within the TTL (a disabled
    /// user's sessions are revoked in the store, so that never waits).
    users: quick_cache::sync::Cache<UserId, (User, std::time::Instant)>,
    /// Access tokens whose signature and claims passed, by the token's
    /// SHA-256: an Ed25519 check costs ~43 µs, a fifth of `/auth/me`'s CPU
    /// (`perf`, `bench/`), and a client presents the same token for its whole
    /// life. A hit still re-checks expiry and that the signing key is in the
    /// ring ([`Verifier::still_valid`]); liveness (revocation) is checked on
    /// every request as before. Bounded: [`VERIFIED_CACHE_TOKENS`].
    verified: quick_cache::sync::Cache<[u8; 32], VerifiedClaims>,
    /// When an unknown `kid` last triggered a reload (at most one per
    /// [`UNKNOWN_KID_RELOAD_EVERY`], so garbage kids cannot hammer the store).
    last_kid_reload: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How many verified access tokens are remembered (see `Engine::verified`):
/// 0.4–1.5 KiB each (more with application claims), so ≤ ~24 MiB.
pub const VERIFIED_CACHE_TOKENS: usize = 16_384;

/// How long a cached user row is used (see `Engine::users`).
pub const USER_CACHE_TTL: Duration = Duration::from_secs(2);

/// Minimum spacing of key-ring reloads triggered by unknown `kid`s.
pub const UNKNOWN_KID_RELOAD_EVERY: Duration = Duration::from_secs(5);

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// What the engine needs to start.
#[derive(Debug)]
pub struct EngineParts {
    /// Account store.
    pub accounts: Arc<dyn AccountStore>,
    /// Session store.
    pub sessions: Arc<dyn SessionStore>,
    /// The instance clock (access tokens).
    pub clock: Arc<dyn Clock>,
    /// Where Argon2id runs.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Refresh keys.
    pub refresh_keys: RefreshKeys,
    /// Master key sealing signing keys at rest.
    pub master_key: Zeroizing<[u8; 32]>,
    /// Generate a key ring when the store has none (development mode).
    pub generate_missing_keys: bool,
    /// Called whenever this engine revokes a session (the server wakes its
    /// revocation feed with it).
    pub on_revoked: Option<RevocationHook>,
    /// Receives security notices (mails); `None`: none are sent.
    pub on_notice: Option<NoticeHook>,
}

/// A callback run after each revocation this engine makes.
#[derive(Clone)]
pub struct RevocationHook(pub Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for RevocationHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RevocationHook")
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key ring is missing or unusable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Hashing failed.
    #[error("computing the dummy password hash failed")]
    Hash,
}

impl Engine {
    /// Starts the engine: loads (or, when allowed, generates) the key ring and
    /// prepares the dummy hash for unknown emails.
    pub async fn start(parts: EngineParts, cfg: EngineConfig) -> Result<Self, StartError> {
        let mut records = parts.accounts.load_keys().await?;
        if records.is_empty() && parts.generate_missing_keys {
            records = keys::initial_records(cfg.signing_alg, parts.clock.now(), &parts.master_key)?;
            parts.accounts.save_keys(&records).await?;
        }
        let ring = KeyRing::open(&records, &parts.master_key)?;
        let dummy = Password::presented(crypto::b64(&crypto::random::<24>()))
            .map_err(|_| StartError::Hash)?;
        let dummy_hash = parts
            .hasher
            .hash(dummy)
            .await
            .map_err(|_| StartError::Hash)?;
        Ok(Self {
            verifier: Verifier::new(cfg.issuer.clone(), cfg.audience.clone(), cfg.leeway),
            accounts: parts.accounts,
            sessions: parts.sessions,
            clock: parts.clock,
            hasher: parts.hasher,
            refresh_keys: parts.refresh_keys,
            master_key: parts.master_key,
            ring: RwLock::new(Arc::new(ring)),
            revoked: RevokedSet::new(Duration::from_secs(2)),
            cfg,
            dummy_hash,
            last_kid_reload: std::sync::Mutex::new(None),
            on_revoked: parts.on_revoked,
            on_notice: parts.on_notice,
            users: quick_cache::sync::Cache::new(10_000),
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_TOKENS),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The account store.
    pub fn accounts(&self) -> &Arc<dyn AccountStore> {
        &self.accounts
    }

    /// The session store.
    pub fn sessions(&self) -> &Arc<dyn SessionStore> {
        &self.sessions
    }

    /// The revoked-session set (the host polls [`RevokedSet::sync`]).
    pub fn revoked_set(&self) -> &RevokedSet {
        &self.revoked
    }

    /// Whether password hashing would refuse work now (see
    /// [`PasswordHasher::saturated`]): hosts may refuse a login or
    /// registration before reading it.
    pub fn hashing_saturated(&self) -> bool {
        self.hasher.saturated()
    }

    /// The instance clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The current key ring.
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.ring
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Re-reads the key ring from the store (every 30 s, and on an unknown `kid`).
    pub async fn reload_keys(&self) -> Result<(), StartError> {
        let records = self.accounts.load_keys().await?;
        let ring = Arc::new(KeyRing::open(&records, &self.master_key)?);
        if let Ok(mut r) = self.ring.write() {
            *r = ring;
        }
        Ok(())
    }

    /// Rotates the signing keys (see [`keys::rotate_records`]) and reloads.
    pub async fn rotate_keys(&self, revoke_old: bool) -> Result<(), StartError> {
        let current = self.accounts.load_keys().await?;
        let retire_after = self.cfg.access_ttl + self.cfg.leeway;
        let next = keys::rotate_records(
            &current,
            self.cfg.signing_alg,
            self.clock.now(),
            retire_after,
            revoke_old,
            &self.master_key,
        )?;
        self.accounts.save_keys(&next).await?;
        self.audit(
            "signing_keys_rotated",
            None,
            None,
            None,
            json!({ "revoke_old": revoke_old }),
        )
        .await;
        self.reload_keys().await
    }

    /// A user by id, from the short-lived cache when fresh.
    async fn user_cached(&self, id: UserId) -> Result<Option<User>, Error> {
        if let Some((u, at)) = self.users.get(&id)
            && at.elapsed() < USER_CACHE_TTL
        {
            return Ok(Some(u));
        }
        let u = self.accounts.user_by_id(id).await?;
        if let Some(u) = &u {
            self.users
                .insert(id, (u.clone(), std::time::Instant::now()));
        }
        Ok(u)
    }

    /// Drops a user from the cache after this instance changed it.
    fn forget_user(&self, id: UserId) {
        self.users.remove(&id);
    }

    /// The public JWKS.
    pub fn jwks(&self) -> serde_json::Value {
        self.key_ring().jwks()
    }

    async fn audit(
        &self,
        kind: &'static str,
        user_id: Option<UserId>,
        session_id: Option<SessionId>,
        ip: Option<&str>,
        detail: serde_json::Value,
    ) {
        // Every security event is also a log line: ids are pseudonymous,
        // the IP is masked unless `log_pii`, and no event carries a secret.
        let shown_ip = ip.map(|i| {
            if self.cfg.log_pii {
                i.to_owned()
            } else {
                mask_ip(i)
            }
        });
        tracing::info!(
            event = kind,
            user = user_id.map(tracing::field::display),
            session = session_id.map(tracing::field::display),
            ip = shown_ip,
            detail = %detail,
            "security event"
        );
        let ev = AuditEvent {
            kind,
            user_id,
            session_id,
            ip: ip.map(str::to_owned),
            detail,
        };
        if let Err(e) = self.accounts.audit(ev).await {
            tracing::warn!(event = kind, error = %e, "audit write failed");
        }
    }

    fn hash_error(e: HashError) -> Error {
        match e {
            HashError::Overloaded => Error::Overloaded,
            HashError::Internal => Error::Internal("password hashing failed".into()),
        }
    }

    fn password_field(field: &'static str, e: PasswordError) -> Error {
        Error::field(field, e.to_string())
    }

    /// Creates an account (§3 register).
    pub async fn register(
        &self,
        email: &str,
        password: String,
        ctx: &LoginContext,
    ) -> Result<Registered, Error> {
        let mut errors = Vec::new();
        let email = Email::parse(email).map_err(|e| {
            errors.push(FieldError {
                field: "email",
                message: e.to_string(),
            })
        });
        let password = Password::new_checked(password).map_err(|e| {
            errors.push(FieldError {
                field: "password",
                message: e.to_string(),
            })
        });
        let (Ok(email), Ok(password)) = (email, password) else {
            return Err(Error::InvalidInput(errors));
        };
        let hash = self.hasher.hash(password).await.map_err(Self::hash_error)?;
        let new = NewUser {
            id: UserId::new(),
            email: email.clone(),
            password_hash: hash,
            email_verified: false,
        };
        let user = match self.accounts.create_user(new).await {
            Ok(u) => u,
            Err(StoreError::Conflict) => {
                self.audit(
                    "register_existing_email",
                    None,
                    None,
                    ctx.device.ip.as_deref(),
                    json!({}),
                )
                .await;
                return if self.cfg.require_verified_email {
                    // The answer is the same as for a new address; the
                    // owner learns of the attempt by mail.
                    self.notify(Notice::AccountExists { to: email });
                    Ok(Registered::VerificationSent)
                } else {
                    Err(Error::EmailTaken)
                };
            }
            Err(e) => return Err(e.into()),
        };
        self.audit(
            "user_registered",
            Some(user.id),
            None,
            ctx.device.ip.as_deref(),
            json!({}),
        )
        .await;
        self.send_verification(user.id, &email).await?;
        if self.cfg.require_verified_email {
            return Ok(Registered::VerificationSent);
        }
        let now = self.clock.now();
        let grant = self
            .open_session(&user, now, Aal::Aal1, Default::default(), ctx)
            .await?;
        Ok(Registered::SignedIn(Box::new(grant)))
    }

    /// Creates a user without a session (CLI `user add`); the email counts as verified.
    pub async fn add_user(&self, email: &str, password: String) -> Result<User, Error> {
        let email = Email::parse(email).map_err(|e| Error::field("email", e.to_string()))?;
        let password =
            Password::new_checked(password).map_err(|e| Self::password_field("password", e))?;
        let hash = self.hasher.hash(password).await.map_err(Self::hash_error)?;
        match self
            .accounts
            .create_user(NewUser {
                id: UserId::new(),
                email,
                password_hash: hash,
                email_verified: true,
            })
            .await
        {
            Ok(u) => Ok(u),
            Err(StoreError::Conflict) => Err(Error::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks an email and password (§3 login): the same answer and the same
    /// work whether the email is unknown or the password wrong.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        ctx: &LoginContext,
    ) -> Result<Grant, Error> {
        let password =
            Password::presented(password).map_err(|e| Self::password_field("password", e))?;
        if self.hasher.saturated() {
            return Err(Error::Overloaded);
        }
        let found = match Email::parse(email) {
            Ok(e) => self.accounts.user_by_email(&e).await?,
            Err(_) => None,
        };
        let Some(cred) = found else {
            // Same cost as a real check, so timing does not reveal which emails exist.
            let _ = self
                .hasher
                .verify(password, self.dummy_hash.clone())
                .await
                .map_err(Self::hash_error)?;
            self.audit(
                "login_failed",
                None,
                None,
                ctx.device.ip.as_deref(),
                json!({ "why": "unknown_email" }),
            )
            .await;
            return Err(Error::InvalidCredentials);
        };
        let verified = self
            .hasher
            .verify(password.clone(), cred.password_hash.clone())
            .await
            .map_err(Self::hash_error)?;
        let user = cred.user;
        if !verified.ok {
            self.audit(
                "login_failed",
                Some(user.id),
                None,
                ctx.device.ip.as_deref(),
                json!({ "why": "password" }),
            )
            .await;
            return Err(Error::InvalidCredentials);
        }
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        if self.cfg.require_verified_email && !user.email_verified {
            return Err(Error::EmailNotVerified);
        }
        if verified.needs_rehash
            && let Ok(h) = self.hasher.hash(password).await
        {
            self.accounts.set_password_hash(user.id, &h).await?;
        }
        if user.mfa_enabled {
            return Err(self.mfa_challenge(&user, ctx.transport).await);
        }
        let now = self.clock.now();
        let grant = self
            .open_session(&user, now, Aal::Aal1, Default::default(), ctx)
            .await?;
        self.audit(
            "login_succeeded",
            Some(user.id),
            Some(grant.session.id),
            ctx.device.ip.as_deref(),
            json!({}),
        )
        .await;
        self.notice_new_device(&user, &grant.session).await;
        Ok(grant)
    }

    /// Opens a session for a user who just proved a credential.
    async fn open_session(
        &self,
        user: &User,
        auth_time: UnixTime,
        aal: Aal,
        claims: serde_json::Map<String, serde_json::Value>,
        ctx: &LoginContext,
    ) -> Result<Grant, Error> {
        let id = SessionId::random();
        let token = self.refresh_keys.mint_first(id);
        let replaces = ctx
            .replaces
            .as_deref()
            .and_then(|t| self.refresh_keys.verify(t))
            .map(|t| t.session_id());
        let new = NewSession {
            id,
            user_id: user.id,
            transport: ctx.transport,
            first_hash: token.secret_hash(),
            ua_hash: ctx.device.ua_hash(),
            key_version: token.key_version(),
            idle_ttl: self.cfg.rotation.idle_ttl,
            max_age: self.cfg.session_max_age,
            aal,
            ip: ctx.device.ip.clone(),
            user_agent: ctx.device.user_agent.clone(),
            claims,
            cap: self.cfg.session_cap,
            replaces,
        };
        let (session, revoked) = match self.sessions.create_session(new).await? {
            Created::Session { session, revoked } => (session, revoked),
            Created::LimitReached => return Err(Error::SessionLimitReached),
        };
        for sid in revoked {
            let reason = if Some(sid) == replaces {
                RevokeReason::Replaced
            } else {
                RevokeReason::Evicted
            };
            self.note_revoked(sid, reason);
            self.audit(
                "session_revoked",
                Some(user.id),
                Some(sid),
                ctx.device.ip.as_deref(),
                json!({ "reason": reason.as_str() }),
            )
            .await;
        }
        let _ = auth_time;
        self.grant(user.clone(), session, &token, &ctx.device)
    }

    fn note_revoked(&self, sid: SessionId, reason: RevokeReason) {
        let not_after = self.clock.now() + self.cfg.access_ttl + self.cfg.leeway + 1;
        self.revoked.insert(sid, reason, not_after);
        if let Some(hook) = &self.on_revoked {
            (hook.0)();
        }
    }

    /// The `__Host-sesame_fp` value for a session under cookie binding, when
    /// its transport uses cookies (bearer clients have no cookie jar to hold it).
    pub fn fp_cookie(&self, session: &Session) -> Option<String> {
        match (&self.cfg.binding.mode, &self.cfg.binding.keys) {
            (BindingMode::Cookie, Some(keys)) if session.transport != Transport::Bearer => {
                Some(keys.fp_cookie(session.id))
            }
            _ => None,
        }
    }

    /// The `cnf` claim of a new access token for `session` on `device`.
    fn cnf(&self, session: &Session, device: &DeviceInfo) -> Option<serde_json::Value> {
        match (&self.cfg.binding.mode, &self.cfg.binding.keys) {
            (BindingMode::Cookie, Some(_)) => {
                self.fp_cookie(session).map(|fp| binding::cnf_fp(&fp))
            }
            (BindingMode::IpUa, Some(keys)) => {
                let ip = device.ip.as_deref().and_then(|s| s.parse().ok());
                let ua = device.user_agent.as_deref().unwrap_or("");
                Some(binding::cnf_ip_ua(&keys.ip_ua_tag(
                    ip,
                    ua,
                    self.cfg.binding.prefixes,
                )))
            }
            _ => None,
        }
    }

    /// Checks a verified token's binding against the request it came with.
    pub fn check_binding(
        &self,
        claims: &VerifiedClaims,
        facts: &binding::RequestFacts<'_>,
    ) -> Result<(), Error> {
        binding::check(
            claims.claims().cnf.as_ref(),
            facts,
            self.cfg.binding.keys.as_ref(),
            self.cfg.binding.prefixes,
        )
        .map_err(|e| {
            tracing::debug!(failure = %e, "access token binding failed");
            Error::InvalidToken
        })
    }

    fn grant(
        &self,
        user: User,
        session: Session,
        token: &RefreshToken,
        device: &DeviceInfo,
    ) -> Result<Grant, Error> {
        let now = self.clock.now();
        let exp = (now + self.cfg.access_ttl).min(session.expires_at);
        let claims = AccessClaims {
            iss: self.verifier.issuer().to_owned(),
            aud: self.verifier.audience().to_owned(),
            sub: user.id,
            sid: session.id,
            iat: now,
            exp,
            jti: crypto::b64(&crypto::random::<16>()),
            auth_time: session.auth_time,
            aal: session.aal,
            cnf: self.cnf(&session, device),
            ext: session.claims.clone(),
        };
        let access_token = self
            .verifier
            .sign(&self.key_ring(), &claims)
            .map_err(|e| Error::Internal(format!("signing failed: {e}")))?;
        let refresh_end = session
            .idle_expires_at
            .map_or(session.expires_at, |i| i.min(session.expires_at));
        Ok(Grant {
            access_token,
            expires_in: exp - now,
            refresh_token: token.encode(),
            refresh_expires_in: (refresh_end - now).max(0),
            session,
            user,
            grace: false,
        })
    }

    /// The session a refresh token names, if its tag verifies (no store
    /// access): lets callers key per-session limits on sessions a client
    /// can prove, not on any id it writes.
    pub fn refresh_session_id(&self, presented: &str) -> Option<SessionId> {
        self.refresh_keys.verify(presented).map(|t| t.session_id())
    }

    /// Rotates a refresh token (§2). `channel` is where it arrived.
    pub async fn refresh(
        &self,
        presented: &str,
        channel: Channel,
        device: &DeviceInfo,
    ) -> Result<Grant, Error> {
        let Some(token) = self.refresh_keys.verify(presented) else {
            return Err(Error::RefreshTokenInvalid);
        };
        let Some(successor) = self.refresh_keys.successor(&token) else {
            return Err(Error::RefreshTokenInvalid);
        };
        let p = Presented {
            generation: token.generation(),
            secret_hash: token.secret_hash(),
            successor_hash: successor.secret_hash(),
            ua_hash: device.ua_hash(),
            channel,
        };
        let sid = token.session_id();
        let ip = device.ip.as_deref();
        let (session, grace) = match self.sessions.rotate(sid, &p, &self.cfg.rotation).await? {
            RotationOutcome::Rotated(s) => (s, false),
            RotationOutcome::Grace(s) => {
                self.audit(
                    "refresh_grace_answer",
                    Some(s.user_id),
                    Some(sid),
                    ip,
                    json!({}),
                )
                .await;
                (s, true)
            }
            RotationOutcome::NotFound => return Err(Error::RefreshTokenInvalid),
            RotationOutcome::Stale => return Err(Error::RefreshTokenStale),
            RotationOutcome::Revoked(RevokeReason::Expired) | RotationOutcome::Expired => {
                return Err(Error::SessionExpired);
            }
            RotationOutcome::Revoked(r) => return Err(Error::SessionRevoked(r)),
            RotationOutcome::TransportMismatch => return Err(Error::TransportMismatch),
            RotationOutcome::RollbackSuspected => {
                tracing::warn!(session = %sid, "store_rollback_suspected");
                self.audit(
                    "store_rollback_suspected",
                    None,
                    Some(sid),
                    ip,
                    json!({ "generation": token.generation() }),
                )
                .await;
                return Err(Error::RefreshTokenInvalid);
            }
            RotationOutcome::Reused {
                session,
                class,
                revoked,
            } => {
                for r in &revoked {
                    self.note_revoked(*r, RevokeReason::ReuseDetected);
                }
                tracing::warn!(session = %sid, class = class.as_str(), "refresh_token_reuse_detected");
                self.audit(
                    "refresh_reuse_detected",
                    Some(session.user_id),
                    Some(sid),
                    ip,
                    json!({ "class": class.as_str(), "revoked": revoked.len() }),
                )
                .await;
                if !revoked.is_empty() {
                    self.notice_reuse(&session).await;
                }
                return Err(Error::RefreshTokenReused(class));
            }
        };
        let user = self
            .user_cached(session.user_id)
            .await?
            .ok_or(Error::RefreshTokenInvalid)?;
        if user.disabled {
            return Err(Error::SessionRevoked(RevokeReason::AccountDisabled));
        }
        let mut grant = self.grant(user, session, &successor, device)?;
        grant.grace = grace;
        Ok(grant)
    }

    /// Verifies an access token and checks that its session is live.
    pub async fn authenticate(&self, token: &str) -> Result<VerifiedClaims, Error> {
        let now = self.clock.now();
        let ring = self.key_ring();
        let digest = crate::crypto::sha256(token.as_bytes());
        if let Some(v) = self.verified.get(&digest)
            && self.verifier.still_valid(&*ring, &v, now)
        {
            self.check_live(&v).await?;
            return Ok(v);
        }
        let verified = match self.verifier.verify(&ring, token, now) {
            Ok(v) => v,
            Err(crate::access::Rejection::UnknownKid) if self.may_reload_for_unknown_kid() => {
                // A key rotated on another instance: reload once and retry.
                if self.reload_keys().await.is_err() {
                    return Err(Error::InvalidToken);
                }
                self.verifier
                    .verify(&self.key_ring(), token, now)
                    .map_err(|_| Error::InvalidToken)?
            }
            Err(e) => {
                tracing::debug!(rejection = %e, "access token rejected");
                return Err(Error::InvalidToken);
            }
        };
        self.verified.insert(digest, verified.clone());
        self.check_live(&verified).await?;
        Ok(verified)
    }

    fn may_reload_for_unknown_kid(&self) -> bool {
        let Ok(mut last) = self.last_kid_reload.lock() else {
            return false;
        };
        if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_RELOAD_EVERY) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    /// The liveness check of every access-authenticated route.
    pub async fn check_live(&self, claims: &VerifiedClaims) -> Result<(), Error> {
        let sid = claims.session_id();
        if let Some(reason) = self.revoked.lookup(&sid) {
            return Err(Error::SessionRevoked(reason));
        }
        if self.revoked.is_fresh() {
            return Ok(());
        }
        match self.sessions.session(sid).await? {
            Some(s) if s.user_id != claims.user_id() => Err(Error::InvalidToken),
            Some(s) => match s.revoke_reason {
                Some(r) if s.revoked_at.is_some() => Err(Error::SessionRevoked(r)),
                _ => Ok(()),
            },
            None => Err(Error::InvalidToken),
        }
    }

    /// The user and current session of a verified token.
    pub async fn me(&self, claims: &VerifiedClaims) -> Result<(User, Session), Error> {
        let session = self
            .sessions
            .session(claims.session_id())
            .await?
            .ok_or(Error::InvalidToken)?;
        if let (Some(_), Some(r)) = (session.revoked_at, session.revoke_reason) {
            return Err(Error::SessionRevoked(r));
        }
        let user = self
            .user_cached(claims.user_id())
            .await?
            .ok_or(Error::InvalidToken)?;
        Ok((user, session))
    }

    /// Revokes one session (logout).
    pub async fn logout(
        &self,
        sid: SessionId,
        reason: RevokeReason,
        ip: Option<&str>,
    ) -> Result<(), Error> {
        if let Some(s) = self.sessions.revoke(sid, reason).await? {
            self.note_revoked(sid, reason);
            self.audit(
                "session_revoked",
                Some(s.user_id),
                Some(sid),
                ip,
                json!({ "reason": reason.as_str() }),
            )
            .await;
        }
        Ok(())
    }

    /// Logout through a refresh token (cookie-only clients): the tag is
    /// checked first, then the session it names is revoked.
    pub async fn logout_with_refresh(
        &self,
        presented: &str,
        ip: Option<&str>,
    ) -> Result<(), Error> {
        let token = self
            .refresh_keys
            .verify(presented)
            .ok_or(Error::RefreshTokenInvalid)?;
        self.logout(token.session_id(), RevokeReason::Logout, ip)
            .await
    }

    /// Revokes every session of a user but `keep`.
    pub async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
        ip: Option<&str>,
    ) -> Result<usize, Error> {
        let revoked = self.sessions.revoke_user(user, keep, reason).await?;
        for sid in &revoked {
            self.note_revoked(*sid, reason);
        }
        self.audit(
            "sessions_revoked",
            Some(user),
            keep,
            ip,
            json!({ "reason": reason.as_str(), "count": revoked.len(), "kept_current": keep.is_some() }),
        )
        .await;
        Ok(revoked.len())
    }

    /// Revokes one of the caller's own sessions; anyone else's is `NotFound`.
    pub async fn revoke_own(
        &self,
        claims: &VerifiedClaims,
        target: SessionId,
        ip: Option<&str>,
    ) -> Result<(), Error> {
        match self.sessions.session(target).await? {
            Some(s) if s.user_id == claims.user_id() => {
                let reason = if target == claims.session_id() {
                    RevokeReason::Logout
                } else {
                    RevokeReason::RevokedByUser
                };
                self.logout(target, reason, ip).await
            }
            _ => Err(Error::NotFound),
        }
    }

    /// The caller's live sessions and recently revoked ones.
    pub async fn list_sessions(&self, user: UserId) -> Result<Vec<Session>, Error> {
        let since = self.clock.now() - self.cfg.revoked_session_visibility;
        Ok(self.sessions.list_sessions(user, since).await?)
    }

    /// Changes the password (needs the current one) and revokes every other session.
    pub async fn change_password(
        &self,
        claims: &VerifiedClaims,
        current: String,
        new: String,
        ip: Option<&str>,
    ) -> Result<(), Error> {
        let current = Password::presented(current)
            .map_err(|e| Self::password_field("current_password", e))?;
        let new =
            Password::new_checked(new).map_err(|e| Self::password_field("new_password", e))?;
        let cred = self
            .accounts
            .credential_by_id(claims.user_id())
            .await?
            .ok_or(Error::InvalidToken)?;
        let v = self
            .hasher
            .verify(current, cred.password_hash)
            .await
            .map_err(Self::hash_error)?;
        if !v.ok {
            self.audit(
                "password_change_failed",
                Some(claims.user_id()),
                Some(claims.session_id()),
                ip,
                json!({}),
            )
            .await;
            return Err(Error::InvalidCredentials);
        }
        let hash = self.hasher.hash(new).await.map_err(Self::hash_error)?;
        self.accounts
            .set_password_hash(claims.user_id(), &hash)
            .await?;
        self.audit(
            "password_changed",
            Some(claims.user_id()),
            Some(claims.session_id()),
            ip,
            json!({}),
        )
        .await;
        self.revoke_user_sessions(
            claims.user_id(),
            Some(claims.session_id()),
            RevokeReason::PasswordChanged,
            ip,
        )
        .await?;
        if let Some(to) = cred.user.email().cloned() {
            self.notify(Notice::PasswordChanged {
                user: claims.user_id(),
                to,
            });
        }
        Ok(())
    }

    /// Disables or enables a user; disabling revokes every session.
    pub async fn set_user_disabled(&self, user: UserId, disabled: bool) -> Result<(), Error> {
        if !self.accounts.set_disabled(user, disabled).await? {
            return Err(Error::NotFound);
        }
        self.forget_user(user);
        self.audit(
            if disabled {
                "user_disabled"
            } else {
                "user_enabled"
            },
            Some(user),
            None,
            None,
            json!({}),
        )
        .await;
        if disabled {
            self.revoke_user_sessions(user, None, RevokeReason::AccountDisabled, None)
                .await?;
        }
        Ok(())
    }

    /// Library mode and the admin API: opens a session for an existing user
    /// (authenticated by the caller) with application claims. The session
    /// records `auth_time` = now and `aal1`.
    pub async fn create_session(
        &self,
        user: UserId,
        claims: serde_json::Map<String, serde_json::Value>,
        ctx: &LoginContext,
    ) -> Result<Grant, Error> {
        Self::check_app_claims(&claims)?;
        let user = self
            .accounts
            .user_by_id(user)
            .await?
            .ok_or(Error::NotFound)?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        let grant = self
            .open_session(&user, self.clock.now(), Aal::Aal1, claims, ctx)
            .await?;
        self.audit(
            "session_created",
            Some(user.id),
            Some(grant.session.id),
            ctx.device.ip.as_deref(),
            json!({ "by": "api" }),
        )
        .await;
        Ok(grant)
    }

    /// The shadow user of an externally authenticated user, created on first use.
    pub async fn external_user(&self, external: &str) -> Result<User, Error> {
        let x = ExternalId::parse(external).ok_or_else(|| {
            Error::field(
                "user_id",
                "must be 1–200 characters without control characters",
            )
        })?;
        Ok(self.accounts.external_user(&x, UserId::new()).await?)
    }

    /// Library mode: a session for an externally authenticated user, by the
    /// caller's own id for them (a shadow user row is created on first use).
    pub async fn create_external_session(
        &self,
        external: &str,
        claims: serde_json::Map<String, serde_json::Value>,
        ctx: &LoginContext,
    ) -> Result<Grant, Error> {
        Self::check_app_claims(&claims)?;
        let user = self.external_user(external).await?;
        self.create_session(user.id, claims, ctx).await
    }

    /// Admin API: prepares a session for an external user and returns the
    /// user and a one-time handoff code (stored hashed, valid
    /// [`HANDOFF_TTL`] seconds) that the browser redeems with
    /// [`Engine::exchange_handoff`]. The session itself is created at the
    /// exchange, so it records the browser's device, not the caller's.
    pub async fn create_handoff(
        &self,
        external: &str,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(User, String), Error> {
        Self::check_app_claims(&claims)?;
        let user = self.external_user(external).await?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        let code = format!("shc_{}", crypto::b64(&crypto::random::<32>()));
        // The account store's clock: it is the one that checks expiry.
        let now = self.accounts.ping().await?;
        self.accounts
            .put_one_time(OneTimeToken {
                kind: HANDOFF,
                hash: crypto::sha256(code.as_bytes()),
                user_id: user.id,
                payload: json!({ "claims": claims }),
                expires_at: now + HANDOFF_TTL,
            })
            .await?;
        self.audit("handoff_created", Some(user.id), None, None, json!({}))
            .await;
        Ok((user, code))
    }

    /// Redeems a handoff code once: opens the prepared session for the
    /// device presenting it. Unknown, used and expired codes are alike.
    pub async fn exchange_handoff(&self, code: &str, ctx: &LoginContext) -> Result<Grant, Error> {
        if !code.starts_with("shc_") || code.len() > 64 {
            return Err(Error::HandoffInvalid);
        }
        let hash = crypto::sha256(code.as_bytes());
        let t = self
            .accounts
            .take_one_time(HANDOFF, &hash)
            .await?
            .ok_or(Error::HandoffInvalid)?;
        let claims = t
            .payload
            .get("claims")
            .and_then(|c| c.as_object())
            .cloned()
            .unwrap_or_default();
        match self.create_session(t.user_id, claims, ctx).await {
            Err(Error::NotFound) => Err(Error::HandoffInvalid),
            other => other,
        }
    }

    /// Admin API: replaces the application claims of a user's live sessions.
    /// They reach access tokens at the next refresh, or — with `revoke` —
    /// every session ends now (reason `revoked_by_admin`).
    pub async fn set_user_claims(
        &self,
        user: UserId,
        claims: serde_json::Map<String, serde_json::Value>,
        revoke: bool,
    ) -> Result<u64, Error> {
        Self::check_app_claims(&claims)?;
        if self.accounts.user_by_id(user).await?.is_none() {
            return Err(Error::NotFound);
        }
        let n = self.sessions.set_user_claims(user, &claims).await?;
        self.audit(
            "claims_changed",
            Some(user),
            None,
            None,
            json!({ "sessions": n, "revoke": revoke }),
        )
        .await;
        if revoke {
            self.revoke_user_sessions(user, None, RevokeReason::RevokedByAdmin, None)
                .await?;
        }
        Ok(n)
    }

    /// Deletes a user: every session ends (reason `account_deleted`, with
    /// revocation rows so resource servers learn it), then the row goes.
    pub async fn delete_user(&self, user: UserId) -> Result<(), Error> {
        if self.accounts.user_by_id(user).await?.is_none() {
            return Err(Error::NotFound);
        }
        self.revoke_user_sessions(user, None, RevokeReason::AccountDeleted, None)
            .await?;
        let deleted = self.accounts.delete_user(user).await?;
        self.forget_user(user);
        if !deleted {
            return Err(Error::NotFound);
        }
        self.audit("user_deleted", Some(user), None, None, json!({}))
            .await;
        Ok(())
    }

    /// The retention job (DESIGN §8): removes sessions that ended more than
    /// `revoked_session_visibility` ago (the device list no longer shows
    /// them), revocation rows past `not_after`, expired one-time tokens, and
    /// audit rows older than `audit_retention` seconds.
    pub async fn purge(&self, audit_retention: i64) -> Result<Purged, Error> {
        let now = self.sessions.now().await?;
        let s = self
            .sessions
            .purge_sessions(now - self.cfg.revoked_session_visibility)
            .await?;
        let a = self.accounts.purge_accounts(now - audit_retention).await?;
        let total = Purged {
            sessions: s.sessions,
            revocations: s.revocations,
            one_time_tokens: a.one_time_tokens,
            audit: a.audit,
        };
        if total != Purged::default() {
            tracing::info!(
                sessions = total.sessions,
                revocations = total.revocations,
                one_time_tokens = total.one_time_tokens,
                audit = total.audit,
                "retention purge"
            );
        }
        Ok(total)
    }

    /// How many sessions are live now (the `live_sessions` gauge).
    pub async fn live_sessions(&self) -> Result<u64, Error> {
        Ok(self.sessions.count_live().await?)
    }

    /// Reads the audit log (admin API, `sesame audit`).
    pub async fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, Error> {
        Ok(self.accounts.read_audit(filter).await?)
    }

    /// Checks application claims for a session: an object of at most 1 KiB
    /// whose names avoid the reserved ones.
    pub fn check_app_claims(
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Error> {
        if let Some(k) = claims
            .keys()
            .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
        {
            return Err(Error::field("claims", format!("`{k}` is a reserved claim")));
        }
        if serde_json::to_vec(claims)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
            > 1024
        {
            return Err(Error::field("claims", "must be at most 1 KiB"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::mask_ip;

    #[test]
    fn ips_are_masked_to_their_network() {
        assert_eq!(mask_ip("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(mask_ip("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(mask_ip("not an ip"), "?");
    }
}
