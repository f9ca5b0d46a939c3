//! Sesame's Redis [`SessionStore`]: sessions as hashes with a TTL, and every
//! operation that reads and then writes as one Lua script, so it is atomic
//! without locks, transactions or retries. Accounts stay in SQL: a server
//! using Redis for sessions keeps its `AccountStore` on SQLite, PostgreSQL
//! or MariaDB.
//!
//! # Key layout
//!
//! Every key starts with a configurable prefix `{p}` (`sesame:` by default,
//! so a session is `sesame:s:AbC…`).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}s:{sid}` | hash | one session (below); TTL = its end + [`RedisStoreOptions::revoked_visibility`] |
//! | `{p}u:{user id}` | sorted set | the user's session ids, score = `last_seen_at`; TTL covers its longest-lived member |
//! | `{p}active` | sorted set | every unrevoked session id, score = the store time its key is no longer needed |
//! | `{p}revocations` | stream | revocation rows, entry id `{seq}-0`, fields `sid`, `reason`, `not_after` |
//! | `{p}revseq` | string | the last revocation sequence number |
//!
//! (`sid` is the 22-character base64url form, the user id the hyphenated
//! UUID.) Session hash fields: `id`, `user_id`, `transport`, `gen`, `cur`,
//! `prev`, `rotated_at`, `rotated_ua_hash`, `grace_answers`, `key_ver`,
//! `created_at`, `last_seen_at`, `idle_expires_at`, `expires_at`,
//! `auth_time`, `aal`, `revoked_at`, `revoke_reason`, `ip`, `user_agent`,
//! `claims`. Hashes (`cur`, `prev`, `rotated_ua_hash`) are lowercase hex,
//! times are Unix seconds in decimal, `claims` is a JSON object, and an
//! absent optional value is an absent field.
//!
//! A session's key lives until its end (revocation, or the earlier of idle
//! and absolute expiry) plus the visibility period (at least the revocation
//! margin, plus a minute), so the device list can
//! show recently ended sessions; every rotation moves that TTL with the
//! sliding idle expiry. Revocation rows are pruned from the head of the
//! stream once past `not_after` by more than the margin. The sequence
//! counter is seeded from Redis's clock in microseconds, so a Redis that
//! lost its data still hands out numbers above every earlier one (resource
//! servers and other instances keep polling `seq > last`).
//!
//! # Why each script is atomic
//!
//! Redis runs one script at a time, with no other command in between, and
//! replicates its effects as one unit. So:
//!
//! - `rotate.lua` reads the session, classifies the presented token by the
//!   rules of [`sesame_core::rotation::decide`] (revoked and expired first,
//!   then transport, current → rotate, parent → grace / stale / reuse, older
//!   → reuse, ahead or mismatched → rollback suspected) and applies the
//!   decision in the same call: a rotation cannot race another rotation, the
//!   grace-answer count is checked and incremented together, and reuse
//!   revokes (and writes its rows) before anyone else can read the row. The
//!   race-loser rule of the SQL stores (`lost_race`) never applies here.
//! - `create.lua` ends the replaced session, counts the user's live
//!   sessions against the cap, evicts the least recently used (or refuses,
//!   writing nothing) and inserts, so concurrent logins cannot overshoot the
//!   cap.
//! - `revoke.lua`, `revoke_user.lua` and `revoke_all.lua` check "not revoked
//!   yet" and write the revocation and its row together, so every
//!   revocation has exactly one row and the first reason is kept.
//!
//! # Store time
//!
//! With [`RedisClock::Server`] every script reads Redis's `TIME`, so all
//! instances decide rotation and expiry on one clock. [`RedisClock::Fixed`]
//! passes a caller's clock instead (tests drive a manual clock with it).
//!
//! # Limits
//!
//! - Scripts touch keys they derive from the prefix (a user's sessions, the
//!   indexes, the stream), so this store needs a standalone Redis (or a
//!   primary behind one URL), not Redis Cluster.
//! - `revoke_all` walks every unrevoked session inside one script, blocking
//!   Redis for its duration: an operator's command after a restore, not a
//!   request path.
//! - Set [`RedisStoreOptions::revoked_visibility`] at least as long as the
//!   window the device list asks for (`list_sessions`' `revoked_since`):
//!   ended sessions vanish from Redis after it.
//! - Hash comparisons in Lua are not constant-time; they compare SHA-256
//!   hashes of secrets, never secrets, after the engine checked the token's
//!   tag in constant time.
//! - Without AOF a Redis restart loses sessions and revocations
//!   ([`RedisSessionStore::check_persistence`]).
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::io::tcp::socket2::TcpKeepalive;
use redis::{
    ErrorKind, IntoConnectionInfo, RedisError, Script, ScriptInvocation, ServerErrorKind, Value,
};
use sesame_core::clock::{Clock, UnixTime};
use sesame_core::ids::{SessionId, UserId};
use sesame_core::rotation::{Channel, Presented, ReuseClass, RotationPolicy};
use sesame_core::session::{Aal, RevokeReason, Session, Transport};
use sesame_core::store::{
    Created, NewSession, Revocation, RotationOutcome, SessionStore, StoreError,
};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Where store time comes from.
#[derive(Debug, Clone)]
pub enum RedisClock {
    /// Redis's own `TIME`, read inside every script (production).
    Server,
    /// A caller's clock, passed to every script (tests).
    Fixed(Arc<dyn Clock>),
}

