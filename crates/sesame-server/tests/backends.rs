//! The server on its networked stores (DESIGN §6, issue 3): PostgreSQL,
//! MariaDB, and Redis sessions (with accounts in SQLite), through real
//! sockets, under the servers' manual clock (`StoreTime::Fixed`).
//!
//! Each scenario runs once per backend (`<scenario>::postgres`, `::mariadb`,
//! `::redis`), each on a fresh database (`sesame_srv_<time>_<random>`) or
//! Redis key prefix, removed at the end. A backend whose URL variable
//! (`SESAME_TEST_POSTGRES_URL`, `SESAME_TEST_MARIADB_URL`,
//! `SESAME_TEST_REDIS_URL`) is unset is reported as SKIPPED by name, or
//! fails the test under `SESAME_REQUIRE_BACKENDS=1`.
//!
//! - `http_flow`: register, login, me, refresh, logout;
//! - `two_instances`: two servers on one database or prefix — one rotation
//!   among concurrent refreshes split across both, reuse detected on either,
//!   tokens and key rotations shared, revocations enforced within a second;
//! - `store_faults`: the store behind a `FaultProxy` — cut and blackhole
//!   answer 503 `storage_unavailable` within the store timeouts, `/readyz`
//!   is not ready, and after `restore` service resumes by itself with
//!   nothing half-written;
//! - `readyz_clock_skew`: a store clock 10 s away from the instance's;
//! - `cli_commands`: the `sesame` binary's `migrate [--check]`, `user`,
//!   `keys` and `sessions` commands on the backend, beside a running server.
//!
//! Plus, once: production refuses a Redis without AOF unless
//! `allow_volatile_session_store`, and (always, on SQLite) `/readyz`
//! checks a separate session store's clock.

mod common;

use async_trait::async_trait;
use common::*;
use sesame_core::clock::{Clock as _, ManualClock, SystemClock, UnixTime};
use sesame_core::ids::{SessionId, UserId};
use sesame_core::rotation::{Presented, RotationPolicy};
use sesame_core::session::{RevokeReason, Session};
use sesame_core::store::{
    AccountStore as _, Created, NewSession, Revocation, RotationOutcome, SessionStore, StoreError,
};
use sesame_server::config::{self, RawConfig};
use sesame_server::server;
use sesame_store_sqlx::{SqliteStore, SqliteStoreOptions};
use sesame_store_tests::proxy::FaultProxy;
use sqlx::{Connection, Executor};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Backends

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    MariaDb,
    Redis,
}

impl Kind {
    fn var(self) -> &'static str {
        match self {
            Self::Postgres => "SESAME_TEST_POSTGRES_URL",
            Self::MariaDb => "SESAME_TEST_MARIADB_URL",
            Self::Redis => "SESAME_TEST_REDIS_URL",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Postgres => 5432,
            Self::MariaDb => 3306,
            Self::Redis => 6379,
        }
    }
}

/// Databases of earlier runs older than this are dropped when a test starts
/// (a run killed midway leaves its databases behind).
const STALE_AFTER_SECS: u64 = 3600;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One test's share of a backend: a fresh PostgreSQL or MariaDB database, or
/// a fresh Redis key prefix (accounts then stay in the server's SQLite
/// file). Dropping it removes the database or the keys.
struct Backend {
    kind: Kind,
    /// The server URL from the environment.
    base: url::Url,
    /// The database name, or the key prefix.
    name: String,
}

/// The backend for test `test`, or `None` after reporting it SKIPPED (which
/// fails the test under `SESAME_REQUIRE_BACKENDS=1`).
async fn provision_or_skip(kind: Kind, test: &str) -> Option<Backend> {
    match Backend::provision(kind).await {
        Ok(b) => Some(b),
        Err(why) => {
            sesame_store_tests::unavailable(test, &why);
            None
        }
    }
}

