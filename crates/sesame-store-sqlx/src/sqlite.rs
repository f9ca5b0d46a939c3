//! The SQLite store: WAL journal, `synchronous = NORMAL`, a small pool, and
//! `BEGIN IMMEDIATE` for the few multi-statement writes (revocations, session
//! creation with its cap) so they wait for the write lock instead of failing.
//!
//! SQLite is embedded, so "store time" is the clock this store is given: the
//! server passes its clock, tests pass a manual one.

use async_trait::async_trait;
use sesame_core::clock::{Clock, UnixTime};
use sesame_core::ids::{Email, SessionId, UserId};
use sesame_core::keys::{KeyRecord, KeyState, SigningAlg};
use sesame_core::rotation::{Channel, Decision, Presented, RefreshState, RotationPolicy, decide};
use sesame_core::session::{Aal, RevokeReason, Session, Transport};
use sesame_core::store::{
    AccountStore, AuditEvent, AuditFilter, AuditRecord, Created, ExternalId, NewSession, NewUser,
    OneTimeToken, Purged, Revocation, RotationOutcome, SessionStore, StoreError, TotpFactor, User,
    UserCredential,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct SqliteStoreOptions {
    /// `sqlite://path` (created if missing).
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a request waits for a connection before `storage_unavailable`.
    pub acquire_timeout: Duration,
    /// How long a statement waits for SQLite's write lock.
    pub busy_timeout: Duration,
    /// Revocation rows stay relevant this long after the revocation
    /// (max access-token lifetime + leeway): `not_after = now + margin`.
    pub revocation_margin: i64,
}

impl SqliteStoreOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            revocation_margin: 660,
        }
    }
}

/// Accounts and sessions in one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers (WAL: they never block the writer).
    pool: SqlitePool,
    /// The one writer connection. SQLite admits one writer at a time; with
    /// several writer connections, the losers sleep in SQLite's busy handler
    /// (backing off up to 100 ms per try), which made refresh p99 spike to
    /// half a second under load. One connection turns that into a fair
    /// in-process queue on the pool.
    writer: SqlitePool,
    clock: Arc<dyn Clock>,
    margin: i64,
}

fn classify(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        sqlx::Error::Database(ref db) if db.is_unique_violation() => StoreError::Conflict,
        // SQLITE_BUSY / SQLITE_LOCKED past busy_timeout: transient, so "unavailable".
        sqlx::Error::Database(ref db)
            if matches!(db.code().as_deref(), Some("5" | "6" | "517")) =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Other(Box::new(other)),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt row: {what}").into())
}