/// How to connect and lay out keys.
#[derive(Debug, Clone)]
pub struct RedisStoreOptions {
    /// Prefix of every key (`sesame:` by default).
    pub key_prefix: String,
    /// Where store time comes from.
    pub clock: RedisClock,
    /// Revocation rows stay relevant this long after the revocation (max
    /// access-token lifetime + leeway): `not_after = now + margin`.
    pub revocation_margin: i64,
    /// How long an ended session stays readable (device list, `session()`),
    /// in seconds: 7 days by default.
    pub revoked_visibility: i64,
    /// How long one command may wait for its reply.
    pub response_timeout: Duration,
    /// How long one connection attempt may take.
    pub connection_timeout: Duration,
    /// `TCP_USER_TIMEOUT` (Linux): how long sent data may stay unacknowledged
    /// before the kernel drops the connection. Without it a blackholed Redis
    /// keeps the old connection (every call timing out) for many minutes;
    /// with it the connection dies and is replaced. Keepalive probes cover
    /// idle connections the same way.
    pub tcp_user_timeout: Duration,
}

impl Default for RedisStoreOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sesame:".into(),
            clock: RedisClock::Server,
            revocation_margin: 660,
            revoked_visibility: 7 * 24 * 3600,
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
            tcp_user_timeout: Duration::from_secs(10),
        }
    }
}

/// What `CONFIG GET appendonly` (or `INFO persistence`) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// The append-only file is on: acknowledged writes survive a restart.
    Aof,
    /// The append-only file is off (RDB snapshots at most): a restart can
    /// lose recent rotations and revocations.
    Volatile,
    /// Redis would not say (`CONFIG` and `INFO` disabled or renamed).
    Unknown,
}

struct Scripts {
    rotate: Script,
    create: Script,
    revoke: Script,
    revoke_user: Script,
    revoke_all: Script,
    list: Script,
    set_claims: Script,
    count_live: Script,
    reauthenticate: Script,
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    rotate: script!("rotate.lua"),
    create: script!("create.lua"),
    revoke: script!("revoke.lua"),
    revoke_user: script!("revoke_user.lua"),
    revoke_all: script!("revoke_all.lua"),
    list: script!("list.lua"),
    set_claims: script!("set_claims.lua"),
    count_live: script!("count_live.lua"),
    reauthenticate: script!("reauthenticate.lua"),
});

/// Sessions in Redis. Cheap to clone (one multiplexed connection that
/// reconnects by itself).
#[derive(Clone)]
pub struct RedisSessionStore {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    clock: RedisClock,
    margin: i64,
    keep: i64,
    op_timeout: Duration,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.prefix)
            .field("clock", &self.clock)
            .field("margin", &self.margin)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

/// Connection trouble, timeouts and a Redis that cannot serve right now
/// (loading, busy with a script, out of memory, failing to persist, read-only
/// replica): the store is unavailable rather than wrong.
fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
        || matches!(
            e.code(),
            Some("BUSY" | "MISCONF" | "OOM" | "NOREPLICAS" | "LOADING" | "MASTERDOWN")
        )
}

