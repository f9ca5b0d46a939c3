//! A store wrapper that fails on command: every call while "down", or the
//! Nth call from now. SQLite is embedded, so there is no connection to cut;
//! this is how the tests inject store faults for it (SECURITY.md, F7).

use async_trait::async_trait;
use sesame_core::clock::UnixTime;
use sesame_core::ids::{Email, SessionId, UserId};
use sesame_core::keys::KeyRecord;
use sesame_core::rotation::{Presented, RotationPolicy};
use sesame_core::session::{Aal, RevokeReason, Session};
use sesame_core::store::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

#[derive(Debug, Default)]
pub struct Faults {
    down: AtomicBool,
    /// Fail the call when this countdown reaches zero (negative: off).
    countdown: AtomicI64,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            down: AtomicBool::new(false),
            countdown: AtomicI64::new(-1),
        })
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Fail the `n`th store call from now (1 = the next one), once.
    pub fn fail_nth(&self, n: i64) {
        self.countdown.store(n, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected: store down".into()));
        }
        if self.countdown.fetch_sub(1, Ordering::SeqCst) == 1 {
            return Err(StoreError::Unavailable("injected: nth call fails".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    pub inner: S,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl<S: AccountStore> AccountStore for FaultyStore<S> {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        self.faults.check()?;
        self.inner.create_user(user).await
    }
    async fn user_by_email(&self, email: &Email) -> Result<Option<UserCredential>, StoreError> {
        self.faults.check()?;
        self.inner.user_by_email(email).await
    }
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.faults.check()?;
        self.inner.user_by_id(id).await
    }
    async fn credential_by_id(&self, id: UserId) -> Result<Option<UserCredential>, StoreError> {
        self.faults.check()?;
        self.inner.credential_by_id(id).await
    }
    async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), StoreError> {
        self.faults.check()?;
        self.inner.set_password_hash(id, phc).await
    }
    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.set_disabled(id, disabled).await
    }
    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError> {
        self.faults.check()?;
        self.inner.list_users(limit, offset).await
    }
    async fn load_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.faults.check()?;
        self.inner.load_keys().await
    }
    async fn save_keys(&self, records: &[KeyRecord]) -> Result<(), StoreError> {
        self.faults.check()?;
        self.inner.save_keys(records).await
    }
    async fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.faults.check()?;
        self.inner.audit(event).await
    }
    async fn ping(&self) -> Result<UnixTime, StoreError> {
        self.faults.check()?;
        self.inner.ping().await
    }
    async fn external_user(
        &self,
        external: &ExternalId,
        new_id: UserId,
    ) -> Result<User, StoreError> {
        self.faults.check()?;
        self.inner.external_user(external, new_id).await
    }
    async fn delete_user(&self, id: UserId) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.delete_user(id).await
    }
    async fn put_one_time(&self, token: OneTimeToken) -> Result<(), StoreError> {
        self.faults.check()?;
        self.inner.put_one_time(token).await
    }
    async fn take_one_time(
        &self,
        kind: &'static str,
        hash: &[u8; 32],
    ) -> Result<Option<OneTimeToken>, StoreError> {
        self.faults.check()?;
        self.inner.take_one_time(kind, hash).await
    }
    async fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.faults.check()?;
        self.inner.read_audit(filter).await
    }
    async fn purge_accounts(&self, audit_before: UnixTime) -> Result<Purged, StoreError> {
        self.faults.check()?;
        self.inner.purge_accounts(audit_before).await
    }
    async fn set_email(
        &self,
        id: UserId,
        email: &Email,
        verified: bool,
    ) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.set_email(id, email, verified).await
    }
    async fn mark_email_verified(&self, id: UserId, email: &Email) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.mark_email_verified(id, email).await
    }
    async fn totp_factor(&self, id: UserId) -> Result<Option<TotpFactor>, StoreError> {
        self.faults.check()?;
        self.inner.totp_factor(id).await
    }
    async fn put_pending_totp(&self, id: UserId, sealed: &[u8]) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.put_pending_totp(id, sealed).await
    }
    async fn confirm_totp(
        &self,
        id: UserId,
        step: i64,
        recovery: &[[u8; 32]],
    ) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.confirm_totp(id, step, recovery).await
    }
    async fn remove_totp(&self, id: UserId) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.remove_totp(id).await
    }
    async fn use_totp_step(&self, id: UserId, step: i64) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.use_totp_step(id, step).await
    }
    async fn use_recovery_code(&self, id: UserId, hash: &[u8; 32]) -> Result<bool, StoreError> {
        self.faults.check()?;
        self.inner.use_recovery_code(id, hash).await
    }
    async fn recovery_codes_left(&self, id: UserId) -> Result<u32, StoreError> {
        self.faults.check()?;
        self.inner.recovery_codes_left(id).await
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for FaultyStore<S> {
    async fn reauthenticate(&self, id: SessionId, aal: Aal) -> Result<Option<Session>, StoreError> {
        self.faults.check()?;
        self.inner.reauthenticate(id, aal).await
    }
    async fn create_session(&self, new: NewSession) -> Result<Created, StoreError> {
        self.faults.check()?;
        self.inner.create_session(new).await
    }
    async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        self.faults.check()?;
        self.inner.session(id).await
    }
    async fn rotate(
        &self,
        id: SessionId,
        p: &Presented,
        policy: &RotationPolicy,
    ) -> Result<RotationOutcome, StoreError> {
        self.faults.check()?;
        self.inner.rotate(id, p, policy).await
    }
    async fn revoke(
        &self,
        id: SessionId,
        reason: RevokeReason,
    ) -> Result<Option<Session>, StoreError> {
        self.faults.check()?;
        self.inner.revoke(id, reason).await
    }
    async fn revoke_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.faults.check()?;
        self.inner.revoke_user(user, keep, reason).await
    }
    async fn revoke_all(&self, reason: RevokeReason) -> Result<u64, StoreError> {
        self.faults.check()?;
        self.inner.revoke_all(reason).await
    }
    async fn list_sessions(
        &self,
        user: UserId,
        since: UnixTime,
    ) -> Result<Vec<Session>, StoreError> {
        self.faults.check()?;
        self.inner.list_sessions(user, since).await
    }
    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.faults.check()?;
        self.inner.revocations_after(after, limit).await
    }
    async fn now(&self) -> Result<UnixTime, StoreError> {
        self.faults.check()?;
        self.inner.now().await
    }
    async fn set_user_claims(
        &self,
        user: UserId,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, StoreError> {
        self.faults.check()?;
        self.inner.set_user_claims(user, claims).await
    }
    async fn purge_sessions(&self, ended_before: UnixTime) -> Result<Purged, StoreError> {
        self.faults.check()?;
        self.inner.purge_sessions(ended_before).await
    }
    async fn count_live(&self) -> Result<u64, StoreError> {
        self.faults.check()?;
        self.inner.count_live().await
    }
}
