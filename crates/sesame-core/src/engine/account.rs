//! The account lifecycle (DESIGN §3): email verification, password reset,
//! the TOTP second factor and its login step, re-authentication, email
//! change and self-service account delete. Same rules as the rest of the
//! engine: store time for expiry, one-time tokens stored as SHA-256 only,
//! every change audited, notices handed to the host.

use super::Engine;
use crate::access::VerifiedClaims;
use crate::crypto;
use crate::error::Error;
use crate::ids::{Email, UserId};
use crate::notice::Notice;
use crate::password::Password;
use crate::session::{Aal, RevokeReason, Session, Transport};
use crate::store::{OneTimeToken, StoreError, User};
use crate::totp;
use serde_json::json;

/// One-time-token kinds and the prefixes of their tokens. The prefix lets a
/// token of one kind be refused before any store call when presented as
/// another, and the kind column makes the store refuse it too.
const VERIFY: Kind = ("verify_email", "sev_");
const RESET: Kind = ("password_reset", "spr_");
const CHALLENGE: Kind = ("mfa_challenge", "smc_");

/// Wrong codes one MFA challenge survives; the next one ends it and the
/// user starts again with the password.
pub const MFA_CHALLENGE_ATTEMPTS: u64 = 5;

/// What a client needs to add a TOTP factor to an app.
pub struct TotpEnrolment {
    /// The secret in base32 (for typing it in).
    pub secret: String,
    /// The `otpauth://` URI (for the QR code).
    pub otpauth_uri: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(…)")
    }
}

/// The second factor a user presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FactorUsed {
    Totp,
    RecoveryCode,
}

fn new_token(prefix: &str) -> (String, [u8; 32]) {
    let t = format!("{prefix}{}", crypto::b64(&crypto::random::<32>()));
    let h = crypto::sha256(t.as_bytes());
    (t, h)
}

/// The SHA-256 of a presented one-time token, if it has the right shape
/// (prefix and length); anything else never reaches the store.
fn token_hash(presented: &str, prefix: &str) -> Option<[u8; 32]> {
    (presented.starts_with(prefix) && presented.len() <= 64)
        .then(|| crypto::sha256(presented.as_bytes()))
}

/// A one-time-token kind: the stored kind and the token prefix.
type Kind = (&'static str, &'static str);

impl Engine {
    /// Stores a new one-time token of `kind` for `user` (SHA-256 only,
    /// expiring `ttl` seconds after the account store's now) and returns it.
    async fn issue_token(
        &self,
        kind: Kind,
        user: UserId,
        payload: serde_json::Value,
        ttl: i64,
    ) -> Result<String, StoreError> {
        let (token, hash) = new_token(kind.1);
        let now = self.accounts.ping().await?;
        self.accounts
            .put_one_time(OneTimeToken {
                kind: kind.0,
                hash,
                user_id: user,
                payload,
                expires_at: now + ttl,
            })
            .await?;
        Ok(token)
    }

    /// Redeems a presented one-time token of `kind` once, with its user;
    /// a malformed, unknown, used or expired token, or a vanished user, is
    /// `invalid`.
    async fn redeem_token(
        &self,
        kind: Kind,
        presented: &str,
        invalid: fn() -> Error,
    ) -> Result<(OneTimeToken, User), Error> {
        let hash = token_hash(presented, kind.1).ok_or_else(invalid)?;
        let t = self
            .accounts
            .take_one_time(kind.0, &hash)
            .await?
            .ok_or_else(invalid)?;
        let user = self
            .accounts
            .user_by_id(t.user_id)
            .await?
            .ok_or_else(invalid)?;
        Ok((t, user))
    }

    pub(super) fn notify(&self, n: Notice) {
        if let Some(h) = &self.on_notice {
            (h.0)(n);
        }
    }