impl Backend {
    async fn provision(kind: Kind) -> Result<Self, String> {
        let var = kind.var();
        let raw = std::env::var(var).map_err(|_| format!("{var} not set"))?;
        let base = url::Url::parse(&raw).map_err(|e| format!("{var}: {e}"))?;
        let started = unix_now();
        let n = u64::from_le_bytes(sesame_core::crypto::random::<8>());
        let name = format!("sesame_srv_{started}_{n:016x}");
        match kind {
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&raw)
                    .await
                    .map_err(|e| format!("connect {raw}: {e}"))?;
                let old: Vec<String> = sqlx::query_scalar(
                    "SELECT datname::text FROM pg_database WHERE datname LIKE 'sesame\\_srv\\_%'",
                )
                .fetch_all(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
                for db in old.iter().filter(|d| is_stale(d, started)) {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                        )))
                        .await;
                }
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok(Self { kind, base, name })
            }
            Kind::MariaDb => {
                let mut conn = sqlx::MySqlConnection::connect(&raw)
                    .await
                    .map_err(|e| format!("connect {raw}: {e}"))?;
                let old: Vec<String> = sqlx::query_scalar(
                    "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata \
                     WHERE schema_name LIKE 'sesame\\_srv\\_%'",
                )
                .fetch_all(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
                for db in old.iter().filter(|d| is_stale(d, started)) {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS `{db}`"
                        )))
                        .await;
                }
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )))
                .await
                .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok(Self { kind, base, name })
            }
            Kind::Redis => {
                let client =
                    redis::Client::open(raw.as_str()).map_err(|e| format!("{var}: {e}"))?;
                let mut conn = tokio::time::timeout(
                    Duration::from_secs(3),
                    client.get_multiplexed_async_connection(),
                )
                .await
                .map_err(|_| format!("connect {raw}: timed out"))?
                .map_err(|e| format!("connect {raw}: {e}"))?;
                let _: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("PING {raw}: {e}"))?;
                Ok(Self {
                    kind,
                    base,
                    name: format!("{name}:"),
                })
            }
        }
    }

    /// `host:port` of the real server, for a [`FaultProxy`].
    fn upstream(&self) -> String {
        format!(
            "{}:{}",
            self.base.host_str().unwrap_or("127.0.0.1"),
            self.base.port().unwrap_or(self.kind.default_port())
        )
    }

    /// The store URL, through `via` (a proxy) when given.
    fn url(&self, via: Option<SocketAddr>) -> String {
        let mut u = self.base.clone();
        if let Some(a) = via {
            u.set_host(Some(&a.ip().to_string())).unwrap();
            u.set_port(Some(a.port())).unwrap();
        }
        if self.kind != Kind::Redis {
            u.set_path(&format!("/{}", self.name));
        }
        u.to_string()
    }

    /// The configuration change that puts a server on this backend, then `extra`.
    fn tweak(
        &self,
        via: Option<SocketAddr>,
        extra: impl Fn(&mut RawConfig) + Send + Sync + 'static,
    ) -> impl Fn(&mut RawConfig) + Send + Sync + 'static {
        let (kind, url, name) = (self.kind, self.url(via), self.name.clone());
        move |raw: &mut RawConfig| {
            match kind {
                Kind::Postgres | Kind::MariaDb => raw.database_url = Some(url.clone().into()),
                Kind::Redis => {
                    raw.session_store_url = Some(url.clone().into());
                    raw.session_store_prefix = Some(name.clone());
                }
            }
            // Two servers per test, tests in parallel: stay well inside
            // the servers' connection limits.
            raw.database_max_connections = Some(5);
            extra(raw);
        }
    }

    /// A server on this backend (through `via`), on its own manual clock, or
    /// with the stores on `store_clock`.
    async fn server(
        &self,
        via: Option<SocketAddr>,
        store_clock: Option<ManualClock>,
        extra: impl Fn(&mut RawConfig) + Send + Sync + 'static,
    ) -> TestServer {
        TestServer::try_on_backend(self.tweak(via, extra), store_clock)
            .await
            .unwrap_or_else(|e| panic!("a server on {:?} starts: {e}", self.kind))
    }
}

fn is_stale(name: &str, now: u64) -> bool {
    name.split('_')
        .nth(2)
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|at| at.saturating_add(STALE_AFTER_SECS) < now)
}