/// [`StoreError::Unavailable`] (503) for transient failures, keeping the
/// source; [`StoreError::Other`] for anything else (a bug or bad data).
fn classify(e: RedisError) -> StoreError {
    if is_transient(&e) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Other(Box::new(e))
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt redis data: {what}").into())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// An optional string as a script argument: `''` none, `'+value'` value.
fn opt_arg(v: Option<&str>) -> String {
    v.map_or_else(String::new, |s| format!("+{s}"))
}

fn text(v: &Value) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| corrupt("not UTF-8")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Okay => Ok("OK".into()),
        _ => Err(corrupt("expected a string")),
    }
}

fn items(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        _ => Err(corrupt("expected an array")),
    }
}

/// A reply's tag and the rest.
fn tagged(v: Value) -> Result<(String, std::vec::IntoIter<Value>), StoreError> {
    let mut it = items(v)?.into_iter();
    let tag = text(&it.next().ok_or_else(|| corrupt("empty reply"))?)?;
    Ok((tag, it))
}

/// A hash as HGETALL returns it (flat pairs, or a RESP3 map).
fn fields(v: Value) -> Result<HashMap<String, String>, StoreError> {
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| Ok((text(k)?, text(v)?)))
            .collect(),
        other => {
            let flat = items(other)?;
            if flat.len() % 2 != 0 {
                return Err(corrupt("odd hash reply"));
            }
            flat.chunks_exact(2)
                .map(|kv| Ok((text(&kv[0])?, text(&kv[1])?)))
                .collect()
        }
    }
}

fn sid_list(v: Value) -> Result<Vec<SessionId>, StoreError> {
    items(v)?
        .iter()
        .map(|x| SessionId::parse(&text(x)?).ok_or_else(|| corrupt("session id")))
        .collect()
}

fn req<'a>(m: &'a HashMap<String, String>, f: &str) -> Result<&'a str, StoreError> {
    m.get(f)
        .map(String::as_str)
        .ok_or_else(|| corrupt(&format!("missing field {f}")))
}

fn int(m: &HashMap<String, String>, f: &str) -> Result<i64, StoreError> {
    req(m, f)?
        .parse()
        .map_err(|_| corrupt(&format!("field {f}")))
}

fn opt_int(m: &HashMap<String, String>, f: &str) -> Result<Option<i64>, StoreError> {
    m.get(f)
        .map(|v| v.parse().map_err(|_| corrupt(&format!("field {f}"))))
        .transpose()
}

/// Decodes a session hash.
fn session_from(m: &HashMap<String, String>) -> Result<Session, StoreError> {
    let reason = m
        .get("revoke_reason")
        .map(|r| RevokeReason::parse(r).ok_or_else(|| corrupt("revoke_reason")))
        .transpose()?;
    Ok(Session {
        id: SessionId::parse(req(m, "id")?).ok_or_else(|| corrupt("id"))?,
        user_id: UserId::parse(req(m, "user_id")?).ok_or_else(|| corrupt("user_id"))?,
        transport: Transport::parse(req(m, "transport")?).ok_or_else(|| corrupt("transport"))?,
        generation: u32::try_from(int(m, "gen")?).map_err(|_| corrupt("gen"))?,
        key_version: u8::try_from(int(m, "key_ver")?).map_err(|_| corrupt("key_ver"))?,
        created_at: int(m, "created_at")?,
        last_seen_at: int(m, "last_seen_at")?,
        idle_expires_at: opt_int(m, "idle_expires_at")?,
        expires_at: int(m, "expires_at")?,
        auth_time: int(m, "auth_time")?,
        aal: Aal::parse(req(m, "aal")?).ok_or_else(|| corrupt("aal"))?,
        revoked_at: opt_int(m, "revoked_at")?,
        revoke_reason: reason,
        ip: m.get("ip").cloned(),
        user_agent: m.get("user_agent").cloned(),
        claims: serde_json::from_str(req(m, "claims")?).map_err(|_| corrupt("claims"))?,
    })
}

