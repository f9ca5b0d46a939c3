//! The PostgreSQL store: the SQLite store's design on a server database.
//!
//! - **Rotation** reads the row without locks (and the store's time in the
//!   same `SELECT`), classifies it with [`decide`], and applies a rotation
//!   with one conditional `UPDATE … WHERE id AND gen AND cur AND not revoked
//!   AND not expired RETURNING …`. Under `READ COMMITTED` a concurrent writer
//!   blocks on the row lock, then re-checks the `WHERE` against the committed
//!   row and matches nothing; it re-reads and re-decides with
//!   `lost_race = true`. No isolation level above the default is needed.
//! - **Revocations** run in short transactions that first lock the single row
//!   of `revocation_order`, so revocation rows commit in `seq` order (a feed
//!   reader never skips a row that commits late) and concurrent revokers of
//!   one session serialise: only the one whose `UPDATE` matched writes a row.
//! - **Session creation** locks the user's row (`FOR UPDATE`) before counting
//!   live sessions, so concurrent logins of one user cannot overrun the cap.
//!   Lock order is always users → `revocation_order` → sessions.
//! - **Time** comes from the [`StoreClock`]: in production the database's
//!   `statement_timestamp()`, read once per operation.
//! - **Timeouts**: `statement_timeout` is set per connection, the pool has an
//!   acquire timeout; both surface as [`StoreError::Unavailable`].

use crate::clock::StoreClock;
use async_trait::async_trait;
use sesame_core::clock::UnixTime;
use sesame_core::ids::{Email, SessionId, UserId};
use sesame_core::keys::{KeyRecord, KeyState, SigningAlg};
use sesame_core::rotation::{Channel, Decision, Presented, RefreshState, RotationPolicy, decide};
use sesame_core::session::{Aal, RevokeReason, Session, Transport};
use sesame_core::store::{
    AccountStore, AuditEvent, AuditFilter, AuditRecord, Created, ExternalId, NewSession, NewUser,
    OneTimeToken, Purged, Revocation, RotationOutcome, SessionStore, StoreError, TotpFactor, User,
    UserCredential,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// `postgres://user:pass@host:port/database?…`
    pub url: String,
    /// Schema to work in (sets `search_path`; the migrations table lands
    /// there too). `None`: the URL's or the role's default.
    pub schema: Option<String>,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a request waits for a connection before `storage_unavailable`.
    pub acquire_timeout: Duration,
    /// Server-side `statement_timeout` for every statement (lock waits included).
    pub statement_timeout: Duration,
    /// Revocation rows stay relevant this long after the revocation
    /// (max access-token lifetime + leeway): `not_after = now + margin`.
    pub revocation_margin: i64,
}

impl PgStoreOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            revocation_margin: 660,
        }
    }
}

/// Accounts and sessions in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    clock: StoreClock,
    margin: i64,
}

/// The database's time as unix seconds, truncated like the other clocks
/// (a plain cast of the numeric epoch would round up half of the time).
/// `statement_timestamp()` rather than `now()`: inside a transaction it is
/// the time of this statement, not of `BEGIN`.
const DB_NOW: &str = "CAST(FLOOR(EXTRACT(EPOCH FROM statement_timestamp())) AS BIGINT)";

/// How many times a transaction that hit a deadlock is tried.
const ATTEMPTS: u32 = 4;

fn classify(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(e)),
        sqlx::Error::Database(ref db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(ref db) if db.code().as_deref().is_some_and(transient_code) => {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Other(Box::new(other)),
    }
}

/// SQLSTATEs that mean "the store cannot serve this right now", not "the
/// request is wrong": connection exceptions (08), insufficient resources
/// (53), operator intervention and statement timeout (57), lock and
/// serialisation conflicts (40, 55P03), a read-only server (25006, a
/// standby after failover).
fn transient_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code.starts_with("40")
        || code == "55P03"
        || code == "25006"
}

/// Whether a failed transaction should simply be run again: a deadlock or
/// serialisation failure rolled it back and nothing was written.
fn retryable(e: &StoreError) -> bool {
    let StoreError::Unavailable(src) = e else {
        return false;
    };
    matches!(
        src.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("40P01" | "40001"))
    )
}