impl Drop for Backend {
    fn drop(&mut self) {
        let (kind, base, name) = (self.kind, self.base.to_string(), self.name.clone());
        // Drop cannot await, and the test's runtime may be unwinding: a
        // thread with its own runtime, bounded in time.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), remove(kind, &base, &name)).await;
            });
        })
        .join();
    }
}

async fn remove(kind: Kind, base: &str, name: &str) {
    match kind {
        Kind::Postgres => {
            if let Ok(mut c) = sqlx::PgConnection::connect(base).await {
                let _ = c
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await;
                let _ = c.close().await;
            }
        }
        Kind::MariaDb => {
            if let Ok(mut c) = sqlx::MySqlConnection::connect(base).await {
                let _ = c
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS `{name}`"
                    )))
                    .await;
                let _ = c.close().await;
            }
        }
        Kind::Redis => {
            let Ok(c) = redis::Client::open(base) else {
                return;
            };
            let Ok(mut conn) = c.get_multiplexed_async_connection().await else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{name}*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
            }
        }
    }
}

/// Instantiates each scenario `async fn(Kind, &str)` once per backend, as
/// `<scenario>::postgres`, `<scenario>::mariadb` and `<scenario>::redis`.
macro_rules! per_backend {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::Kind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$scenario(Kind::Postgres, concat!(stringify!($scenario), "::postgres")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn mariadb() {
                super::$scenario(Kind::MariaDb, concat!(stringify!($scenario), "::mariadb")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                super::$scenario(Kind::Redis, concat!(stringify!($scenario), "::redis")).await;
            }
        }
    )*};
}

per_backend!(
    http_flow,
    two_instances,
    store_faults,
    readyz_clock_skew,
    cli_commands,
    revocation_feed_across_instances,
);

// ---------------------------------------------------------------------------
// Helpers

fn on(d: &Device, srv: &TestServer) -> Device {
    let mut d = d.clone();
    d.base = srv.base.clone();
    d
}

async fn session_id(d: &Device) -> SessionId {
    let me = d.me().await;
    assert_eq!(me.status, 200, "{}", me.text);
    SessionId::parse(me.body["session"]["id"].as_str().unwrap()).unwrap()
}

async fn stored_session(srv: &TestServer, id: SessionId) -> Session {
    srv.engine()
        .sessions()
        .session(id)
        .await
        .unwrap()
        .expect("the session exists")
}

fn kid(access_token: &str) -> String {
    jsonwebtoken::decode_header(access_token)
        .unwrap()
        .kid
        .unwrap()
}

fn kids(srv: &TestServer) -> HashSet<String> {
    srv.engine()
        .key_ring()
        .keys()
        .map(|k| k.kid().to_string())
        .collect()
}