fn session_value(v: Value) -> Result<Session, StoreError> {
    session_from(&fields(v)?)
}

fn next_session(rest: &mut impl Iterator<Item = Value>) -> Result<Session, StoreError> {
    session_value(rest.next().ok_or_else(|| corrupt("no session in reply"))?)
}

impl RedisSessionStore {
    /// Connects and checks that the server answers. Fails with
    /// [`StoreError::Unavailable`] if Redis cannot be reached within about
    /// three connection attempts (the operation timeout).
    ///
    /// Every later call is bounded by the same operation timeout
    /// (3 × `connection_timeout` + `response_timeout`): a call made while
    /// the connection is being replaced waits for the reconnection, which
    /// the response timeout alone does not bound. A call that timed out may
    /// still have been applied (Redis got the script, the reply was lost);
    /// it is never half-applied.
    pub async fn connect(url: &str, options: RedisStoreOptions) -> Result<Self, StoreError> {
        let info = url
            .into_connection_info()
            .map_err(|e| StoreError::Other(Box::new(e)))?;
        let keepalive = TcpKeepalive::new()
            .with_time(Duration::from_secs(15))
            .with_interval(Duration::from_secs(5));
        let tcp = TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive);
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        let tcp = tcp.set_user_timeout(options.tcp_user_timeout);
        let client = redis::Client::open(info.set_tcp_settings(tcp))
            .map_err(|e| StoreError::Other(Box::new(e)))?;
        let pubsub_client = client.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connection_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        // A reconnection in progress holds requests until it succeeds or
        // gives up, outside the response timeout: bound each call as a whole.
        let op_timeout = options.connection_timeout * 3 + options.response_timeout;
        let conn = match tokio::time::timeout(
            op_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(r) => r.map_err(classify)?,
            Err(_) => return Err(StoreError::Unavailable("redis connect timed out".into())),
        };
        let margin = options.revocation_margin.max(0);
        let store = Self {
            conn,
            client: pubsub_client,
            prefix: options.key_prefix,
            clock: options.clock,
            margin,
            keep: options.revoked_visibility.max(margin).max(0) + 60,
            op_timeout,
        };
        store.now().await?;
        Ok(store)
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether Redis persists writes with the append-only file, from
    /// `CONFIG GET appendonly`, or `INFO persistence` where `CONFIG` is
    /// disabled (managed services), or [`Persistence::Unknown`] when neither
    /// answers. In production a volatile Redis is refused unless explicitly
    /// allowed (`allow_volatile_session_store`).
    pub async fn check_persistence(&self) -> Result<Persistence, StoreError> {
        let mut conn = self.conn.clone();
        let config: Result<HashMap<String, String>, RedisError> = self
            .bounded(
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("appendonly")
                    .query_async(&mut conn),
            )
            .await?;
        match config {
            Ok(m) => {
                if let Some(v) = m.get("appendonly") {
                    return Ok(if v.eq_ignore_ascii_case("yes") {
                        Persistence::Aof
                    } else {
                        Persistence::Volatile
                    });
                }
            }
            Err(e) if is_transient(&e) => return Err(classify(e)),
            Err(e) => tracing::debug!(error = %e, "CONFIG GET appendonly refused; trying INFO"),
        }
        let info: Result<String, RedisError> = self
            .bounded(redis::cmd("INFO").arg("persistence").query_async(&mut conn))
            .await?;
        match info {
            Ok(s) => Ok(s
                .lines()
                .find_map(|l| l.trim().strip_prefix("aof_enabled:"))
                .map_or(Persistence::Unknown, |v| {
                    if v.trim() == "1" {
                        Persistence::Aof
                    } else {
                        Persistence::Volatile
                    }
                })),
            Err(e) if is_transient(&e) => Err(classify(e)),
            Err(_) => Ok(Persistence::Unknown),
        }
    }

    fn session_key(&self, id: SessionId) -> String {
        format!("{}s:{id}", self.prefix)
    }

    fn user_key(&self, id: UserId) -> String {
        format!("{}u:{id}", self.prefix)
    }

    fn clock_arg(&self) -> i64 {
        match &self.clock {
            RedisClock::Server => -1,
            RedisClock::Fixed(c) => c.now(),
        }
    }