    /// Stores a verification token for the user's current address and
    /// hands the link to the host.
    pub(super) async fn send_verification(&self, user: UserId, email: &Email) -> Result<(), Error> {
        let token = self
            .issue_token(
                VERIFY,
                user,
                json!({ "email": email.as_str() }),
                self.cfg.email_verification_ttl,
            )
            .await?;
        self.notify(Notice::VerifyEmail {
            user,
            to: email.clone(),
            token,
        });
        Ok(())
    }

    /// `POST /auth/verify`: redeems a verification token once. Unknown,
    /// used, expired tokens and tokens for an address the account no longer
    /// has are alike.
    pub async fn verify_email(&self, presented: &str, ip: Option<&str>) -> Result<(), Error> {
        let hash = token_hash(presented, VERIFY.1).ok_or(Error::LinkInvalid)?;
        let t = self
            .accounts
            .take_one_time(VERIFY.0, &hash)
            .await?
            .ok_or(Error::LinkInvalid)?;
        let email = t
            .payload
            .get("email")
            .and_then(|e| e.as_str())
            .and_then(|e| Email::parse(e).ok())
            .ok_or(Error::LinkInvalid)?;
        let marked = self.accounts.mark_email_verified(t.user_id, &email).await?;
        self.forget_user(t.user_id);
        if !marked {
            return Err(Error::LinkInvalid);
        }
        self.audit("email_verified", Some(t.user_id), None, ip, json!({}))
            .await;
        Ok(())
    }

    /// `POST /auth/verify/resend` for a signed-in user: a new link if the
    /// address is not verified yet (nothing otherwise).
    pub async fn resend_verification(&self, user: UserId) -> Result<(), Error> {
        let u = self
            .accounts
            .user_by_id(user)
            .await?
            .ok_or(Error::NotFound)?;
        match u.email() {
            Some(e) if !u.email_verified && !u.disabled => self.send_verification(u.id, e).await,
            _ => Ok(()),
        }
    }