async fn backoff(attempt: u32) {
    tracing::debug!(
        attempt,
        "transaction lost to a lock conflict; running it again"
    );
    let jitter = u64::from(sesame_core::crypto::random::<1>()[0] % 16);
    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt) + jitter)).await;
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt row: {what}").into())
}

fn hash32(v: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, StoreError> {
    v.map(|b| b.try_into().map_err(|_| corrupt("hash length")))
        .transpose()
}

fn sid(b: Vec<u8>) -> Result<SessionId, StoreError> {
    Ok(SessionId::from_bytes(
        b.try_into().map_err(|_| corrupt("session id"))?,
    ))
}

const SESSION_COLS: &str = "id, user_id, transport, gen, cur, prev, rotated_at, rotated_ua_hash, \
     grace_answers, key_ver, created_at, last_seen_at, idle_expires_at, expires_at, auth_time, aal, \
     revoked_at, revoke_reason, ip, user_agent, claims";

const USER_COLS: &str =
    "id, email, email_verified, disabled, created_at, password_hash, external_id, totp_confirmed";

struct Row_ {
    session: Session,
    state: RefreshState,
}

fn session_from_row(r: &PgRow) -> Result<Row_, StoreError> {
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
        id: sid(id)?,
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

fn user_from_row(r: &PgRow) -> Result<User, StoreError> {
    let get_err = |_| corrupt("user column");
    let id: Vec<u8> = r.try_get("id").map_err(get_err)?;
    Ok(User {
        id: UserId::from_bytes(id.try_into().map_err(|_| corrupt("user id"))?),
        identity: crate::shared::identity(
            r.try_get("email").map_err(get_err)?,
            r.try_get("external_id").map_err(get_err)?,
        )?,
        email_verified: r.try_get("email_verified").map_err(get_err)?,
        disabled: r.try_get("disabled").map_err(get_err)?,
        mfa_enabled: r.try_get("totp_confirmed").map_err(get_err)?,
        created_at: r.try_get("created_at").map_err(get_err)?,
    })
}

fn credential_from_row(r: &PgRow) -> Result<UserCredential, StoreError> {
    Ok(UserCredential {
        user: user_from_row(r)?,
        password_hash: r.try_get("password_hash").map_err(|_| corrupt("hash"))?,
    })
}

fn ids_from_rows(rows: &[PgRow]) -> Result<Vec<SessionId>, StoreError> {
    rows.iter()
        .map(|r| sid(r.try_get("id").map_err(|_| corrupt("id"))?))
        .collect()
}

/// Which sessions a revocation transaction ends.
enum Target {
    /// These, if still live.
    Ids(Vec<SessionId>),
    /// Every unexpired, unrevoked session of the user (reuse policy "user").
    UserLive(UserId),
    /// Every unrevoked session of the user, expired ones included, but `keep`.
    User {
        user: UserId,
        keep: Option<SessionId>,
    },
}

impl PgStore {
    /// Connects and applies pending migrations.
    pub async fn open(opts: &PgStoreOptions, clock: StoreClock) -> Result<Self, StoreError> {
        let store = Self::connect(opts, clock).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(opts: &PgStoreOptions, clock: StoreClock) -> Result<Self, StoreError> {
        let mut connect = PgConnectOptions::from_str(&opts.url)
            .map_err(|e| StoreError::Other(Box::new(e)))?
            .options([(
                "statement_timeout",
                format!("{}ms", opts.statement_timeout.as_millis().max(1)),
            )]);
        if let Some(schema) = &opts.schema {
            connect = connect.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(classify)?;
        Ok(Self {
            pool,
            clock,
            margin: opts.revocation_margin,
        })
    }

    /// Calls `wake` whenever any instance commits a revocation (every
    /// revocation transaction sends `NOTIFY sesame_revocations`), so
    /// revocation feeds tail without polling. Holds one pooled connection;
    /// runs until the future is dropped, reconnecting after a pause on errors.
    pub async fn watch_revocations(&self, wake: impl Fn() + Send + Sync) {
        loop {
            match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => match listener.listen("sesame_revocations").await {
                    Ok(()) => {
                        // Anything may have happened while not listening.
                        wake();
                        loop {
                            match listener.recv().await {
                                Ok(_) => wake(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "revocation LISTEN connection lost; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN sesame_revocations failed"),
                },
                Err(e) => tracing::warn!(error = %e, "revocation listener could not connect"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => classify(e),
                other => StoreError::Other(Box::new(other)),
            })
    }

    /// Migrations known to this build that the database has not applied.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let migrator = sqlx::migrate!("migrations/postgres");
        // A schema never migrated has no table yet: everything is pending.
        let applied: Vec<i64> =
            match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.pool)
                .await
            {
                Ok(v) => v,
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                    Vec::new()
                }
                Err(e) => return Err(classify(e)),
            };
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
            sqlx::query("SELECT kind, session_id, detail FROM audit_log ORDER BY id DESC LIMIT $1")
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
    }

    /// The session row and the database's time, in one statement.
    async fn load(&self, id: SessionId) -> Result<Option<(Row_, UnixTime)>, StoreError> {
        let sql =
            format!("SELECT {SESSION_COLS}, {DB_NOW} AS store_now FROM sessions WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|r| {
            let db_now: i64 = r.try_get("store_now").map_err(|_| corrupt("store_now"))?;
            Ok((session_from_row(&r)?, self.clock.pick(db_now)))
        })
        .transpose()
    }

    /// The store's time when nothing else is read.
    async fn store_now(&self) -> Result<UnixTime, StoreError> {
        if let Some(t) = self.clock.fixed() {
            return Ok(t);
        }
        let sql = format!("SELECT {DB_NOW}");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(classify)
    }

    /// Takes the revocation-order lock for the rest of `tx` and returns the
    /// store's time, read after the lock was granted (in the same statement).
    async fn lock_revocations(
        &self,
        tx: &mut Transaction<'static, Postgres>,
    ) -> Result<UnixTime, StoreError> {
        let sql = format!("SELECT {DB_NOW} FROM revocation_order WHERE id = 1 FOR UPDATE");
        let db_now: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&mut **tx)
            .await
            .map_err(classify)?;
        let db_now = db_now.ok_or_else(|| corrupt("revocation_order row missing"))?;
        // Wakes every instance's revocation feed when (and only if) this
        // transaction commits: PostgreSQL delivers NOTIFY at commit.
        sqlx::query("NOTIFY sesame_revocations")
            .execute(&mut **tx)
            .await
            .map_err(classify)?;
        Ok(self.clock.pick(db_now))
    }

    /// Revokes `ids` (those still live) inside `tx`, writing revocation rows.
    /// The caller holds the revocation-order lock.
    async fn revoke_in(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        ids: &[SessionId],
        reason: RevokeReason,
        now: UnixTime,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut done = Vec::new();
        for id in ids {
            let n = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
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
                    "INSERT INTO revocations (session_id, reason, not_after) VALUES ($1, $2, $3)",
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

    /// A user's live sessions, least recently used first.
    async fn live_ids(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<SessionId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             AND (idle_expires_at IS NULL OR idle_expires_at > $2) \
             ORDER BY last_seen_at ASC, created_at ASC, id ASC",
        )
        .bind(user.as_bytes().as_slice())
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(classify)?;
        ids_from_rows(&rows)
    }

    /// One revocation transaction; retried whole on a deadlock.
    async fn revoke_target(
        &self,
        target: &Target,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut attempt = 0;
        loop {
            let r = self.revoke_target_once(target, reason).await;
            match r {
                Err(ref e) if retryable(e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                _ => return r,
            }
        }
    }

    async fn revoke_target_once(
        &self,
        target: &Target,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut tx = self.begin().await?;
        let now = self.lock_revocations(&mut tx).await?;
        let ids = match target {
            Target::Ids(ids) => ids.clone(),
            Target::UserLive(user) => self.live_ids(&mut tx, *user, now).await?,
            Target::User { user, keep } => {
                // Include sessions past expiry too: a revocation row must
                // exist for every session whose access tokens could still be
                // in flight.
                let rows = sqlx::query(
                    "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
                     ORDER BY last_seen_at ASC, id ASC",
                )
                .bind(user.as_bytes().as_slice())
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
                ids_from_rows(&rows)?
                    .into_iter()
                    .filter(|id| Some(*id) != *keep)
                    .collect()
            }
        };
        let done = self.revoke_in(&mut tx, &ids, reason, now).await?;
        tx.commit().await.map_err(classify)?;
        Ok(done)
    }

    async fn create_session_once(&self, new: &NewSession) -> Result<Created, StoreError> {
        let mut tx = self.begin().await?;
        // The user's row lock serialises this user's logins, so the count of
        // live sessions below stays true until the insert commits.
        let sql = format!("SELECT {DB_NOW} FROM users WHERE id = $1 FOR UPDATE");
        let db_now: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(new.user_id.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let Some(db_now) = db_now else {
            return Err(StoreError::Other(
                "create_session: no such user".to_string().into(),
            ));
        };
        let mut now = self.clock.pick(db_now);
        let mut locked = false;
        let mut revoked = Vec::new();
        if let Some(old) = new.replaces {
            // The revocation lock is taken only when something may be
            // revoked, after the user's lock and before any session row.
            now = self.lock_revocations(&mut tx).await?;
            locked = true;
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
                if !locked {
                    now = self.lock_revocations(&mut tx).await?;
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
             VALUES ($1, $2, $3, 0, $4, NULL, $5, $6, 0, $7, $5, $5, $8, $9, $5, $10, $11, $12, $13)",
        )
        .bind(new.id.as_bytes().as_slice())
        .bind(new.user_id.as_bytes().as_slice())
        .bind(new.transport.as_str())
        .bind(new.first_hash.as_slice())
        .bind(now)
        .bind(new.ua_hash.as_slice())
        .bind(i64::from(new.key_version))
        .bind(idle)
        .bind(expires_at)
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
            ip: new.ip.clone(),
            user_agent: new.user_agent.clone(),
            claims: new.claims.clone(),
        };
        Ok(Created::Session { session, revoked })
    }

    async fn save_keys_once(&self, records: &[KeyRecord]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM signing_keys")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for k in records {
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, state, sealed_private, public, created_at, retired_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
}

#[async_trait]
impl AccountStore for PgStore {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let sql = format!(
            "INSERT INTO users (id, email, email_key, password_hash, email_verified, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, FALSE, COALESCE($6, {DB_NOW}), COALESCE($6, {DB_NOW})) \
             RETURNING created_at"
        );
        let created_at: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(user.id.as_bytes().as_slice())
            .bind(user.email.as_str())
            .bind(user.email.key())
            .bind(&user.password_hash)
            .bind(user.email_verified)
            .bind(self.clock.fixed())
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(User {
            id: user.id,
            identity: sesame_core::store::Identity::Email(user.email),
            email_verified: user.email_verified,
            disabled: false,
            mfa_enabled: false,
            created_at,
        })
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<UserCredential>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE email_key = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email.key())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.credential_by_id(id).await?.map(|c| c.user))
    }

    async fn credential_by_id(&self, id: UserId) -> Result<Option<UserCredential>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE users SET password_hash = $1, updated_at = COALESCE($2, {DB_NOW}) WHERE id = $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(phc)
            .bind(self.clock.fixed())
            .bind(id.as_bytes().as_slice())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE users SET disabled = $1, updated_at = COALESCE($2, {DB_NOW}) WHERE id = $3"
        );
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(disabled)
            .bind(self.clock.fixed())
            .bind(id.as_bytes().as_slice())
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError> {
        let sql =
            format!("SELECT {USER_COLS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn load_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, alg, state, sealed_private, public, created_at, retired_at \
             FROM signing_keys ORDER BY created_at, kid",
        )
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
        let mut attempt = 0;
        loop {
            let r = self.save_keys_once(records).await;
            match r {
                Err(ref e) if retryable(e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                _ => return r,
            }
        }
    }

    async fn audit(&self, ev: AuditEvent) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO audit_log (at, kind, user_id, session_id, ip, detail) \
             VALUES (COALESCE($1, {DB_NOW}), $2, $3, $4, $5, $6)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.clock.fixed())
            .bind(ev.kind)
            .bind(ev.user_id.map(|u| u.as_bytes().to_vec()))
            .bind(ev.session_id.map(|s| s.as_bytes().to_vec()))
            .bind(ev.ip)
            .bind(ev.detail.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn ping(&self) -> Result<UnixTime, StoreError> {
        // Always a round trip, even with a fixed clock: this is the
        // reachability check.
        let sql = format!("SELECT {DB_NOW}");
        let db_now: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(self.clock.pick(db_now))
    }

    async fn external_user(
        &self,
        external: &ExternalId,
        new_id: UserId,
    ) -> Result<User, StoreError> {
        let (email, key) = crate::shared::shadow_email(external);
        let sql = format!(
            "INSERT INTO users (id, email, email_key, password_hash, email_verified, disabled, created_at, updated_at, external_id) \
             VALUES ($1, $2, $3, '', FALSE, FALSE, COALESCE($4, {DB_NOW}), COALESCE($4, {DB_NOW}), $5) \
             ON CONFLICT DO NOTHING"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id.as_bytes().as_slice())
            .bind(email)
            .bind(key)
            .bind(self.clock.fixed())
            .bind(external.as_str())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        let sql = format!("SELECT {USER_COLS} FROM users WHERE external_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(external.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        user_from_row(&row)
    }

    async fn delete_user(&self, id: UserId) -> Result<bool, StoreError> {
        // The audit rows stay, pseudonymised: the user id is a random id
        // that now names nobody, and the client IPs go.
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("UPDATE audit_log SET ip = NULL WHERE user_id = $1")
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let n = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        tx.commit().await.map_err(classify)?;
        Ok(n == 1)
    }

    async fn put_one_time(&self, t: OneTimeToken) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO one_time_tokens (hash, kind, user_id, payload, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, COALESCE($6, {DB_NOW}))"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(t.hash.as_slice())
            .bind(t.kind)
            .bind(t.user_id.as_bytes().as_slice())
            .bind(t.payload.to_string())
            .bind(t.expires_at)
            .bind(self.clock.fixed())
            .execute(&self.pool)
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
        let sql = format!(
            "DELETE FROM one_time_tokens WHERE hash = $1 AND kind = $2 \
             RETURNING user_id, payload, expires_at, COALESCE($3, {DB_NOW}) AS now"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash.as_slice())
            .bind(kind)
            .bind(self.clock.fixed())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(r) = row else { return Ok(None) };
        let e = |_| corrupt("one-time token");
        let expires_at: i64 = r.try_get("expires_at").map_err(e)?;
        let now: i64 = r.try_get("now").map_err(e)?;
        if expires_at <= now {
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
            "SELECT id, at, kind, user_id, session_id, ip, detail FROM audit_log WHERE ($1::bytea IS NULL OR user_id = $1) AND ($2::bytea IS NULL OR session_id = $2) AND ($3::text IS NULL OR kind = $3) AND ($4::bigint IS NULL OR at >= $4) AND ($5::bigint IS NULL OR at < $5) AND ($6::bigint IS NULL OR id < $6) ORDER BY id DESC LIMIT $7",
        )
            .bind(f.user.map(|u| u.as_bytes().to_vec()))
            .bind(f.session.map(|s| s.as_bytes().to_vec()))
            .bind(f.kind.clone())
            .bind(f.since)
            .bind(f.until)
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
        let now = self.store_now().await?;
        let n = sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, email_verified = $3, updated_at = $4 \
             WHERE id = $5 AND external_id IS NULL",
        )
        .bind(email.as_str())
        .bind(email.key())
        .bind(verified)
        .bind(now)
        .bind(id.as_bytes().as_slice())
        .execute(&self.pool)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn mark_email_verified(&self, id: UserId, email: &Email) -> Result<bool, StoreError> {
        let now = self.store_now().await?;
        let n = sqlx::query(
            "UPDATE users SET email_verified = TRUE, updated_at = $1 WHERE id = $2 AND email_key = $3",
        )
        .bind(now)
        .bind(id.as_bytes().as_slice())
        .bind(email.key())
        .execute(&self.pool)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn totp_factor(&self, id: UserId) -> Result<Option<TotpFactor>, StoreError> {
        let row = sqlx::query("SELECT totp_secret, totp_confirmed FROM users WHERE id = $1")
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(r) = row else { return Ok(None) };
        let e = |_| corrupt("totp factor");
        let secret: Option<Vec<u8>> = r.try_get("totp_secret").map_err(e)?;
        let confirmed = r.try_get::<bool, _>("totp_confirmed").map_err(e)?;
        Ok(secret.map(|sealed_secret| TotpFactor {
            sealed_secret,
            confirmed,
        }))
    }

    async fn put_pending_totp(&self, id: UserId, sealed: &[u8]) -> Result<bool, StoreError> {
        let now = self.store_now().await?;
        let n = sqlx::query(
            "UPDATE users SET totp_secret = $1, totp_confirmed = FALSE, totp_last_step = NULL, updated_at = $2 \
             WHERE id = $3 AND totp_confirmed = FALSE",
        )
        .bind(sealed)
        .bind(now)
        .bind(id.as_bytes().as_slice())
        .execute(&self.pool)
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
        let now = self.store_now().await?;
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET totp_confirmed = TRUE, totp_last_step = $1, updated_at = $2 \
             WHERE id = $3 AND totp_secret IS NOT NULL AND totp_confirmed = FALSE",
        )
        .bind(step)
        .bind(now)
        .bind(id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for h in recovery {
            sqlx::query("INSERT INTO recovery_codes (user_id, hash) VALUES ($1, $2)")
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
        let now = self.store_now().await?;
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_confirmed = FALSE, totp_last_step = NULL, updated_at = $1 \
             WHERE id = $2 AND totp_secret IS NOT NULL",
        )
        .bind(now)
        .bind(id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(n == 1)
    }

    async fn use_totp_step(&self, id: UserId, step: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_confirmed = TRUE \
             AND (totp_last_step IS NULL OR totp_last_step < $3)",
        )
        .bind(step)
        .bind(id.as_bytes().as_slice())
        .bind(step)
        .execute(&self.pool)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn use_recovery_code(&self, id: UserId, hash: &[u8; 32]) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1 AND hash = $2")
            .bind(id.as_bytes().as_slice())
            .bind(hash.as_slice())
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn recovery_codes_left(&self, id: UserId) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1")
            .bind(id.as_bytes().as_slice())
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn purge_accounts(&self, audit_before: UnixTime) -> Result<Purged, StoreError> {
        let now = self.store_now().await?;
        let one_time_tokens = sqlx::query("DELETE FROM one_time_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected();
        let audit = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(audit_before)
            .execute(&self.pool)
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
impl SessionStore for PgStore {
    async fn create_session(&self, new: NewSession) -> Result<Created, StoreError> {
        let mut attempt = 0;
        loop {
            let r = self.create_session_once(&new).await;
            match r {
                Err(ref e) if retryable(e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                _ => return r,
            }
        }
    }

    async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.load(id).await?.map(|(r, _)| r.session))
    }

    async fn rotate(
        &self,
        id: SessionId,
        p: &Presented,
        policy: &RotationPolicy,
    ) -> Result<RotationOutcome, StoreError> {
        // Fast path, one statement at the database's own time: the common
        // case (the current token, on a live session, on its own channel)
        // is exactly the row this WHERE matches — the conditions under which
        // `decide` answers `Rotate` — so it rotates without reading first.
        // Anything else falls through to read-and-decide.
        let fast = format!(
            "WITH n AS (SELECT COALESCE($8::BIGINT, {DB_NOW}) AS now) \
             UPDATE sessions SET gen = gen + 1, prev = cur, cur = $1, rotated_at = n.now, \
             rotated_ua_hash = $3, grace_answers = 0, last_seen_at = n.now, \
             idle_expires_at = CASE WHEN $4::BIGINT IS NULL THEN NULL \
                                    ELSE LEAST(n.now + $4::BIGINT, expires_at) END \
             FROM n \
             WHERE id = $5 AND gen = $6 AND cur = $7 AND revoked_at IS NULL \
               AND expires_at > n.now AND (idle_expires_at IS NULL OR idle_expires_at > n.now) \
               AND (transport = 'bearer') = $2 \
             RETURNING {SESSION_COLS}, n.now AS fast_now"
        );
        let fast_now = {
            let updated = sqlx::query(sqlx::AssertSqlSafe(fast))
                .bind(p.successor_hash.as_slice())
                .bind(matches!(p.channel, Channel::Body))
                .bind(p.ua_hash.as_slice())
                .bind(policy.idle_ttl)
                .bind(id.as_bytes().as_slice())
                .bind(i64::from(p.generation))
                .bind(p.secret_hash.as_slice())
                .bind(self.clock.fixed())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
            if let Some(r) = updated {
                return Ok(RotationOutcome::Rotated(session_from_row(&r)?.session));
            }
            self.clock.fixed()
        };
        let mut lost_race = false;
        // Each lost conditional write means another request changed the row;
        // a handful of retries covers any real interleaving.
        for attempt in 0..8 {
            let Some((row, now)) = self.load(id).await? else {
                return Ok(RotationOutcome::NotFound);
            };
            // The fast path lost a race if the presented generation was
            // rotated within the last second, as a lost conditional write
            // below would have (the fast path read no row to compare).
            if attempt == 0
                && row.state.generation == p.generation + 1
                && row.state.rotated_at >= fast_now.unwrap_or(now) - 1
            {
                lost_race = true;
            }
            match decide(&row.state, p, now, policy, lost_race) {
                Decision::Rotate => {
                    // The WHERE repeats every precondition of the decision,
                    // so the row changes only if it is still exactly what
                    // was classified (and still unexpired at `now`).
                    let sql = format!(
                        "UPDATE sessions SET gen = gen + 1, prev = cur, cur = $1, rotated_at = $2, \
                         rotated_ua_hash = $3, grace_answers = 0, last_seen_at = $2, \
                         idle_expires_at = CASE WHEN $4::BIGINT IS NULL THEN NULL \
                                                ELSE LEAST($2 + $4::BIGINT, expires_at) END \
                         WHERE id = $5 AND gen = $6 AND cur = $7 AND revoked_at IS NULL \
                           AND expires_at > $2 AND (idle_expires_at IS NULL OR idle_expires_at > $2) \
                         RETURNING {SESSION_COLS}"
                    );
                    let updated = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(p.successor_hash.as_slice())
                        .bind(now)
                        .bind(p.ua_hash.as_slice())
                        .bind(policy.idle_ttl)
                        .bind(id.as_bytes().as_slice())
                        .bind(i64::from(p.generation))
                        .bind(p.secret_hash.as_slice())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(classify)?;
                    if let Some(r) = updated {
                        return Ok(RotationOutcome::Rotated(session_from_row(&r)?.session));
                    }
                    lost_race = true;
                }
                Decision::Grace => {
                    // Counted atomically: only answers that fit under the cap
                    // increment it; the others re-read and see the cap.
                    let n = sqlx::query(
                        "UPDATE sessions SET grace_answers = grace_answers + 1 \
                         WHERE id = $1 AND gen = $2 AND grace_answers < $3 AND revoked_at IS NULL",
                    )
                    .bind(id.as_bytes().as_slice())
                    .bind(i64::from(row.state.generation))
                    .bind(i64::from(policy.grace_max_answers))
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?
                    .rows_affected();
                    if n == 1 {
                        return Ok(RotationOutcome::Grace(row.session));
                    }
                }
                Decision::Reuse(class) => {
                    let target = if policy.reuse_revokes_user {
                        Target::UserLive(row.session.user_id)
                    } else {
                        Target::Ids(vec![id])
                    };
                    let revoked = self
                        .revoke_target(&target, RevokeReason::ReuseDetected)
                        .await?;
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
        self.revoke_target(&Target::Ids(vec![id]), reason).await?;
        self.session(id).await
    }

    async fn revoke_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.revoke_target(&Target::User { user, keep }, reason)
            .await
    }

    async fn revoke_all(&self, reason: RevokeReason) -> Result<u64, StoreError> {
        let mut attempt = 0;
        loop {
            let r = async {
                let mut tx = self.begin().await?;
                let now = self.lock_revocations(&mut tx).await?;
                // One statement: exactly the sessions this UPDATE revoked get
                // a row, even if logins commit meanwhile.
                let n = sqlx::query(
                    "WITH r AS (UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
                                WHERE revoked_at IS NULL RETURNING id) \
                     INSERT INTO revocations (session_id, reason, not_after) SELECT id, $2, $3 FROM r",
                )
                .bind(now)
                .bind(reason.as_str())
                .bind(now + self.margin)
                .execute(&mut *tx)
                .await
                .map_err(classify)?
                .rows_affected();
                tx.commit().await.map_err(classify)?;
                Ok(n)
            }
            .await;
            match r {
                Err(ref e) if retryable(e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                _ => return r,
            }
        }
    }

    async fn list_sessions(
        &self,
        user: UserId,
        revoked_since: UnixTime,
    ) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions, (SELECT COALESCE($2, {DB_NOW}) AS t) AS n \
             WHERE user_id = $1 AND \
             ((revoked_at IS NULL AND ((expires_at > n.t AND (idle_expires_at IS NULL OR idle_expires_at > n.t)) \
               OR LEAST(expires_at, COALESCE(idle_expires_at, expires_at)) >= $3)) \
              OR revoked_at >= $3) \
             ORDER BY revoked_at IS NOT NULL, last_seen_at DESC, created_at DESC, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.as_bytes().as_slice())
            .bind(self.clock.fixed())
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
        let rows = sqlx::query(
            "SELECT seq, session_id, reason, not_after FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| {
                let e = |_| corrupt("revocation");
                let session: Vec<u8> = r.try_get("session_id").map_err(e)?;
                let reason: String = r.try_get("reason").map_err(e)?;
                Ok(Revocation {
                    seq: r.try_get("seq").map_err(e)?,
                    session_id: sid(session)?,
                    reason: RevokeReason::parse(&reason).ok_or_else(|| corrupt("reason"))?,
                    not_after: r.try_get("not_after").map_err(e)?,
                })
            })
            .collect()
    }

    async fn now(&self) -> Result<UnixTime, StoreError> {
        self.store_now().await
    }

    async fn set_user_claims(
        &self,
        user: UserId,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE sessions SET claims = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(serde_json::Value::Object(claims.clone()).to_string())
        .bind(user.as_bytes().as_slice())
        .execute(&self.pool)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(n)
    }

    async fn purge_sessions(&self, ended_before: UnixTime) -> Result<Purged, StoreError> {
        let now = self.store_now().await?;
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE (revoked_at IS NOT NULL AND revoked_at < $1) OR (revoked_at IS NULL AND LEAST(expires_at, COALESCE(idle_expires_at, expires_at)) < $1)",
        )
            .bind(ended_before)
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected();
        // Revocation rows go once no token they concern can still be valid;
        // a feed reader resuming from an older seq loses nothing that matters.
        let revocations = sqlx::query("DELETE FROM revocations WHERE not_after < $1")
            .bind(now)
            .execute(&self.pool)
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
        let now = self.store_now().await?;
        let n = sqlx::query(
            "UPDATE sessions SET auth_time = $1, aal = $2 WHERE id = $3 AND revoked_at IS NULL \
             AND expires_at > $4 AND (idle_expires_at IS NULL OR idle_expires_at > $5)",
        )
        .bind(now)
        .bind(aal.as_str())
        .bind(id.as_bytes().as_slice())
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(classify)?
        .rows_affected();
        if n != 1 {
            return Ok(None);
        }
        Ok(self.load(id).await?.map(|(r, _)| r.session))
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        let now = self.store_now().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1 AND (idle_expires_at IS NULL OR idle_expires_at > $1)")
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