    /// A script call with the common arguments (prefix, time, margin, keep).
    /// The store's multiplexed connection, for other shared state of the
    /// same deployment (the server's rate limits), under [`Self::prefix`].
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The key prefix of this store.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bound of one call (see [`RedisSessionStore::connect`]).
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Calls `wake` whenever any instance writes a revocation row (the
    /// scripts publish on `<prefix>revocations:wake`), so revocation feeds
    /// tail without polling. Runs until the returned future is dropped,
    /// resubscribing with a pause after any connection error.
    pub async fn watch_revocations(&self, wake: impl Fn() + Send + Sync) {
        use futures_util::StreamExt as _;
        let channel = format!("{}revocations:wake", self.prefix);
        loop {
            let subscribed = async {
                let mut ps = self.client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                Ok::<_, RedisError>(ps)
            };
            match tokio::time::timeout(self.op_timeout, subscribed).await {
                Ok(Ok(ps)) => {
                    // Anything may have happened while unsubscribed.
                    wake();
                    let mut messages = ps.into_on_message();
                    while messages.next().await.is_some() {
                        wake();
                    }
                    tracing::warn!("redis revocation subscription ended; resubscribing");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "redis revocation subscription failed"),
                Err(_) => tracing::warn!("redis revocation subscription timed out"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(self.clock_arg())
            .arg(self.margin)
            .arg(self.keep);
        inv
    }

    /// Bounds a call by the operation timeout; the inner result is the
    /// command's own.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<Result<T, RedisError>, StoreError> {
        tokio::time::timeout(self.op_timeout, fut)
            .await
            .map_err(|_| StoreError::Unavailable("redis call timed out".into()))
    }

    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        self.bounded(fut).await?.map_err(classify)
    }

    async fn run(&self, inv: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        let mut conn = self.conn.clone();
        self.call(inv.invoke_async::<Value>(&mut conn)).await
    }
}

fn reason_of(v: Option<Value>) -> Result<RevokeReason, StoreError> {
    let s = text(&v.ok_or_else(|| corrupt("missing reason"))?)?;
    RevokeReason::parse(&s).ok_or_else(|| corrupt("revoke_reason"))
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create_session(&self, new: NewSession) -> Result<Created, StoreError> {
        let claims = serde_json::Value::Object(new.claims).to_string();
        let mut inv = self.invocation(&SCRIPTS.create);
        inv.key(self.session_key(new.id))
            .key(self.user_key(new.user_id))
            .arg(new.id.to_string())
            .arg(new.user_id.to_string())
            .arg(new.transport.as_str())
            .arg(hex(&new.first_hash))
            .arg(hex(&new.ua_hash))
            .arg(new.key_version)
            .arg(new.idle_ttl.map_or_else(String::new, |t| t.to_string()))
            .arg(new.max_age)
            .arg(new.aal.as_str())
            .arg(opt_arg(new.ip.as_deref()))
            .arg(opt_arg(new.user_agent.as_deref()))
            .arg(claims)
            .arg(new.cap.map_or_else(String::new, |c| c.max.to_string()))
            .arg(if new.cap.is_some_and(|c| c.evict_oldest) {
                "1"
            } else {
                "0"
            })
            .arg(new.replaces.map_or_else(String::new, |s| s.to_string()));
        let (tag, mut rest) = tagged(self.run(&inv).await?)?;
        match tag.as_str() {
            "created" => {
                let session = next_session(&mut rest)?;
                let revoked = sid_list(rest.next().unwrap_or(Value::Nil))?;
                Ok(Created::Session { session, revoked })
            }
            "limit" => Ok(Created::LimitReached),
            "conflict" => Err(StoreError::Conflict),
            other => Err(corrupt(&format!("create reply {other}"))),
        }
    }

    async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let mut conn = self.conn.clone();
        let v: Value = self
            .call(
                redis::cmd("HGETALL")
                    .arg(self.session_key(id))
                    .query_async(&mut conn),
            )
            .await?;
        let m = fields(v)?;
        if m.is_empty() {
            return Ok(None);
        }
        session_from(&m).map(Some)
    }

    async fn rotate(
        &self,
        id: SessionId,
        p: &Presented,
        policy: &RotationPolicy,
    ) -> Result<RotationOutcome, StoreError> {
        let mut inv = self.invocation(&SCRIPTS.rotate);
        inv.key(self.session_key(id))
            .arg(id.to_string())
            .arg(p.generation)
            .arg(hex(&p.secret_hash))
            .arg(hex(&p.successor_hash))
            .arg(hex(&p.ua_hash))
            .arg(match p.channel {
                Channel::Cookie => "cookie",
                Channel::Body => "body",
            })
            .arg(policy.grace)
            .arg(policy.late_retry)
            .arg(policy.grace_max_answers)
            .arg(policy.idle_ttl.map_or_else(String::new, |t| t.to_string()))
            .arg(if policy.reuse_revokes_user { "1" } else { "0" });
        let (tag, mut rest) = tagged(self.run(&inv).await?)?;
        Ok(match tag.as_str() {
            "not_found" => RotationOutcome::NotFound,
            "revoked" => RotationOutcome::Revoked(reason_of(rest.next())?),
            "expired" => RotationOutcome::Expired,
            "transport_mismatch" => RotationOutcome::TransportMismatch,
            "stale" => RotationOutcome::Stale,
            "rollback" => RotationOutcome::RollbackSuspected,
            "rotated" => RotationOutcome::Rotated(next_session(&mut rest)?),
            "grace" => RotationOutcome::Grace(next_session(&mut rest)?),
            "reused" => {
                let class = match text(&rest.next().ok_or_else(|| corrupt("no class"))?)?.as_str() {
                    "likely_theft" => ReuseClass::LikelyTheft,
                    "likely_slow_client" => ReuseClass::LikelySlowClient,
                    _ => return Err(corrupt("reuse class")),
                };
                let session = next_session(&mut rest)?;
                let revoked = sid_list(rest.next().unwrap_or(Value::Nil))?;
                RotationOutcome::Reused {
                    session,
                    class,
                    revoked,
                }
            }
            other => return Err(corrupt(&format!("rotate reply {other}"))),
        })
    }

    async fn revoke(
        &self,
        id: SessionId,
        reason: RevokeReason,
    ) -> Result<Option<Session>, StoreError> {
        let mut inv = self.invocation(&SCRIPTS.revoke);
        inv.key(self.session_key(id))
            .arg(id.to_string())
            .arg(reason.as_str());
        let (tag, mut rest) = tagged(self.run(&inv).await?)?;
        match tag.as_str() {
            "absent" => Ok(None),
            "ok" => Ok(Some(next_session(&mut rest)?)),
            other => Err(corrupt(&format!("revoke reply {other}"))),
        }
    }

    async fn revoke_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut inv = self.invocation(&SCRIPTS.revoke_user);
        inv.key(self.user_key(user))
            .arg(user.to_string())
            .arg(keep.map_or_else(String::new, |s| s.to_string()))
            .arg(reason.as_str());
        sid_list(self.run(&inv).await?)
    }

