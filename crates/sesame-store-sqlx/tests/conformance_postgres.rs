//! The store conformance suite on PostgreSQL: each test gets its own schema
//! (random name) in the database `SESAME_TEST_POSTGRES_URL` names, and the
//! store's pool works in it through `search_path`. Without the variable every
//! test reports SKIPPED (or fails under `SESAME_REQUIRE_BACKENDS=1`).
//!
//! After the shared suite, three PostgreSQL-specific checks: the production
//! clock (the server's), a lock wait past `statement_timeout`, and an
//! unreachable server; the last two must be `StoreError::Unavailable`.
#![cfg(feature = "postgres")]

use sesame_core::clock::ManualClock;
use sesame_core::ids::{Email, SessionId, UserId};
use sesame_core::rotation::{Channel, Presented, RotationPolicy};
use sesame_core::session::{Aal, RevokeReason, Transport};
use sesame_core::store::{
    AccountStore, Created, NewSession, NewUser, RotationOutcome, SessionStore, StoreError,
};
use sesame_store_sqlx::{PgStore, PgStoreOptions, StoreClock};
use sesame_store_tests::Harness;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Schemas of earlier runs older than this are dropped when a test starts
/// (the harness has no teardown hook; CI machines are fresh anyway).
const STALE_AFTER_SECS: u64 = 3600;

const URL_VAR: &str = "SESAME_TEST_POSTGRES_URL";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh schema and a store working in it: `(store, url, schema)`.
async fn fresh(
    clock: StoreClock,
    statement_timeout: Duration,
    migrate: bool,
) -> Result<(PgStore, String, String), String> {
    let url = std::env::var(URL_VAR).map_err(|_| format!("{URL_VAR} not set"))?;
    let started = unix_now();
    let n = u64::from_le_bytes(sesame_core::crypto::random::<8>());
    let schema = format!("sesame_t_{started}_{n:016x}");

    let mut conn = PgConnection::connect(&url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'sesame\\_t\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    for name in old {
        let at = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if at.saturating_add(STALE_AFTER_SECS) < started {
            // Best effort: another run may be dropping it too.
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                )))
                .await;
        }
    }
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .await
        .map_err(|e| e.to_string())?;
    conn.close().await.map_err(|e| e.to_string())?;

    let mut opts = PgStoreOptions::new(url.clone());
    opts.schema = Some(schema.clone());
    opts.max_connections = 8;
    opts.statement_timeout = statement_timeout;
    let store = if migrate {
        PgStore::open(&opts, clock).await
    } else {
        PgStore::connect(&opts, clock).await
    }
    .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
    Ok((store, url, schema))
}

async fn postgres(clock: ManualClock) -> Result<Harness, String> {
    let (store, _, _) = fresh(
        StoreClock::Fixed(Arc::new(clock.clone())),
        Duration::from_secs(5),
        true,
    )
    .await?;
    Ok(Harness {
        accounts: Arc::new(store.clone()),
        sessions: Arc::new(store),
        clock,
    })
}

sesame_store_tests::conformance_tests!(postgres);

async fn user_and_session(store: &PgStore) -> (UserId, SessionId) {
    let user = store
        .create_user(NewUser {
            id: UserId::new(),
            email: Email::parse("pg@example.com").unwrap(),
            password_hash: "x".into(),
            email_verified: false,
        })
        .await
        .unwrap();
    let id = SessionId::random();
    let created = store
        .create_session(NewSession {
            id,
            user_id: user.id,
            transport: Transport::Bearer,
            first_hash: [1; 32],
            ua_hash: [7; 32],
            key_version: 1,
            idle_ttl: Some(3600),
            max_age: 7200,
            aal: Aal::Aal1,
            ip: None,
            user_agent: None,
            claims: serde_json::Map::new(),
            cap: None,
            replaces: None,
        })
        .await
        .unwrap();
    assert!(matches!(created, Created::Session { .. }));
    (user.id, id)
}