/// Polls `GET /auth/me` until it answers 401, at most `limit` (real time);
/// returns how long that took and the answer.
async fn until_refused(d: &Device, limit: Duration) -> (Duration, Answer) {
    let started = Instant::now();
    loop {
        let r = d.me().await;
        if r.status == 401 {
            return (started.elapsed(), r);
        }
        assert!(
            started.elapsed() < limit,
            "still {} after {limit:?}: {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/readyz` until ready, at most 15 s (real time).
async fn until_ready(srv: &TestServer) -> Duration {
    let started = Instant::now();
    let d = srv.device();
    loop {
        let r = d.get("/readyz").await;
        if r.status == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not ready 15 s after restore: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// Scenarios

/// Register, me, refresh, logout, login through HTTP.
async fn http_flow(kind: Kind, name: &str) {
    let Some(backend) = provision_or_skip(kind, name).await else {
        return;
    };
    let srv = backend.server(None, None, |_| {}).await;
    let mut d = srv.device();
    let reg = d.register("flow@example.com").await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let me = d.me().await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["user"]["email"], "flow@example.com");
    let before = d.refresh_cookie.clone();
    let r = d.refresh().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(d.refresh_cookie, before, "refresh rotates the cookie");
    assert_eq!(d.me().await.status, 200);

    let out = d.post("/auth/logout", None).await;
    assert_eq!(out.status, 204, "{}", out.text);
    let after = d.me().await;
    assert_eq!(
        (after.status.as_u16(), after.code()),
        (401, "session_revoked")
    );
    assert_eq!(after.body["reason"], "logout");
    assert_eq!(d.refresh_raw().await.code(), "session_revoked");

    let mut again = srv.device();
    let l = again.login("flow@example.com", PASSWORD).await;
    assert_eq!(l.status, 200, "{}", l.text);
    assert_eq!(again.me().await.status, 200);
    assert_eq!(
        again.get("/auth/sessions").await.status,
        200,
        "the device list"
    );
    assert_eq!(srv.device().get("/readyz").await.status, 200);
    srv.stop().await;
}

/// The revocation feed of one instance carries revocations made on another
/// within a second (PostgreSQL: NOTIFY; Redis: pub/sub; MariaDB: the 500 ms
/// poll), in `seq` order; p50/p99 are printed.
async fn revocation_feed_across_instances(kind: Kind, name: &str) {
    let Some(backend) = provision_or_skip(kind, name).await else {
        return;
    };
    let key = sesame_server::server::new_api_key();
    let hash = key.hash.clone();
    let a = backend
        .server(None, None, move |raw| {
            raw.service_api_keys = Some(vec![hash.clone()]);
        })
        .await;
    let b = a.sibling().await;
    let mut feed = common::sse::Feed::connect(&a, &key.key, "").await;
    feed.until("ready", Duration::from_secs(5)).await;
    let mut latencies = Vec::new();
    let mut last_seq = 0;
    for i in 0..20 {
        let mut d = b.device();
        let reg = d.register(&format!("feed{i}@example.com")).await;
        assert_eq!(reg.status, 201, "{}", reg.text);
        let sid = reg.body["session_id"].as_str().unwrap().to_string();
        let t = Instant::now();
        assert_eq!(d.post("/auth/logout", None).await.status, 204);
        let ev = loop {
            let ev = feed
                .next(Duration::from_secs(3))
                .await
                .unwrap_or_else(|| panic!("{name}: no event for revocation {i}"));
            if ev.event == "revoked" {
                break ev;
            }
        };
        latencies.push(t.elapsed());
        assert_eq!(ev.data["sid"], sid.as_str());
        let seq = ev.data["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "seq order");
        last_seq = seq;
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "{name}: revocation on instance B → feed of instance A: p50 {:?}, p99 {:?}",
        p(0.5),
        p(0.99)
    );
    assert!(p(0.99) < Duration::from_secs(1), "{latencies:?}");
    b.stop().await;
    a.stop().await;
}

/// Two servers on one database (or Redis prefix), same secrets, same manual
/// clock: two `sesame` instances behind a load balancer.
async fn two_instances(kind: Kind, name: &str) {
    let Some(backend) = provision_or_skip(kind, name).await else {
        return;
    };
    let a = backend
        .server(None, None, |c| {
            c.grace_max_answers = Some(100);
            // Reloads in this test are explicit or by unknown kid.
            c.key_reload_interval = Some("1h".into());
        })
        .await;
    let b = a.sibling().await;

    // A token minted by A verifies on B.
    let mut d = a.device();
    assert_eq!(d.register("two@example.com").await.status, 201);
    assert_eq!(
        on(&d, &b).me().await.status,
        200,
        "minted on A, verified on B"
    );
    let sid = session_id(&d).await;

    // 20 concurrent refreshes of one token, split across both instances:
    // one rotation, every racer gets the same successor.
    let n = 20;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let racer = if i % 2 == 0 { d.clone() } else { on(&d, &b) };
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            racer.refresh_raw().await
        }));
    }
    let mut successors = HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        successors.insert(r.cookie("__Host-sesame_rt").expect("a successor cookie"));
    }
    assert_eq!(successors.len(), 1, "every racer gets the same successor");
    for srv in [&a, &b] {
        let s = stored_session(srv, sid).await;
        assert_eq!(s.generation, 1, "exactly one generation committed");
        assert!(s.revoked_at.is_none());
    }
    let rt1 = {
        let mut x = d.clone();
        x.refresh_cookie = successors.into_iter().next();
        x
    };

    // The successor rotates on A; after the grace and late-retry windows its
    // replay on B is reuse, and the family is revoked on both.
    let mut latest = rt1.clone();
    let r = latest.refresh().await;
    assert_eq!(r.status, 200, "{}", r.text);
    a.clock.advance(61);
    let replay = on(&rt1, &b).refresh_raw().await;
    assert_eq!(
        (replay.status.as_u16(), replay.code()),
        (401, "refresh_token_reused"),
        "{}",
        replay.text
    );
    for srv in [&a, &b] {
        let (_, r) = until_refused(&on(&latest, srv), Duration::from_secs(3)).await;
        assert_eq!(r.body["reason"], "reuse_detected", "{}", r.text);
        assert_eq!(
            on(&latest, srv).refresh_raw().await.code(),
            "session_revoked"
        );
        assert!(stored_session(srv, sid).await.revoked_at.is_some());
    }

    // A key rotation on A reaches B by its reload.
    a.engine().rotate_keys(false).await.unwrap();
    b.engine().reload_keys().await.unwrap();
    assert_eq!(kids(&a), kids(&b), "one key ring");
    let mut fresh = a.device();
    assert_eq!(fresh.login("two@example.com", PASSWORD).await.status, 200);
    let active = a.engine().key_ring().active().kid().to_string();
    assert_eq!(kid(fresh.access.as_deref().unwrap()), active);
    assert_eq!(on(&fresh, &b).me().await.status, 200);

    // Two more rotations on A and no reload on B: A signs with a key B has
    // never seen; B reloads for the unknown kid (rate-limited) and accepts.
    a.engine().rotate_keys(false).await.unwrap();
    a.engine().rotate_keys(false).await.unwrap();
    let mut newest = a.device();
    assert_eq!(newest.login("two@example.com", PASSWORD).await.status, 200);
    let new_kid = kid(newest.access.as_deref().unwrap());
    assert!(!kids(&b).contains(&new_kid), "B does not know the key yet");
    let me = on(&newest, &b).me().await;
    assert_eq!(
        me.status, 200,
        "unknown kid → reload → accepted: {}",
        me.text
    );
    assert!(kids(&b).contains(&new_kid));

    // A revocation on A is enforced by B's liveness check within a second.
    let other_sid = session_id(&fresh).await;
    let other_b = on(&fresh, &b);
    assert_eq!(other_b.me().await.status, 200);
    let del = newest.delete(&format!("/auth/sessions/{other_sid}")).await;
    assert_eq!(del.status, 204, "{}", del.text);
    let (after, r) = until_refused(&other_b, Duration::from_secs(3)).await;
    assert_eq!(r.body["reason"], "revoked_by_user");
    assert!(after <= Duration::from_millis(1500), "took {after:?}");

    b.stop().await;
    a.stop().await;
}