    /// `POST /auth/verify/resend` by address (a user who cannot sign in
    /// before verifying): the same outcome for every address. The server
    /// runs it after answering, so timing says nothing either.
    pub async fn resend_verification_to(&self, email: &str) -> Result<(), Error> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        match self.accounts.user_by_email(&email).await? {
            Some(c) => self.resend_verification(c.user.id).await,
            None => Ok(()),
        }
    }

    /// `POST /auth/password/forgot`: mails a reset link if the address has
    /// an enabled account. The server answers 202 before calling this, so
    /// neither the answer nor its timing depends on the address.
    pub async fn forgot_password(&self, email: &str, ip: Option<&str>) -> Result<(), Error> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let Some(c) = self.accounts.user_by_email(&email).await? else {
            return Ok(());
        };
        if c.user.disabled {
            return Ok(());
        }
        let Some(to) = c.user.email().cloned() else {
            return Ok(());
        };
        let token = self
            .issue_token(
                RESET,
                c.user.id,
                json!({ "email": to.as_str() }),
                self.cfg.password_reset_ttl,
            )
            .await?;
        self.audit(
            "password_reset_requested",
            Some(c.user.id),
            None,
            ip,
            json!({}),
        )
        .await;
        self.notify(Notice::PasswordReset {
            user: c.user.id,
            to,
            token,
        });
        Ok(())
    }

    /// `POST /auth/password/reset`: sets a new password with a reset token
    /// and ends every session. The new password is checked before the
    /// token is spent, so a rejected password leaves the link usable. A
    /// reset proves the mailbox, so it also verifies the address.
    pub async fn reset_password(
        &self,
        presented: &str,
        new_password: String,
        ip: Option<&str>,
    ) -> Result<(), Error> {
        let password =
            Password::new_checked(new_password).map_err(|e| Self::password_field("password", e))?;
        let (t, user) = self
            .redeem_token(RESET, presented, || Error::LinkInvalid)
            .await?;
        if user.disabled {
            return Err(Error::LinkInvalid);
        }
        let phc = self.hasher.hash(password).await.map_err(Self::hash_error)?;
        self.accounts.set_password_hash(user.id, &phc).await?;
        let mailed = t
            .payload
            .get("email")
            .and_then(|e| e.as_str())
            .and_then(|e| Email::parse(e).ok());
        if let Some(e) = &mailed {
            self.accounts.mark_email_verified(user.id, e).await?;
            self.forget_user(user.id);
        }
        self.audit("password_reset", Some(user.id), None, ip, json!({}))
            .await;
        self.revoke_user_sessions(user.id, None, RevokeReason::PasswordChanged, ip)
            .await?;
        if let Some(to) = user.email().cloned() {
            self.notify(Notice::PasswordChanged { user: user.id, to });
        }
        Ok(())
    }

    /// The login step for a user with a confirmed factor: a one-time MFA
    /// challenge (its own token kind, `smc_…`, stored hashed) and the
    /// `mfa_required` answer carrying it. No session exists yet.
    pub(super) async fn mfa_challenge(&self, user: &User, transport: Transport) -> Error {
        let issued = self
            .issue_token(
                CHALLENGE,
                user.id,
                json!({ "transport": transport.as_str(), "failures": 0 }),
                self.cfg.mfa_challenge_ttl,
            )
            .await;
        match issued {
            Ok(challenge) => Error::MfaRequired {
                challenge,
                methods: vec!["totp", "recovery_code"],
            },
            Err(e) => e.into(),
        }
    }

    /// `POST /auth/login/mfa`: completes a login with a TOTP or recovery
    /// code. A wrong code costs one of the challenge's
    /// [`MFA_CHALLENGE_ATTEMPTS`]; the session carries `aal2`.
    ///
    /// `gate` runs once the challenge's user is known and before the code
    /// is checked — the host's per-account attempt limit. When it refuses,
    /// the challenge goes back unchanged and its error is returned.
    pub async fn login_mfa<F, Fut>(
        &self,
        challenge: &str,
        code: &str,
        ctx: &super::LoginContext,
        gate: F,
    ) -> Result<super::Grant, Error>
    where
        F: FnOnce(UserId) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        // Taking the challenge serialises guesses: a parallel guess finds
        // nothing and fails, so attempts cannot be spent concurrently.
        let (t, user) = self
            .redeem_token(CHALLENGE, challenge, || Error::MfaChallengeInvalid)
            .await?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        if let Err(e) = gate(user.id).await {
            self.accounts.put_one_time(t).await?;
            return Err(e);
        }
        let ip = ctx.device.ip.as_deref();
        let Some(used) = self.check_factor(user.id, code).await? else {
            let failures = t
                .payload
                .get("failures")
                .and_then(|f| f.as_u64())
                .unwrap_or(0)
                + 1;
            self.audit(
                "mfa_failed",
                Some(user.id),
                None,
                ip,
                json!({ "failures": failures }),
            )
            .await;
            if failures < MFA_CHALLENGE_ATTEMPTS {
                let mut payload = t.payload.clone();
                payload["failures"] = json!(failures);
                self.accounts
                    .put_one_time(OneTimeToken { payload, ..t })
                    .await?;
            }
            return Err(Error::InvalidMfaCode);
        };
        let transport = t
            .payload
            .get("transport")
            .and_then(|v| v.as_str())
            .and_then(Transport::parse)
            .unwrap_or(ctx.transport);
        let ctx = super::LoginContext {
            transport,
            ..ctx.clone()
        };
        let grant = self
            .open_session(&user, self.clock.now(), Aal::Aal2, Default::default(), &ctx)
            .await?;
        self.audit(
            "login_succeeded",
            Some(user.id),
            Some(grant.session.id),
            ip,
            json!({ "mfa": factor_name(used) }),
        )
        .await;
        self.notice_new_device(&user, &grant.session).await;
        Ok(grant)
    }

    /// Checks a second-factor code: a TOTP code (single use: its step must
    /// be newer than the last accepted one) or a recovery code (consumed).
    /// `None` when it is wrong, reused, or the user has no confirmed factor.
    async fn check_factor(&self, user: UserId, code: &str) -> Result<Option<FactorUsed>, Error> {
        let Some(f) = self.accounts.totp_factor(user).await? else {
            return Ok(None);
        };
        if !f.confirmed {
            return Ok(None);
        }
        if totp::is_totp_code(code) {
            let secret = self.open_totp_secret(user, &f.sealed_secret)?;
            let Some(step) = secret.matching_step(code, self.clock.now()) else {
                return Ok(None);
            };
            return Ok(self
                .accounts
                .use_totp_step(user, step)
                .await?
                .then_some(FactorUsed::Totp));
        }
        let Some(hash) = totp::recovery_code_hash(code) else {
            return Ok(None);
        };
        if !self.accounts.use_recovery_code(user, &hash).await? {
            return Ok(None);
        }
        let left = self.accounts.recovery_codes_left(user).await?;
        self.audit(
            "recovery_code_used",
            Some(user),
            None,
            None,
            json!({ "left": left }),
        )
        .await;
        Ok(Some(FactorUsed::RecoveryCode))
    }

    fn totp_aad(user: UserId) -> Vec<u8> {
        let mut aad = b"totp:".to_vec();
        aad.extend_from_slice(user.as_bytes());
        aad
    }

    fn open_totp_secret(&self, user: UserId, sealed: &[u8]) -> Result<totp::Secret, Error> {
        crypto::open(&self.master_key, &Self::totp_aad(user), sealed)
            .map(totp::Secret::from_bytes)
            .ok_or_else(|| Error::Internal("TOTP secret does not open with the master key".into()))
    }

    /// `POST /auth/reauthenticate`: a fresh password or second-factor check
    /// on the current session (`auth_time` = now). A code raises the
    /// session to `aal2`; a password keeps the level it had.
    pub async fn reauthenticate(
        &self,
        claims: &VerifiedClaims,
        password: Option<String>,
        code: Option<&str>,
        ip: Option<&str>,
    ) -> Result<Session, Error> {
        let user = claims.user_id();
        let session = self.live_own_session(claims).await?;
        let aal = match (password, code) {
            (Some(p), None) => {
                let p = Password::presented(p).map_err(|e| Self::password_field("password", e))?;
                let cred = self
                    .accounts
                    .credential_by_id(user)
                    .await?
                    .ok_or(Error::InvalidToken)?;
                let v = self
                    .hasher
                    .verify(p, cred.password_hash)
                    .await
                    .map_err(Self::hash_error)?;
                if !v.ok {
                    self.audit(
                        "reauthentication_failed",
                        Some(user),
                        Some(session.id),
                        ip,
                        json!({}),
                    )
                    .await;
                    return Err(Error::InvalidCredentials);
                }
                session.aal
            }
            (None, Some(c)) => {
                if self.check_factor(user, c).await?.is_none() {
                    self.audit(
                        "reauthentication_failed",
                        Some(user),
                        Some(session.id),
                        ip,
                        json!({}),
                    )
                    .await;
                    return Err(Error::InvalidMfaCode);
                }
                Aal::Aal2
            }
            _ => {
                return Err(Error::field(
                    "password",
                    "give exactly one of `password` and `code`",
                ));
            }
        };
        let s = self
            .sessions
            .reauthenticate(session.id, aal)
            .await?
            .ok_or(Error::InvalidToken)?;
        self.audit(
            "reauthenticated",
            Some(user),
            Some(s.id),
            ip,
            json!({ "aal": aal.as_str() }),
        )
        .await;
        Ok(s)
    }

    async fn live_own_session(&self, claims: &VerifiedClaims) -> Result<Session, Error> {
        match self.sessions.session(claims.session_id()).await? {
            Some(s) if s.user_id == claims.user_id() && s.is_live(self.clock.now()) => Ok(s),
            Some(s) if s.user_id == claims.user_id() => Err(match s.revoke_reason {
                Some(r) => Error::SessionRevoked(r),
                None => Error::SessionExpired,
            }),
            _ => Err(Error::InvalidToken),
        }
    }

    /// The re-authentication gate (`max_auth_age`): the session's last
    /// credential check must be recent, else 403 `reauthentication_required`.
    pub async fn require_recent_auth(&self, claims: &VerifiedClaims) -> Result<Session, Error> {
        let s = self.live_own_session(claims).await?;
        if self.clock.now() - s.auth_time > self.cfg.max_auth_age {
            return Err(Error::ReauthenticationRequired);
        }
        Ok(s)
    }

    async fn local_user(&self, user: UserId) -> Result<(User, Email), Error> {
        let u = self
            .accounts
            .user_by_id(user)
            .await?
            .ok_or(Error::InvalidToken)?;
        let e = u.email().cloned().ok_or_else(|| {
            Error::field(
                "user",
                "accounts of externally authenticated users have no email or factor here",
            )
        })?;
        Ok((u, e))
    }

    /// `POST /auth/email` (re-authentication required): changes the address,
    /// which then needs verifying, mails the link to the new address and
    /// tells the old one.
    pub async fn change_email(
        &self,
        claims: &VerifiedClaims,
        new_email: &str,
        ip: Option<&str>,
    ) -> Result<User, Error> {
        let new = Email::parse(new_email).map_err(|e| Error::field("email", e.to_string()))?;
        self.require_recent_auth(claims).await?;
        let (user, old) = self.local_user(claims.user_id()).await?;
        if old.key() == new.key() {
            return Ok(user);
        }
        let changed = self.accounts.set_email(user.id, &new, false).await;
        self.forget_user(user.id);
        match changed {
            Ok(true) => {}
            Ok(false) => return Err(Error::InvalidToken),
            Err(StoreError::Conflict) => return Err(Error::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        self.audit(
            "email_changed",
            Some(user.id),
            Some(claims.session_id()),
            ip,
            json!({}),
        )
        .await;
        self.notify(Notice::EmailChanged {
            user: user.id,
            to: old,
            new: new.clone(),
        });
        self.send_verification(user.id, &new).await?;
        self.accounts
            .user_by_id(user.id)
            .await?
            .ok_or(Error::InvalidToken)
    }

    /// `POST /auth/mfa/totp` (re-authentication required: a session thief
    /// must not be able to lock the owner out with a factor of his own):
    /// a new pending secret. Login asks for it only once confirmed.
    pub async fn begin_totp(&self, claims: &VerifiedClaims) -> Result<TotpEnrolment, Error> {
        self.require_recent_auth(claims).await?;
        let (user, email) = self.local_user(claims.user_id()).await?;
        let secret = totp::Secret::generate();
        let sealed = crypto::seal(
            &self.master_key,
            &Self::totp_aad(user.id),
            secret.as_bytes(),
        );
        if !self.accounts.put_pending_totp(user.id, &sealed).await? {
            return Err(Error::MfaAlreadyEnabled);
        }
        Ok(TotpEnrolment {
            secret: secret.base32(),
            otpauth_uri: secret.otpauth_uri(&self.cfg.totp_issuer, email.as_str()),
        })
    }

    /// `POST /auth/mfa/totp/confirm`: a code from the app confirms the
    /// pending factor; returns the ten recovery codes, shown once. The
    /// current session has just proven the factor: it becomes `aal2`.
    pub async fn confirm_totp(
        &self,
        claims: &VerifiedClaims,
        code: &str,
        ip: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        let user = claims.user_id();
        let (_, email) = self.local_user(user).await?;
        let f = self
            .accounts
            .totp_factor(user)
            .await?
            .filter(|f| !f.confirmed)
            .ok_or(Error::MfaNotPending)?;
        let secret = self.open_totp_secret(user, &f.sealed_secret)?;
        let Some(step) = secret.matching_step(code, self.clock.now()) else {
            return Err(Error::InvalidMfaCode);
        };
        let codes = totp::recovery_codes();
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| c.1).collect();
        let confirmed = self.accounts.confirm_totp(user, step, &hashes).await?;
        self.forget_user(user);
        if !confirmed {
            return Err(Error::MfaNotPending);
        }
        self.sessions
            .reauthenticate(claims.session_id(), Aal::Aal2)
            .await?;
        self.audit(
            "mfa_enabled",
            Some(user),
            Some(claims.session_id()),
            ip,
            json!({ "method": "totp" }),
        )
        .await;
        self.notify(Notice::MfaChanged {
            user,
            to: email,
            enabled: true,
        });
        Ok(codes.into_iter().map(|c| c.0).collect())
    }

    /// `DELETE /auth/mfa/totp` (re-authentication required).
    pub async fn remove_totp(
        &self,
        claims: &VerifiedClaims,
        ip: Option<&str>,
    ) -> Result<(), Error> {
        self.require_recent_auth(claims).await?;
        self.drop_factor(claims.user_id(), Some(claims), ip, "mfa_disabled")
            .await
    }

    /// `sesame user mfa-reset`: removes a user's factor (lost phone and
    /// recovery codes), audited as done by an operator.
    pub async fn reset_mfa(&self, user: UserId) -> Result<(), Error> {
        self.drop_factor(user, None, None, "mfa_reset").await
    }

    async fn drop_factor(
        &self,
        user: UserId,
        claims: Option<&VerifiedClaims>,
        ip: Option<&str>,
        event: &'static str,
    ) -> Result<(), Error> {
        let u = self
            .accounts
            .user_by_id(user)
            .await?
            .ok_or(Error::NotFound)?;
        let removed = self.accounts.remove_totp(user).await?;
        self.forget_user(user);
        if !removed {
            return Err(Error::NotFound);
        }
        self.audit(
            event,
            Some(user),
            claims.map(|c| c.session_id()),
            ip,
            json!({}),
        )
        .await;
        if let Some(to) = u.email().cloned() {
            self.notify(Notice::MfaChanged {
                user,
                to,
                enabled: false,
            });
        }
        Ok(())
    }

    /// How many recovery codes the user has left (dashboard).
    pub async fn recovery_codes_left(&self, user: UserId) -> Result<u32, Error> {
        Ok(self.accounts.recovery_codes_left(user).await?)
    }

    /// `DELETE /auth/account` (re-authentication required): every session
    /// ends and the account row with its personal data goes; audit rows
    /// stay pseudonymised.
    pub async fn delete_account(&self, claims: &VerifiedClaims) -> Result<(), Error> {
        self.require_recent_auth(claims).await?;
        self.delete_user(claims.user_id()).await
    }

    /// After a login: a notice when none of the user's other recent
    /// sessions used this browser. A first session is no news.
    pub(super) async fn notice_new_device(&self, user: &User, new: &Session) {
        let Some(to) = user.email().cloned() else {
            return;
        };
        let Ok(all) = self.list_sessions(user.id).await else {
            return;
        };
        let others: Vec<&Session> = all.iter().filter(|s| s.id != new.id).collect();
        if others.is_empty() || others.iter().any(|s| s.user_agent == new.user_agent) {
            return;
        }
        let device = crate::session::DeviceInfo {
            ip: new.ip.clone(),
            user_agent: new.user_agent.clone(),
        };
        self.notify(Notice::NewDevice {
            user: user.id,
            to,
            device: device.label(),
            ip: new.ip.clone(),
        });
    }

    /// After reuse detection: tell the owner.
    pub(super) async fn notice_reuse(&self, session: &Session) {
        let Ok(Some(u)) = self.accounts.user_by_id(session.user_id).await else {
            return;
        };
        if let Some(to) = u.email().cloned() {
            let device = crate::session::DeviceInfo {
                ip: session.ip.clone(),
                user_agent: session.user_agent.clone(),
            };
            self.notify(Notice::ReuseDetected {
                user: u.id,
                to,
                device: device.label(),
            });
        }
    }
}

fn factor_name(f: FactorUsed) -> &'static str {
    match f {
        FactorUsed::Totp => "totp",
        FactorUsed::RecoveryCode => "recovery_code",
    }
}
