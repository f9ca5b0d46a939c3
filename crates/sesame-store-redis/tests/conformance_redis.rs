//! The store conformance suite on Redis (sessions, under a random key
//! prefix per test) paired with SQLite (accounts, a fresh file per test).
//!
//! Needs `SESAME_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`); without it
//! every test says SKIPPED, or fails under `SESAME_REQUIRE_BACKENDS=1`.

use sesame_core::UnixTime;
use sesame_core::clock::ManualClock;
use sesame_core::ids::{SessionId, UserId};
use sesame_core::rotation::{Presented, RotationPolicy};
use sesame_core::session::{RevokeReason, Session};
use sesame_core::store::{
    Created, NewSession, Revocation, RotationOutcome, SessionStore, StoreError,
};
use sesame_store_redis::{RedisClock, RedisSessionStore, RedisStoreOptions};
use sesame_store_sqlx::{SqliteStore, SqliteStoreOptions};
use sesame_store_tests::Harness;
use std::path::PathBuf;
use std::sync::Arc;

/// The store under test, which deletes its keys (and the accounts
/// database file) when the test drops it.
#[derive(Debug)]
struct Cleanup {
    store: RedisSessionStore,
    url: String,
    sqlite: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.store.key_prefix());
        if let Ok(mut conn) =
            redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut conn)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.sqlite.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for Cleanup {
    async fn reauthenticate(
        &self,
        id: SessionId,
        aal: sesame_core::session::Aal,
    ) -> Result<Option<Session>, StoreError> {
        self.store.reauthenticate(id, aal).await
    }
    async fn create_session(&self, new: NewSession) -> Result<Created, StoreError> {
        self.store.create_session(new).await
    }
    async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        self.store.session(id).await
    }
    async fn rotate(
        &self,
        id: SessionId,
        presented: &Presented,
        policy: &RotationPolicy,
    ) -> Result<RotationOutcome, StoreError> {
        self.store.rotate(id, presented, policy).await
    }
    async fn revoke(
        &self,
        id: SessionId,
        reason: RevokeReason,
    ) -> Result<Option<Session>, StoreError> {
        self.store.revoke(id, reason).await
    }
    async fn revoke_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.store.revoke_user(user, keep, reason).await
    }
    async fn revoke_all(&self, reason: RevokeReason) -> Result<u64, StoreError> {
        self.store.revoke_all(reason).await
    }
    async fn list_sessions(
        &self,
        user: UserId,
        revoked_since: UnixTime,
    ) -> Result<Vec<Session>, StoreError> {
        self.store.list_sessions(user, revoked_since).await
    }
    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.store.revocations_after(after, limit).await
    }
    async fn now(&self) -> Result<UnixTime, StoreError> {
        self.store.now().await
    }
    async fn set_user_claims(
        &self,
        user: UserId,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, StoreError> {
        self.store.set_user_claims(user, claims).await
    }
    async fn purge_sessions(
        &self,
        ended_before: UnixTime,
    ) -> Result<sesame_core::store::Purged, StoreError> {
        self.store.purge_sessions(ended_before).await
    }
    async fn count_live(&self) -> Result<u64, StoreError> {
        self.store.count_live().await
    }
}

async fn redis_with_sqlite(clock: ManualClock) -> Result<Harness, String> {
    let url = std::env::var("SESAME_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| "SESAME_TEST_REDIS_URL not set".to_string())?;
    let n = u64::from_le_bytes(sesame_core::crypto::random::<8>());
    let store = RedisSessionStore::connect(
        &url,
        RedisStoreOptions {
            key_prefix: format!("sesame-test-{n:016x}:"),
            clock: RedisClock::Fixed(Arc::new(clock.clone())),
            ..RedisStoreOptions::default()
        },
    )
    .await
    .map_err(|e| format!("redis at {url}: {e} ({e:?})"))?;
    let path = std::env::temp_dir().join(format!("sesame-conformance-redis-{n:016x}.db"));
    let accounts = SqliteStore::open(
        &SqliteStoreOptions::new(format!("sqlite://{}", path.display())),
        Arc::new(clock.clone()),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Harness {
        accounts: Arc::new(accounts),
        sessions: Arc::new(Cleanup {
            store,
            url,
            sqlite: path,
        }),
        clock,
    })
}

sesame_store_tests::conformance_tests!(redis_with_sqlite);