/// What a request answered during a store fault, and how long it took.
async fn timed(
    what: &str,
    fut: impl std::future::Future<Output = Answer>,
) -> (String, Answer, Duration) {
    let started = Instant::now();
    let a = fut.await;
    (what.to_string(), a, started.elapsed())
}

/// The store behind a fault proxy: cut, restore, blackhole, restore.
async fn store_faults(kind: Kind, name: &str) {
    let Some(backend) = provision_or_skip(kind, name).await else {
        return;
    };
    let proxy = FaultProxy::start(&backend.upstream()).await.unwrap();
    let srv = backend
        .server(Some(proxy.addr()), None, |c| {
            c.database_acquire_timeout = Some("1s".into());
            c.database_statement_timeout = Some("1s".into());
            c.request_timeout = Some("5s".into());
        })
        .await;
    let mut d = srv.device();
    assert_eq!(d.register("faults@example.com").await.status, 201);
    let sid = session_id(&d).await;

    for (fault, generation) in [("cut", 1), ("blackhole", 2)] {
        let before = d.clone();
        match fault {
            "cut" => proxy.cut(),
            _ => proxy.blackhole(),
        }
        let mut login = srv.device();
        let answers = [
            timed("refresh", d.refresh_raw()).await,
            timed("login", login.login("faults@example.com", PASSWORD)).await,
            timed("logout", d.post("/auth/logout", None)).await,
            timed("readyz", d.get("/readyz")).await,
        ];
        for (what, a, took) in &answers {
            assert_eq!(a.status, 503, "{fault}: {what}: {}", a.text);
            if what == "readyz" {
                assert_eq!(a.body["reason"], "storage_unavailable", "{}", a.text);
            } else {
                assert_eq!(
                    a.code(),
                    "storage_unavailable",
                    "{fault}: {what}: {}",
                    a.text
                );
                assert!(a.headers.contains_key("retry-after"));
                assert!(
                    a.cookie("__Host-sesame_rt").is_none(),
                    "{fault}: {what}: no cookie change during an outage"
                );
                // The store's own timeouts answered, not the request timeout.
                assert_ne!(a.body["detail"], "The request timed out", "{fault}: {what}");
            }
            assert!(
                *took < Duration::from_secs(4),
                "{fault}: {what} took {took:?} (store timeouts are 1 s, the request timeout 5 s)"
            );
        }
        eprintln!(
            "{name}: {fault}: {}",
            answers
                .iter()
                .map(|(w, _, t)| format!("{w} {t:.2?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );

        proxy.restore();
        let took = until_ready(&srv).await;
        eprintln!("{name}: ready {took:.2?} after restoring from {fault}");
        // Nothing was half-written: the token from before the fault rotates,
        // once, when the store is back (retrying while it reconnects).
        d = before;
        let started = Instant::now();
        let r = loop {
            let r = d.refresh_raw().await;
            if r.status != 503 || started.elapsed() > Duration::from_secs(10) {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(r.status, 200, "after {fault}: {}", r.text);
        d.absorb(&r);
        let s = stored_session(&srv, sid).await;
        assert_eq!(s.generation, generation, "after {fault}: one rotation");
        assert!(s.revoked_at.is_none(), "the failed logout revoked nothing");
        assert_eq!(d.me().await.status, 200);
    }
    srv.stop().await;
}

/// `/readyz` with the store's clock 10 s ahead of the instance's: not ready,
/// `clock_skew`; ready again once the clocks agree. With Redis, the account
/// store (SQLite) agrees and only the separate session store is skewed.
async fn readyz_clock_skew(kind: Kind, name: &str) {
    let Some(backend) = provision_or_skip(kind, name).await else {
        return;
    };
    let store_clock = ManualClock::new(T0 + 10);
    let srv = backend
        .server(None, Some(store_clock.clone()), |_| {})
        .await;
    let r = srv.device().get("/readyz").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["reason"], "clock_skew");
    assert_eq!(r.body["skew_seconds"], 10);
    store_clock.advance(-10);
    assert_eq!(srv.device().get("/readyz").await.status, 200);
    srv.stop().await;
}

/// The `sesame` binary on the backend, with a server beside it: `migrate
/// --check` applies nothing, `migrate` applies, and `user`, `keys` and
/// `sessions` work on the server's data (with Redis, `sessions revoke --all`
/// reaches Redis).
async fn cli_commands(kind: Kind, name: &str) {
    let Some(backend) = provision_or_skip(kind, name).await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "sesame-cli-backend-{:x}",
        u64::from_le_bytes(sesame_core::crypto::random::<8>())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite://{}/sesame.db", dir.display());
    let (database_url, session_store) = match kind {
        Kind::Redis => (sqlite.clone(), Some(backend.url(None))),
        _ => (backend.url(None), None),
    };
    let prefix = backend.name.clone();
    let sesame = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write as _;
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sesame"));
        c.current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SESAME_DATABASE_URL", &database_url)
            .env("SESAME_MASTER_KEY", MASTER_KEY)
            .env("SESAME_REFRESH_KEY", REFRESH_KEY)
            .env("SESAME_METRICS_BIND", "none")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(url) = &session_store {
            c.env("SESAME_SESSION_STORE_URL", url)
                .env("SESAME_SESSION_STORE_PREFIX", &prefix);
        }
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // `--check` reports and applies nothing (exit 1 while anything is pending).
    for _ in 0..2 {
        let (code, out, err) = sesame(&["migrate", "--check"], None);
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(out.contains("pending: "), "{out}");
    }
    let (code, out, err) = sesame(&["migrate"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("applied"), "{out}");
    let (code, out, err) = sesame(&["migrate", "--check"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("up to date"), "{out}");

    // A server on the same data (with Redis, accounts in the CLI's SQLite file).
    let srv = backend
        .server(None, None, move |c| {
            if kind == Kind::Redis {
                c.database_url = Some(sqlite.clone().into());
            }
        })
        .await;
    let mut d = srv.device();
    assert_eq!(d.register("cli@example.com").await.status, 201);

    let (code, out, err) = sesame(&["user", "list"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cli@example.com"), "{out}");
    let (code, out, err) = sesame(&["sessions", "list", "cli@example.com"], None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains("live")).count(),
        1,
        "{out}"
    );
    let (code, out, err) = sesame(&["keys", "rotate"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("active") && out.contains("next") && out.contains("retired"),
        "{out}"
    );
    let (code, out, err) = sesame(
        &["user", "add", "second@example.com"],
        Some("a long enough password\n"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("second@example.com"), "{out}");

    let (code, out, err) = sesame(
        &["sessions", "revoke", "--all", "--reason", "restored"],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("revoked 1 sessions"), "{out}");
    let (_, r) = until_refused(&d, Duration::from_secs(3)).await;
    assert_eq!(r.body["reason"], "restored", "{}", r.text);
    assert_eq!(d.refresh_raw().await.code(), "session_revoked");

    srv.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// Once

/// Production refuses a Redis without the append-only file (the local Redis
/// runs `appendonly no`) unless `allow_volatile_session_store = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_redis_without_aof_unless_allowed() {
    let name = "production_refuses_redis_without_aof_unless_allowed";
    let Some(backend) = provision_or_skip(Kind::Redis, name).await else {
        return;
    };
    let db = std::env::temp_dir().join(format!(
        "sesame-test-prod-{:x}.db",
        u64::from_le_bytes(sesame_core::crypto::random::<8>())
    ));
    let (url, prefix) = (backend.url(None), backend.name.clone());
    let raw = |allow: Option<bool>| RawConfig {
        mode: Some("production".into()),
        public_url: Some("https://auth.example.com".into()),
        database_url: Some(format!("sqlite://{}", db.display()).into()),
        session_store_url: Some(url.clone().into()),
        session_store_prefix: Some(prefix.clone()),
        allow_volatile_session_store: allow,
        master_key: Some(MASTER_KEY.to_string().into()),
        refresh_key: Some(REFRESH_KEY.to_string().into()),
        metrics_bind: Some("none".into()),
        ..Default::default()
    };

    // Production never generates signing keys: create them as
    // `sesame keys rotate` does.
    let config = config::validate(raw(None)).unwrap();
    let accounts = SqliteStore::open(
        &SqliteStoreOptions::new(format!("sqlite://{}", db.display())),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let records = sesame_core::keys::initial_records(
        config.signing_alg,
        SystemClock.now(),
        &config.secrets.master_key,
    )
    .unwrap();
    accounts.save_keys(&records).await.unwrap();
    accounts.close().await;

    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await
        .unwrap();
    if aof.get(1).is_some_and(|v| v == "yes") {
        eprintln!("{name}: this Redis has AOF on; the refusal cannot be shown, only the start");
    } else {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = server::start(listener, config, Arc::new(SystemClock))
            .await
            .expect_err("production refuses a Redis without AOF");
        let e = format!("{e:#}");
        assert!(e.contains("allow_volatile_session_store"), "{e}");
        assert!(!e.contains(&url), "the URL is not echoed: {e}");
    }

    let config = config::validate(raw(Some(true))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let running = server::start(listener, config, Arc::new(SystemClock))
        .await
        .expect("allowed explicitly: starts");
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    running.stop().await.unwrap();
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
}

/// A session store beside the account store, whose clock is 10 s ahead: the
/// account store alone would say ready; `/readyz` checks both. (SQLite for
/// both, so this runs everywhere.)
#[tokio::test]
async fn readyz_checks_a_separate_session_stores_clock() {
    let clock = ManualClock::new(T0);
    let db = std::env::temp_dir().join(format!(
        "sesame-test-skew-{:x}.db",
        u64::from_le_bytes(sesame_core::crypto::random::<8>())
    ));
    let store = SqliteStore::open(
        &SqliteStoreOptions::new(format!("sqlite://{}", db.display())),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let sessions = Arc::new(Skewed {
        inner: store.clone(),
        by: Arc::new(std::sync::atomic::AtomicI64::new(10)),
    });
    let by = sessions.by.clone();
    let stores = server::Stores::custom(Arc::new(store.clone()), sessions);
    let mut raw = RawConfig {
        mode: Some("development".into()),
        database_url: Some(format!("sqlite://{}", db.display()).into()),
        master_key: Some(MASTER_KEY.to_string().into()),
        refresh_key: Some(REFRESH_KEY.to_string().into()),
        metrics_bind: Some("none".into()),
        ..Default::default()
    };
    raw.dev_secrets_file = Some(db.with_extension("secrets").display().to_string());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let running = server::start_with(
        listener,
        config::validate(raw).unwrap(),
        Arc::new(clock.clone()),
        stores,
    )
    .await
    .unwrap();
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "clock_skew");
    assert_eq!(body["skew_seconds"], 10);
    by.store(-3, std::sync::atomic::Ordering::SeqCst);
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(r.status(), 200, "3 s is within the 5 s tolerance");
    running.stop().await.unwrap();
    store.close().await;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
}

/// A session store whose clock is off by `by` seconds.
#[derive(Debug)]
struct Skewed {
    inner: SqliteStore,
    by: Arc<std::sync::atomic::AtomicI64>,
}

#[async_trait]
impl SessionStore for Skewed {
    async fn reauthenticate(
        &self,
        id: SessionId,
        aal: sesame_core::session::Aal,
    ) -> Result<Option<Session>, StoreError> {
        self.inner.reauthenticate(id, aal).await
    }
    async fn create_session(&self, new: NewSession) -> Result<Created, StoreError> {
        self.inner.create_session(new).await
    }
    async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        self.inner.session(id).await
    }
    async fn rotate(
        &self,
        id: SessionId,
        presented: &Presented,
        policy: &RotationPolicy,
    ) -> Result<RotationOutcome, StoreError> {
        self.inner.rotate(id, presented, policy).await
    }
    async fn revoke(
        &self,
        id: SessionId,
        reason: RevokeReason,
    ) -> Result<Option<Session>, StoreError> {
        self.inner.revoke(id, reason).await
    }
    async fn revoke_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: RevokeReason,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.inner.revoke_user(user, keep, reason).await
    }
    async fn revoke_all(&self, reason: RevokeReason) -> Result<u64, StoreError> {
        self.inner.revoke_all(reason).await
    }
    async fn list_sessions(
        &self,
        user: UserId,
        revoked_since: UnixTime,
    ) -> Result<Vec<Session>, StoreError> {
        self.inner.list_sessions(user, revoked_since).await
    }
    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.inner.revocations_after(after, limit).await
    }
    async fn now(&self) -> Result<UnixTime, StoreError> {
        Ok(self.inner.now().await? + self.by.load(std::sync::atomic::Ordering::SeqCst))
    }
    async fn set_user_claims(
        &self,
        user: UserId,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, StoreError> {
        self.inner.set_user_claims(user, claims).await
    }
    async fn purge_sessions(
        &self,
        ended_before: UnixTime,
    ) -> Result<sesame_core::store::Purged, StoreError> {
        self.inner.purge_sessions(ended_before).await
    }
    async fn count_live(&self) -> Result<u64, StoreError> {
        self.inner.count_live().await
    }
}