fn hash32(v: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, StoreError> {
    v.map(|b| b.try_into().map_err(|_| corrupt("hash length")))
        .transpose()
}

const SESSION_COLS: &str = "id, user_id, transport, gen, cur, prev, rotated_at, rotated_ua_hash, \
     grace_answers, key_ver, created_at, last_seen_at, idle_expires_at, expires_at, auth_time, aal, \
     revoked_at, revoke_reason, ip, user_agent, claims";

struct Row_ {
    session: Session,
    state: RefreshState,
}

fn session_from_row(r: &SqliteRow) -> Result<Row_, StoreError> {
    let get_err = |_| corrupt("session column");
    let id: Vec<u8> = r.try_get("id").map_err(get_err)?;
    let user: Vec<u8> = r.try_get("user_id").map_err(get_err)?;
    let transport: String = r.try_get("transport").map_err(get_err)?;
    let transport = Transport::parse(&transport).ok_or_else(|| corrupt("transport"))?;
    let gen_: i64 = r.try_get("gen").map_err(get_err)?;
    let aal: String = r.try_get("aal").map_err(get_err)?;
    let reason: Option<String> = r.try_get("revoke_reason").map_err(get_err)?;
    let revoke_reason = reason
        .as_deref()
        .map(|s| RevokeReason::parse(s).ok_or_else(|| corrupt("reason")))
        .transpose()?;
    let claims: String = r.try_get("claims").map_err(get_err)?;
    let key_ver: i64 = r.try_get("key_ver").map_err(get_err)?;
    let session = Session {
        id: SessionId::from_bytes(id.try_into().map_err(|_| corrupt("session id"))?),
        user_id: UserId::from_bytes(user.try_into().map_err(|_| corrupt("user id"))?),
        transport,
        generation: u32::try_from(gen_).map_err(|_| corrupt("gen"))?,
        key_version: u8::try_from(key_ver).map_err(|_| corrupt("key_ver"))?,
        created_at: r.try_get("created_at").map_err(get_err)?,
        last_seen_at: r.try_get("last_seen_at").map_err(get_err)?,
        idle_expires_at: r.try_get("idle_expires_at").map_err(get_err)?,
        expires_at: r.try_get("expires_at").map_err(get_err)?,
        auth_time: r.try_get("auth_time").map_err(get_err)?,
        aal: Aal::parse(&aal).ok_or_else(|| corrupt("aal"))?,
        revoked_at: r.try_get("revoked_at").map_err(get_err)?,
        revoke_reason,
        ip: r.try_get("ip").map_err(get_err)?,
        user_agent: r.try_get("user_agent").map_err(get_err)?,
        claims: serde_json::from_str(&claims).map_err(|_| corrupt("claims"))?,
    };
    let grace: i64 = r.try_get("grace_answers").map_err(get_err)?;
    let state = RefreshState {
        generation: session.generation,
        cur: hash32(Some(r.try_get("cur").map_err(get_err)?))?.ok_or_else(|| corrupt("cur"))?,
        prev: hash32(r.try_get("prev").map_err(get_err)?)?,
        rotated_at: r.try_get("rotated_at").map_err(get_err)?,
        rotated_ua_hash: hash32(r.try_get("rotated_ua_hash").map_err(get_err)?)?,
        grace_answers: u32::try_from(grace).map_err(|_| corrupt("grace_answers"))?,
        revoked: if session.revoked_at.is_some() {
            session.revoke_reason
        } else {
            None
        },
        idle_expires_at: session.idle_expires_at,
        expires_at: session.expires_at,
        transport,
    };
    Ok(Row_ { session, state })
}

fn user_from_row(r: &SqliteRow) -> Result<User, StoreError> {
    let get_err = |_| corrupt("user column");
    let id: Vec<u8> = r.try_get("id").map_err(get_err)?;
    Ok(User {
        id: UserId::from_bytes(id.try_into().map_err(|_| corrupt("user id"))?),
        identity: crate::shared::identity(
            r.try_get("email").map_err(get_err)?,
            r.try_get("external_id").map_err(get_err)?,
        )?,
        email_verified: r.try_get::<i64, _>("email_verified").map_err(get_err)? != 0,
        disabled: r.try_get::<i64, _>("disabled").map_err(get_err)? != 0,
        mfa_enabled: r.try_get::<i64, _>("totp_confirmed").map_err(get_err)? != 0,
        created_at: r.try_get("created_at").map_err(get_err)?,
    })
}

fn credential_from_row(r: &SqliteRow) -> Result<UserCredential, StoreError> {
    Ok(UserCredential {
        user: user_from_row(r)?,
        password_hash: r.try_get("password_hash").map_err(|_| corrupt("hash"))?,
    })
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database.
    pub async fn open(
        opts: &SqliteStoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let store = Self::connect(opts, clock).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens (creating if missing) without migrating.
    pub async fn connect(
        opts: &SqliteStoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(&opts.url)
            .map_err(|e| StoreError::Other(Box::new(e)))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(opts.busy_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(classify)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(classify)?;
        Ok(Self {
            pool,
            writer,
            clock,
            margin: opts.revocation_margin,
        })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Other(Box::new(e)))
    }

    /// Migrations known to this build that the database has not applied.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let migrator = sqlx::migrate!("migrations/sqlite");
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        Ok(migrator
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect())
    }

    /// Audit rows, newest first (for tests and the `audit` command).
    pub async fn audit_kinds(
        &self,
        limit: u32,
    ) -> Result<Vec<(String, Option<String>, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT kind, session_id, detail FROM audit_log ORDER BY id DESC LIMIT ?")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter()
            .map(|r| {
                let sid: Option<Vec<u8>> = r.try_get("session_id").map_err(|_| corrupt("audit"))?;
                let sid = sid
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .map(|b| SessionId::from_bytes(b).to_string());
                Ok((
                    r.try_get("kind").map_err(|_| corrupt("audit"))?,
                    sid,
                    r.try_get("detail").map_err(|_| corrupt("audit"))?,
                ))
            })
            .collect()
    }

    /// Closes the pool (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// Rotates `id` if the presented token is its current one on a live
    /// session and on the session's own channel — the conditions under which
    /// `decide` answers `Rotate` — and returns the new row (RETURNING: one
    /// statement, one trip to the writer thread). `None`: no such row.
    async fn rotate_current(
        &self,
        id: SessionId,
        p: &Presented,
        policy: &RotationPolicy,
        now: UnixTime,
    ) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "UPDATE sessions SET gen = gen + 1, prev = cur, cur = ?, rotated_at = ?, rotated_ua_hash = ?, \
             grace_answers = 0, last_seen_at = ?, \
             idle_expires_at = CASE WHEN ? IS NULL THEN NULL ELSE MIN(? + ?, expires_at) END \
             WHERE id = ? AND gen = ? AND cur = ? AND revoked_at IS NULL \
             AND expires_at > ? AND (idle_expires_at IS NULL OR idle_expires_at > ?) \
             AND (transport = 'bearer') = ? \
             RETURNING {SESSION_COLS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(p.successor_hash.as_slice())
            .bind(now)
            .bind(p.ua_hash.as_slice())
            .bind(now)
            .bind(policy.idle_ttl)
            .bind(now)
            .bind(policy.idle_ttl)
            .bind(id.as_bytes().as_slice())
            .bind(i64::from(p.generation))
            .bind(p.secret_hash.as_slice())
            .bind(now)
            .bind(now)
            .bind(matches!(p.channel, Channel::Body))
            .fetch_optional(&self.writer)
            .await
            .map_err(classify)?;
        row.as_ref()
            .map(|r| session_from_row(r).map(|r| r.session))
            .transpose()
    }

    async fn load(&self, id: SessionId) -> Result<Option<Row_>, StoreError> {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)
    }

    /// Revokes `ids` (those still live) inside `tx`, writing revocation rows.
    async fn revoke_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        ids: &[SessionId],
        reason: RevokeReason,
        now: UnixTime,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut done = Vec::new();
        for id in ids {
            let n = sqlx::query(
                "UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason.as_str())
            .bind(id.as_bytes().as_slice())
            .execute(&mut **tx)
            .await
            .map_err(classify)?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "INSERT INTO revocations (session_id, reason, not_after) VALUES (?, ?, ?)",
                )
                .bind(id.as_bytes().as_slice())
                .bind(reason.as_str())
                .bind(now + self.margin)
                .execute(&mut **tx)
                .await
                .map_err(classify)?;
                done.push(*id);
            }
        }
        Ok(done)
    }

    async fn live_ids(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<SessionId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? \
             AND (idle_expires_at IS NULL OR idle_expires_at > ?) ORDER BY last_seen_at ASC, created_at ASC",
        )
        .bind(user.as_bytes().as_slice())
        .bind(now)
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| {
                let b: Vec<u8> = r.try_get("id").map_err(|_| corrupt("id"))?;
                Ok(SessionId::from_bytes(
                    b.try_into().map_err(|_| corrupt("id"))?,
                ))
            })
            .collect()
    }

    async fn revoke_many(
        &self,
        ids: &[SessionId],
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let done = self.revoke_in(&mut tx, ids, reason, now).await?;
        tx.commit().await.map_err(classify)?;
        Ok(done)
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let now = self.clock.now();
        sqlx::query(
            "INSERT INTO users (id, email, email_key, password_hash, email_verified, disabled, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(user.id.as_bytes().as_slice())
        .bind(user.email.as_str())
        .bind(user.email.key())
        .bind(&user.password_hash)
        .bind(i64::from(user.email_verified))
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(User {
            id: user.id,
            identity: sesame_core::store::Identity::Email(user.email),
            email_verified: user.email_verified,
            disabled: false,
            mfa_enabled: false,
            created_at: now,
        })
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<UserCredential>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE email_key = ?")
            .bind(email.key())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn credential_by_id(&self, id: UserId) -> Result<Option<UserCredential>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(phc)
            .bind(self.clock.now())
            .bind(id.as_bytes().as_slice())
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?")
            .bind(i64::from(disabled))
            .bind(self.clock.now())
            .bind(id.as_bytes().as_slice())
            .execute(&self.writer)
            .await
            .map_err(classify)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY created_at, id LIMIT ? OFFSET ?")
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn load_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|r| {
                let e = |_| corrupt("signing key");
                let alg: String = r.try_get("alg").map_err(e)?;
                let state: String = r.try_get("state").map_err(e)?;
                Ok(KeyRecord {
                    kid: r.try_get("kid").map_err(e)?,
                    alg: SigningAlg::parse(&alg).ok_or_else(|| corrupt("alg"))?,
                    state: KeyState::parse(&state).ok_or_else(|| corrupt("key state"))?,
                    sealed_private: r.try_get("sealed_private").map_err(e)?,
                    public: r.try_get("public").map_err(e)?,
                    created_at: r.try_get("created_at").map_err(e)?,
                    retired_at: r.try_get("retired_at").map_err(e)?,
                })
            })
            .collect()
    }

    async fn save_keys(&self, records: &[KeyRecord]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM signing_keys")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for k in records {
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, state, sealed_private, public, created_at, retired_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&k.kid)
            .bind(k.alg.as_str())
            .bind(k.state.as_str())
            .bind(&k.sealed_private)
            .bind(&k.public)
            .bind(k.created_at)
            .bind(k.retired_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn audit(&self, ev: AuditEvent) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_log (at, kind, user_id, session_id, ip, detail) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(self.clock.now())
            .bind(ev.kind)
            .bind(ev.user_id.map(|u| u.as_bytes().to_vec()))
            .bind(ev.session_id.map(|s| s.as_bytes().to_vec()))
            .bind(ev.ip)
            .bind(ev.detail.to_string())
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn ping(&self) -> Result<UnixTime, StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(self.clock.now())
    }

    async fn external_user(
        &self,
        external: &ExternalId,
        new_id: UserId,
    ) -> Result<User, StoreError> {
        let now = self.clock.now();
        let (email, key) = crate::shared::shadow_email(external);
        sqlx::query(
            "INSERT INTO users (id, email, email_key, password_hash, email_verified, disabled, created_at, updated_at, external_id) \
             VALUES (?, ?, ?, '', 0, 0, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(new_id.as_bytes().as_slice())
        .bind(email)
        .bind(key)
        .bind(now)
        .bind(now)
        .bind(external.as_str())
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        let row = sqlx::query("SELECT * FROM users WHERE external_id = ?")
            .bind(external.as_str())
            .fetch_one(&self.writer)
            .await
            .map_err(classify)?;
        user_from_row(&row)
    }

    async fn delete_user(&self, id: UserId) -> Result<bool, StoreError> {
        // The audit rows stay, pseudonymised: the user id is a random id
        // that now names nobody, and the client IPs go.
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE audit_log SET ip = NULL WHERE user_id = ?")
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let n = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        tx.commit().await.map_err(classify)?;
        Ok(n == 1)
    }

    async fn put_one_time(&self, t: OneTimeToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO one_time_tokens (hash, kind, user_id, payload, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(t.hash.as_slice())
        .bind(t.kind)
        .bind(t.user_id.as_bytes().as_slice())
        .bind(t.payload.to_string())
        .bind(t.expires_at)
        .bind(self.clock.now())
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn take_one_time(
        &self,
        kind: &'static str,
        hash: &[u8; 32],
    ) -> Result<Option<OneTimeToken>, StoreError> {
        // DELETE … RETURNING: whoever deletes the row redeems it, once.
        let row = sqlx::query(
            "DELETE FROM one_time_tokens WHERE hash = ? AND kind = ? RETURNING user_id, payload, expires_at",
        )
        .bind(hash.as_slice())
        .bind(kind)
        .fetch_optional(&self.writer)
        .await
        .map_err(classify)?;
        let Some(r) = row else { return Ok(None) };
        let e = |_| corrupt("one-time token");
        let expires_at: i64 = r.try_get("expires_at").map_err(e)?;
        if expires_at <= self.clock.now() {
            return Ok(None);
        }
        let payload: String = r.try_get("payload").map_err(e)?;
        crate::shared::one_time(
            kind,
            hash,
            r.try_get("user_id").map_err(e)?,
            &payload,
            expires_at,
        )
        .map(Some)
    }

    async fn read_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, kind, user_id, session_id, ip, detail FROM audit_log WHERE (? IS NULL OR user_id = ?) AND (? IS NULL OR session_id = ?) AND (? IS NULL OR kind = ?) AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?) AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        )
            .bind(f.user.map(|u| u.as_bytes().to_vec()))
            .bind(f.user.map(|u| u.as_bytes().to_vec()))
            .bind(f.session.map(|s| s.as_bytes().to_vec()))
            .bind(f.session.map(|s| s.as_bytes().to_vec()))
            .bind(f.kind.clone())
            .bind(f.kind.clone())
            .bind(f.since)
            .bind(f.since)
            .bind(f.until)
            .bind(f.until)
            .bind(f.before_id)
            .bind(f.before_id)
            .bind(i64::from(f.limit.clamp(1, 1000)))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|r| {
                let e = |_| corrupt("audit");
                let detail: String = r.try_get("detail").map_err(e)?;
                crate::shared::audit_record(
                    r.try_get("id").map_err(e)?,
                    r.try_get("at").map_err(e)?,
                    r.try_get("kind").map_err(e)?,
                    r.try_get("user_id").map_err(e)?,
                    r.try_get("session_id").map_err(e)?,
                    r.try_get("ip").map_err(e)?,
                    &detail,
                )
            })
            .collect()
    }

    async fn set_email(
        &self,
        id: UserId,
        email: &Email,
        verified: bool,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE users SET email = ?, email_key = ?, email_verified = ?, updated_at = ? \
             WHERE id = ? AND external_id IS NULL",
        )
        .bind(email.as_str())
        .bind(email.key())
        .bind(i64::from(verified))
        .bind(self.clock.now())
        .bind(id.as_bytes().as_slice())
        .execute(&self.writer)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn mark_email_verified(&self, id: UserId, email: &Email) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE users SET email_verified = 1, updated_at = ? WHERE id = ? AND email_key = ?",
        )
        .bind(self.clock.now())
        .bind(id.as_bytes().as_slice())
        .bind(email.key())
        .execute(&self.writer)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn totp_factor(&self, id: UserId) -> Result<Option<TotpFactor>, StoreError> {
        let row = sqlx::query("SELECT totp_secret, totp_confirmed FROM users WHERE id = ?")
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(r) = row else { return Ok(None) };
        let e = |_| corrupt("totp factor");
        let secret: Option<Vec<u8>> = r.try_get("totp_secret").map_err(e)?;
        let confirmed = r.try_get::<i64, _>("totp_confirmed").map_err(e)? != 0;
        Ok(secret.map(|sealed_secret| TotpFactor {
            sealed_secret,
            confirmed,
        }))
    }

    async fn put_pending_totp(&self, id: UserId, sealed: &[u8]) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE users SET totp_secret = ?, totp_confirmed = 0, totp_last_step = NULL, updated_at = ? \
             WHERE id = ? AND totp_confirmed = 0",
        )
        .bind(sealed)
        .bind(self.clock.now())
        .bind(id.as_bytes().as_slice())
        .execute(&self.writer)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn confirm_totp(
        &self,
        id: UserId,
        step: i64,
        recovery: &[[u8; 32]],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET totp_confirmed = 1, totp_last_step = ?, updated_at = ? \
             WHERE id = ? AND totp_secret IS NOT NULL AND totp_confirmed = 0",
        )
        .bind(step)
        .bind(self.clock.now())
        .bind(id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?")
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for h in recovery {
            sqlx::query("INSERT INTO recovery_codes (user_id, hash) VALUES (?, ?)")
                .bind(id.as_bytes().as_slice())
                .bind(h.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn remove_totp(&self, id: UserId) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_confirmed = 0, totp_last_step = NULL, updated_at = ? \
             WHERE id = ? AND totp_secret IS NOT NULL",
        )
        .bind(self.clock.now())
        .bind(id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?")
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(n == 1)
    }

    async fn use_totp_step(&self, id: UserId, step: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_confirmed = 1 \
             AND (totp_last_step IS NULL OR totp_last_step < ?)",
        )
        .bind(step)
        .bind(id.as_bytes().as_slice())
        .bind(step)
        .execute(&self.writer)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn use_recovery_code(&self, id: UserId, hash: &[u8; 32]) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM recovery_codes WHERE user_id = ? AND hash = ?")
            .bind(id.as_bytes().as_slice())
            .bind(hash.as_slice())
            .execute(&self.writer)
            .await
            .map_err(classify)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn recovery_codes_left(&self, id: UserId) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?")
            .bind(id.as_bytes().as_slice())
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn purge_accounts(&self, audit_before: UnixTime) -> Result<Purged, StoreError> {
        let now = self.clock.now();
        let one_time_tokens = sqlx::query("DELETE FROM one_time_tokens WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(classify)?
            .rows_affected();
        let audit = sqlx::query("DELETE FROM audit_log WHERE at < ?")
            .bind(audit_before)
            .execute(&self.writer)
            .await
            .map_err(classify)?
            .rows_affected();
        Ok(Purged {
            one_time_tokens,
            audit,
            ..Purged::default()
        })
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, new: NewSession) -> Result<Created, StoreError> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let mut revoked = Vec::new();
        if let Some(old) = new.replaces {
            revoked.extend(
                self.revoke_in(&mut tx, &[old], RevokeReason::Replaced, now)
                    .await?,
            );
        }
        if let Some(cap) = new.cap {
            let live = self.live_ids(&mut tx, new.user_id, now).await?;
            let max = cap.max.max(1) as usize;
            if live.len() >= max {
                if !cap.evict_oldest {
                    tx.rollback().await.map_err(classify)?;
                    return Ok(Created::LimitReached);
                }
                let excess = live.len() + 1 - max;
                revoked.extend(
                    self.revoke_in(&mut tx, &live[..excess], RevokeReason::Evicted, now)
                        .await?,
                );
            }
        }
        let expires_at = now + new.max_age;
        let idle = new.idle_ttl.map(|t| (now + t).min(expires_at));
        let claims = serde_json::Value::Object(new.claims.clone()).to_string();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, transport, gen, cur, prev, rotated_at, rotated_ua_hash, grace_answers, \
             key_ver, created_at, last_seen_at, idle_expires_at, expires_at, auth_time, aal, ip, user_agent, claims) \
             VALUES (?, ?, ?, 0, ?, NULL, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.id.as_bytes().as_slice())
        .bind(new.user_id.as_bytes().as_slice())
        .bind(new.transport.as_str())
        .bind(new.first_hash.as_slice())
        .bind(now)
        .bind(new.ua_hash.as_slice())
        .bind(i64::from(new.key_version))
        .bind(now)
        .bind(now)
        .bind(idle)
        .bind(expires_at)
        .bind(now)
        .bind(new.aal.as_str())
        .bind(&new.ip)
        .bind(&new.user_agent)
        .bind(claims)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        let session = Session {
            id: new.id,
            user_id: new.user_id,
            transport: new.transport,
            generation: 0,
            key_version: new.key_version,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: idle,
            expires_at,
            auth_time: now,
            aal: new.aal,
            revoked_at: None,
            revoke_reason: None,
            ip: new.ip,
            user_agent: new.user_agent,
            claims: new.claims,
        };
        Ok(Created::Session { session, revoked })
    }

    async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.load(id).await?.map(|r| r.session))
    }

    async fn rotate(
        &self,
        id: SessionId,
        p: &Presented,
        policy: &RotationPolicy,
    ) -> Result<RotationOutcome, StoreError> {
        // Fast path, one statement: the common case (the current token, on a
        // live session, on its own channel) is exactly the row this WHERE
        // matches — the conditions under which `decide` answers `Rotate` —
        // so it rotates without reading first. Anything else (grace, stale,
        // reuse, expiry, a lost race) falls through to read-and-decide.
        let now = self.clock.now();
        if let Some(s) = self.rotate_current(id, p, policy, now).await? {
            return Ok(RotationOutcome::Rotated(s));
        }
        let mut lost_race = false;
        // Each lost conditional write means another request changed the row;
        // a handful of retries covers any real interleaving.
        for attempt in 0..8 {
            let Some(row) = self.load(id).await? else {
                return Ok(RotationOutcome::NotFound);
            };
            // The fast path lost a race if, by now, exactly the presented
            // generation was rotated since it ran (the same rule as a lost
            // conditional write below).
            if attempt == 0
                && row.state.generation == p.generation + 1
                && row.state.rotated_at >= now
            {
                lost_race = true;
            }
            let now = self.clock.now();
            match decide(&row.state, p, now, policy, lost_race) {
                Decision::Rotate => {
                    if let Some(s) = self.rotate_current(id, p, policy, now).await? {
                        return Ok(RotationOutcome::Rotated(s));
                    }
                    lost_race = true;
                }
                Decision::Grace => {
                    let n = sqlx::query(
                        "UPDATE sessions SET grace_answers = grace_answers + 1 \
                         WHERE id = ? AND gen = ? AND grace_answers < ? AND revoked_at IS NULL",
                    )
                    .bind(id.as_bytes().as_slice())
                    .bind(i64::from(row.state.generation))
                    .bind(i64::from(policy.grace_max_answers))
                    .execute(&self.writer)
                    .await
                    .map_err(classify)?
                    .rows_affected();
                    if n == 1 {
                        return Ok(RotationOutcome::Grace(row.session));
                    }
                }
                Decision::Reuse(class) => {
                    let now = self.clock.now();
                    let mut tx = self.begin().await?;
                    let ids = if policy.reuse_revokes_user {
                        self.live_ids(&mut tx, row.session.user_id, now).await?
                    } else {
                        vec![id]
                    };
                    let revoked = self
                        .revoke_in(&mut tx, &ids, RevokeReason::ReuseDetected, now)
                        .await?;
                    tx.commit().await.map_err(classify)?;
                    // Concurrent replays all see "reuse"; only the one whose
                    // revocation landed reports it (one security event). The
                    // others re-read and answer `session_revoked`.
                    if revoked.contains(&id) {
                        return Ok(RotationOutcome::Reused {
                            session: row.session,
                            class,
                            revoked,
                        });
                    }
                }
                Decision::Revoked(r) => return Ok(RotationOutcome::Revoked(r)),
                Decision::Expired => return Ok(RotationOutcome::Expired),
                Decision::TransportMismatch => return Ok(RotationOutcome::TransportMismatch),
                Decision::Stale => return Ok(RotationOutcome::Stale),
                Decision::RollbackSuspected => return Ok(RotationOutcome::RollbackSuspected),
            }
        }
        Err(StoreError::Unavailable("rotation kept losing races".into()))
    }

    async fn revoke(
        &self,
        id: SessionId,
        reason: RevokeReason,
    ) -> Result<Option<Session>, StoreError> {
        self.revoke_many(&[id], reason).await?;
        self.session(id).await
    }

    async fn revoke_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        // Include sessions past expiry too: a revocation row must exist for
        // every session whose access tokens could still be in flight.
        let rows = sqlx::query("SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL")
            .bind(user.as_bytes().as_slice())
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        let ids = rows
            .iter()
            .map(|r| {
                let b: Vec<u8> = r.try_get("id").map_err(|_| corrupt("id"))?;
                Ok(SessionId::from_bytes(
                    b.try_into().map_err(|_| corrupt("id"))?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?
            .into_iter()
            .filter(|id| Some(*id) != keep)
            .collect::<Vec<_>>();
        let done = self.revoke_in(&mut tx, &ids, reason, now).await?;
        tx.commit().await.map_err(classify)?;
        Ok(done)
    }

    async fn revoke_all(&self, reason: RevokeReason) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO revocations (session_id, reason, not_after) \
             SELECT id, ?, ? FROM sessions WHERE revoked_at IS NULL",
        )
        .bind(reason.as_str())
        .bind(now + self.margin)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let n = sqlx::query(
            "UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        tx.commit().await.map_err(classify)?;
        Ok(n)
    }

    async fn list_sessions(
        &self,
        user: UserId,
        revoked_since: UnixTime,
    ) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = ? AND \
             (revoked_at IS NULL AND (expires_at > ? AND (idle_expires_at IS NULL OR idle_expires_at > ?) \
               OR MIN(expires_at, COALESCE(idle_expires_at, expires_at)) >= ?) \
              OR revoked_at >= ?) \
             ORDER BY revoked_at IS NOT NULL, last_seen_at DESC"
        );
        let now = self.clock.now();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.as_bytes().as_slice())
            .bind(now)
            .bind(now)
            .bind(revoked_since)
            .bind(revoked_since)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|r| session_from_row(r).map(|x| x.session))
            .collect()
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query("SELECT seq, session_id, reason, not_after FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|r| {
                let e = |_| corrupt("revocation");
                let sid: Vec<u8> = r.try_get("session_id").map_err(e)?;
                let reason: String = r.try_get("reason").map_err(e)?;
                Ok(Revocation {
                    seq: r.try_get("seq").map_err(e)?,
                    session_id: SessionId::from_bytes(sid.try_into().map_err(|_| corrupt("sid"))?),
                    reason: RevokeReason::parse(&reason).ok_or_else(|| corrupt("reason"))?,
                    not_after: r.try_get("not_after").map_err(e)?,
                })
            })
            .collect()
    }

    async fn now(&self) -> Result<UnixTime, StoreError> {
        Ok(self.clock.now())
    }

    async fn set_user_claims(
        &self,
        user: UserId,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, StoreError> {
        let n =
            sqlx::query("UPDATE sessions SET claims = ? WHERE user_id = ? AND revoked_at IS NULL")
                .bind(serde_json::Value::Object(claims.clone()).to_string())
                .bind(user.as_bytes().as_slice())
                .execute(&self.writer)
                .await
                .map_err(classify)?
                .rows_affected();
        Ok(n)
    }

    async fn purge_sessions(&self, ended_before: UnixTime) -> Result<Purged, StoreError> {
        let now = self.clock.now();
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE (revoked_at IS NOT NULL AND revoked_at < ?) OR (revoked_at IS NULL AND MIN(expires_at, COALESCE(idle_expires_at, expires_at)) < ?)",
        )
            .bind(ended_before)
            .bind(ended_before)
            .execute(&self.writer)
            .await
            .map_err(classify)?
            .rows_affected();
        // Revocation rows go once no token they concern can still be valid;
        // a feed reader resuming from an older seq loses nothing that matters.
        let revocations = sqlx::query("DELETE FROM revocations WHERE not_after < ?")
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(classify)?
            .rows_affected();
        Ok(Purged {
            sessions,
            revocations,
            ..Purged::default()
        })
    }

    async fn reauthenticate(&self, id: SessionId, aal: Aal) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        let n = sqlx::query(
            "UPDATE sessions SET auth_time = ?, aal = ? WHERE id = ? AND revoked_at IS NULL \
             AND expires_at > ? AND (idle_expires_at IS NULL OR idle_expires_at > ?)",
        )
        .bind(now)
        .bind(aal.as_str())
        .bind(id.as_bytes().as_slice())
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(classify)?
        .rows_affected();
        if n != 1 {
            return Ok(None);
        }
        Ok(self.load(id).await?.map(|r| r.session))
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ? AND (idle_expires_at IS NULL OR idle_expires_at > ?)")
            .bind(now)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