    async fn set_user_claims(
        &self,
        user: UserId,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, StoreError> {
        let mut inv = self.invocation(&SCRIPTS.set_claims);
        inv.key(self.user_key(user))
            .arg(user.to_string())
            .arg(serde_json::Value::Object(claims.clone()).to_string());
        match self.run(&inv).await? {
            Value::Int(n) => u64::try_from(n).map_err(|_| corrupt("count")),
            _ => Err(corrupt("set_claims reply")),
        }
    }

    async fn reauthenticate(&self, id: SessionId, aal: Aal) -> Result<Option<Session>, StoreError> {
        let mut inv = self.invocation(&SCRIPTS.reauthenticate);
        inv.key(self.session_key(id)).arg(aal.as_str());
        let (tag, mut rest) = tagged(self.run(&inv).await?)?;
        match tag.as_str() {
            "absent" => Ok(None),
            "ok" => Ok(Some(next_session(&mut rest)?)),
            other => Err(corrupt(&format!("reauthenticate reply {other}"))),
        }
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        let inv = self.invocation(&SCRIPTS.count_live);
        match self.run(&inv).await? {
            Value::Int(n) => u64::try_from(n).map_err(|_| corrupt("count")),
            _ => Err(corrupt("count_live reply")),
        }
    }

    async fn purge_sessions(
        &self,
        _ended_before: UnixTime,
    ) -> Result<sesame_core::store::Purged, StoreError> {
        // Nothing to do: every session key carries a TTL to the end of its
        // visibility, and the revocation stream is trimmed past `not_after`
        // each time a row is added.
        Ok(sesame_core::store::Purged::default())
    }

    async fn revoke_all(&self, reason: RevokeReason) -> Result<u64, StoreError> {
        let mut inv = self.invocation(&SCRIPTS.revoke_all);
        inv.key(format!("{}active", self.prefix))
            .arg(reason.as_str());
        match self.run(&inv).await? {
            Value::Int(n) => u64::try_from(n).map_err(|_| corrupt("count")),
            _ => Err(corrupt("revoke_all reply")),
        }
    }

    async fn list_sessions(
        &self,
        user: UserId,
        revoked_since: UnixTime,
    ) -> Result<Vec<Session>, StoreError> {
        let mut inv = self.invocation(&SCRIPTS.list);
        inv.key(self.user_key(user));
        let mut it = items(self.run(&inv).await?)?.into_iter();
        let now: i64 = text(&it.next().ok_or_else(|| corrupt("no time"))?)?
            .parse()
            .map_err(|_| corrupt("time"))?;
        let mut out = it
            .map(session_value)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|s| match s.revoked_at {
                Some(at) => at >= revoked_since,
                None => {
                    let end = s
                        .idle_expires_at
                        .map_or(s.expires_at, |i| i.min(s.expires_at));
                    s.is_live(now) || end >= revoked_since
                }
            })
            .collect::<Vec<_>>();
        // Unrevoked first, then most recently used first.
        out.sort_by_key(|s| {
            (
                s.revoked_at.is_some(),
                Reverse(s.last_seen_at),
                Reverse(s.created_at),
                Reverse(s.id),
            )
        });
        Ok(out)
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = if after < 0 {
            "-".to_string()
        } else {
            format!("{}-0", after.saturating_add(1))
        };
        let mut conn = self.conn.clone();
        let v: Value = self
            .call(
                redis::cmd("XRANGE")
                    .arg(format!("{}revocations", self.prefix))
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut conn),
            )
            .await?;
        items(v)?
            .into_iter()
            .map(|entry| {
                let mut e = items(entry)?.into_iter();
                let id = text(&e.next().ok_or_else(|| corrupt("stream id"))?)?;
                let seq = id
                    .split_once('-')
                    .and_then(|(s, _)| s.parse::<i64>().ok())
                    .ok_or_else(|| corrupt("stream id"))?;
                let f = fields(e.next().unwrap_or(Value::Nil))?;
                Ok(Revocation {
                    seq,
                    session_id: SessionId::parse(req(&f, "sid")?)
                        .ok_or_else(|| corrupt("row sid"))?,
                    reason: RevokeReason::parse(req(&f, "reason")?)
                        .ok_or_else(|| corrupt("row reason"))?,
                    not_after: int(&f, "not_after")?,
                })
            })
            .collect()
    }

    async fn now(&self) -> Result<UnixTime, StoreError> {
        // One round trip either way, so this doubles as a reachability check.
        let mut conn = self.conn.clone();
        let (secs, _micros): (i64, i64) =
            self.call(redis::cmd("TIME").query_async(&mut conn)).await?;
        Ok(match &self.clock {
            RedisClock::Server => secs,
            RedisClock::Fixed(c) => c.now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    }

    #[test]
    fn scripts_are_distinct() {
        let s = &*SCRIPTS;
        let hashes = [
            s.rotate.get_hash(),
            s.create.get_hash(),
            s.revoke.get_hash(),
            s.revoke_user.get_hash(),
            s.revoke_all.get_hash(),
            s.list.get_hash(),
        ];
        let set: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(set.len(), hashes.len());
    }

    #[test]
    fn optional_arguments() {
        assert_eq!(opt_arg(None), "");
        assert_eq!(opt_arg(Some("")), "+");
        assert_eq!(opt_arg(Some("1.2.3.4")), "+1.2.3.4");
    }
}