/// Production mode: every time is the server's, within a few seconds of ours.
#[tokio::test]
async fn database_clock_is_the_servers() {
    let (store, _, _) = match fresh(StoreClock::Database, Duration::from_secs(5), true).await {
        Ok(s) => s,
        Err(why) => return sesame_store_tests::unavailable("database_clock_is_the_servers", &why),
    };
    let before = i64::try_from(unix_now()).unwrap();
    let now = store.now().await.unwrap();
    assert!((now - before).abs() <= 5, "server {now}, here {before}");
    assert!((store.ping().await.unwrap() - before).abs() <= 5);
    let (user, id) = user_and_session(&store).await;
    let s = store.session(id).await.unwrap().unwrap();
    assert!((s.created_at - before).abs() <= 5);
    let p = Presented {
        generation: 0,
        secret_hash: [1; 32],
        successor_hash: [2; 32],
        ua_hash: [7; 32],
        channel: Channel::Body,
    };
    let policy = RotationPolicy {
        grace: 30,
        late_retry: 60,
        grace_max_answers: 5,
        idle_ttl: Some(3600),
        reuse_revokes_user: false,
    };
    let RotationOutcome::Rotated(r) = store.rotate(id, &p, &policy).await.unwrap() else {
        panic!("rotate")
    };
    assert_eq!(r.generation, 1);
    assert!(matches!(
        store.rotate(id, &p, &policy).await.unwrap(),
        RotationOutcome::Grace(_)
    ));
    assert_eq!(store.list_sessions(user, 0).await.unwrap().len(), 1);
    let revoked = store
        .revoke(id, RevokeReason::Logout)
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some_and(|t| (t - before).abs() <= 5));
    store.close().await;
}

/// A statement stuck behind a row lock past `statement_timeout` is
/// "unavailable" (503), and the store works again once the lock is gone.
#[tokio::test]
async fn lock_wait_past_statement_timeout_is_unavailable() {
    let name = "lock_wait_past_statement_timeout_is_unavailable";
    let clock = ManualClock::new(sesame_store_tests::T0);
    let (store, url, schema) = match fresh(
        StoreClock::Fixed(Arc::new(clock)),
        Duration::from_millis(300),
        true,
    )
    .await
    {
        Ok(s) => s,
        Err(why) => return sesame_store_tests::unavailable(name, &why),
    };
    let (_, id) = user_and_session(&store).await;
    let opts = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", &schema)]);
    let mut blocker = PgConnection::connect_with(&opts).await.unwrap();
    blocker.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT id FROM sessions WHERE id = $1 FOR UPDATE")
        .bind(id.as_bytes().as_slice())
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = store.revoke(id, RevokeReason::Logout).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    blocker.execute("ROLLBACK").await.unwrap();
    let s = store
        .revoke(id, RevokeReason::Logout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.revoke_reason, Some(RevokeReason::Logout));
    store.close().await;
}

/// No server: `Unavailable`, not a panic or `Other`.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let mut opts = PgStoreOptions::new("postgres://postgres@127.0.0.1:1/none");
    opts.acquire_timeout = Duration::from_millis(500);
    let r = PgStore::connect(&opts, StoreClock::Database).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}

/// `migrate --check`: everything pending on an empty database, nothing after.
#[tokio::test]
async fn pending_migrations_then_none() {
    let (store, _, _) = match fresh(StoreClock::Database, Duration::from_secs(5), false).await {
        Ok(s) => s,
        Err(why) => return sesame_store_tests::unavailable("pending_migrations_then_none", &why),
    };
    assert_eq!(
        store.pending_migrations().await.unwrap(),
        vec![
            "1 initial".to_string(),
            "2 external users one time tokens".to_string(),
            "3 second factor".to_string()
        ]
    );
    store.migrate().await.unwrap();
    assert!(store.pending_migrations().await.unwrap().is_empty());
    store.migrate().await.unwrap();
    store.close().await;
}
