//! What the conformance suite cannot see: key TTLs, pruning of revocation
//! rows, Redis's own clock, the persistence check, and how the store
//! behaves when Redis is unreachable, stalls or drops connections.
//!
//! Tests that need a server use `SESAME_TEST_REDIS_URL`; without it they
//! skip (or fail under `SESAME_REQUIRE_BACKENDS=1`).

use sesame_core::clock::ManualClock;
use sesame_core::ids::{SessionId, UserId};
use sesame_core::rotation::{Channel, Presented, RotationPolicy};
use sesame_core::session::{Aal, RevokeReason, Transport};
use sesame_core::store::{Created, NewSession, RotationOutcome, SessionStore, StoreError};
use sesame_store_redis::{Persistence, RedisClock, RedisSessionStore, RedisStoreOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T0: i64 = 1_800_000_000;

fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("SESAME_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        sesame_store_tests::unavailable(test, "SESAME_TEST_REDIS_URL not set");
    }
    url
}

fn prefix() -> String {
    let n = u64::from_le_bytes(sesame_core::crypto::random::<8>());
    format!("sesame-test-{n:016x}:")
}

/// Deletes a test's keys when it ends, passing or failing.
struct DropKeys(String, String);

impl Drop for DropKeys {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.0.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.1))
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

fn new_session(user: UserId, first: u8) -> NewSession {
    NewSession {
        id: SessionId::random(),
        user_id: user,
        transport: Transport::Hybrid,
        first_hash: [first; 32],
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
    }
}

async fn create(store: &RedisSessionStore, new: NewSession) -> sesame_core::Session {
    match store.create_session(new).await.unwrap() {
        Created::Session { session, .. } => session,
        Created::LimitReached => panic!("limit"),
    }
}

async fn ttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query_async(conn).await.unwrap()
}

/// Production mode: every time comes from Redis `TIME`; keys carry TTLs
/// that follow the session's end.
#[tokio::test]
async fn server_clock_and_key_ttls() {
    let Some(url) = redis_url("server_clock_and_key_ttls") else {
        return;
    };
    let p = prefix();
    let _cleanup = DropKeys(url.clone(), p.clone());
    let store = RedisSessionStore::connect(
        &url,
        RedisStoreOptions {
            key_prefix: p.clone(),
            revoked_visibility: 100,
            ..RedisStoreOptions::default()
        },
    )
    .await
    .unwrap();
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (redis_now, _): (i64, i64) = redis::cmd("TIME").query_async(&mut raw).await.unwrap();
    let now = store.now().await.unwrap();
    assert!((now - redis_now).abs() <= 1, "now() is Redis TIME");

    let user = UserId::new();
    let s = create(&store, new_session(user, 10)).await;
    assert!(
        (s.created_at - redis_now).abs() <= 1,
        "created at Redis time"
    );
    assert_eq!(s.idle_expires_at, Some(s.created_at + 3600));
    // Live: until idle expiry + max(visibility, margin) + 60.
    let skey = format!("{p}s:{}", s.id);
    let ukey = format!("{p}u:{user}");
    let keep = 660 + 60;
    let t = ttl(&mut raw, &skey).await;
    assert!(
        (3600 + keep - 2..=3600 + keep).contains(&t),
        "session TTL {t}"
    );
    assert!(
        ttl(&mut raw, &ukey).await >= t - 1,
        "user index outlives it"
    );

    let policy = RotationPolicy {
        grace: 30,
        late_retry: 60,
        grace_max_answers: 5,
        idle_ttl: Some(3600),
        reuse_revokes_user: false,
    };
    let p0 = Presented {
        generation: 0,
        secret_hash: [10; 32],
        successor_hash: [11; 32],
        ua_hash: [7; 32],
        channel: Channel::Cookie,
    };
    let RotationOutcome::Rotated(r) = store.rotate(s.id, &p0, &policy).await.unwrap() else {
        panic!("rotate");
    };
    assert_eq!(r.generation, 1);
    assert!(r.last_seen_at >= s.last_seen_at);

    // Revoked: kept for the visibility period from the revocation.
    store.revoke(s.id, RevokeReason::Logout).await.unwrap();
    let t = ttl(&mut raw, &skey).await;
    assert!((keep - 2..=keep).contains(&t), "revoked session TTL {t}");
    let active: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{p}active"))
        .arg(s.id.to_string())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(active, None, "revoked sessions leave the active index");
    // The feed's counters and rows never expire.
    assert_eq!(ttl(&mut raw, &format!("{p}revocations")).await, -1);
    assert_eq!(ttl(&mut raw, &format!("{p}revseq")).await, -1);
}

/// Rows past `not_after` by more than the margin are pruned when the next
/// row is written; sequence numbers keep increasing, from Redis's clock.
#[tokio::test]
async fn revocation_rows_are_pruned_and_seq_survives_a_lost_counter() {
    let Some(url) = redis_url("revocation_rows_are_pruned_and_seq_survives_a_lost_counter") else {
        return;
    };
    let p = prefix();
    let _cleanup = DropKeys(url.clone(), p.clone());
    let clock = ManualClock::new(T0);
    let store = RedisSessionStore::connect(
        &url,
        RedisStoreOptions {
            key_prefix: p.clone(),
            clock: RedisClock::Fixed(Arc::new(clock.clone())),
            revocation_margin: 100,
            ..RedisStoreOptions::default()
        },
    )
    .await
    .unwrap();
    let user = UserId::new();
    let a = create(&store, new_session(user, 10)).await;
    let b = create(&store, new_session(user, 20)).await;
    let c = create(&store, new_session(user, 30)).await;
    store.revoke(a.id, RevokeReason::Logout).await.unwrap();
    let rows = store.revocations_after(0, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].not_after, T0 + 100);
    assert!(
        rows[0].seq > 1_700_000_000_000_000,
        "seeded from TIME in µs: {}",
        rows[0].seq
    );

    clock.advance(199); // row a: prunable from not_after + margin = T0 + 200
    store.revoke(b.id, RevokeReason::Logout).await.unwrap();
    assert_eq!(store.revocations_after(0, 10).await.unwrap().len(), 2);
    clock.advance(2);
    // Losing the counter (a volatile Redis restarting) must not reuse numbers.
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{p}revseq"))
        .query_async(&mut raw)
        .await
        .unwrap();
    store.revoke(c.id, RevokeReason::Logout).await.unwrap();
    let rows = store.revocations_after(0, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.session_id).collect::<Vec<_>>(),
        vec![b.id, c.id],
        "a's row was pruned"
    );
    assert!(rows[0].seq < rows[1].seq);
    assert!(
        store
            .revocations_after(rows[1].seq, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.revocations_after(0, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn persistence_is_reported() {
    let Some(url) = redis_url("persistence_is_reported") else {
        return;
    };
    let store = RedisSessionStore::connect(
        &url,
        RedisStoreOptions {
            key_prefix: prefix(),
            ..RedisStoreOptions::default()
        },
    )
    .await
    .unwrap();
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let cfg: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut raw)
        .await;
    let got = store.check_persistence().await.unwrap();
    match cfg.ok().as_deref() {
        Some([_, v]) if v == "yes" => assert_eq!(got, Persistence::Aof),
        Some([_, _]) => assert_eq!(got, Persistence::Volatile),
        _ => assert_ne!(got, Persistence::Aof),
    }
}

fn fast() -> RedisStoreOptions {
    RedisStoreOptions {
        key_prefix: prefix(),
        clock: RedisClock::Fixed(Arc::new(ManualClock::new(T0))),
        response_timeout: Duration::from_millis(300),
        connection_timeout: Duration::from_millis(300),
        ..RedisStoreOptions::default()
    }
}

/// Nothing listening, or a listener that never answers: `Unavailable`,
/// quickly. Needs no Redis.
#[tokio::test]
async fn unreachable_or_silent_redis_is_unavailable() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let start = Instant::now();
    let err = RedisSessionStore::connect(&format!("redis://127.0.0.1:{port}/"), fast())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));

    // Accepts connections, never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let start = Instant::now();
    let err = RedisSessionStore::connect(&format!("redis://127.0.0.1:{port}/"), fast())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    hold.abort();
}

/// A TCP proxy in front of Redis that can stall (hold every byte, like a
/// blackholed network) or cut every connection (like a Redis restart).
struct Proxy {
    port: u16,
    stalled: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

async fn proxy(upstream: String) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(tokio::sync::Notify::new());
    let (s, c) = (stalled.clone(), cut.clone());
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            let (s, c) = (s.clone(), c.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = pump(ir, ow, s.clone()) => {}
                    _ = pump(or, iw, s) => {}
                    _ = c.notified() => {}
                }
            });
        }
    });
    Proxy { port, stalled, cut }
}

/// A stalled Redis costs each call at most the operation timeout and
/// answers `Unavailable`; when it comes back, or after every connection was
/// cut, the store recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_and_cut_connections_then_recover() {
    let Some(url) = redis_url("stall_and_cut_connections_then_recover") else {
        return;
    };
    use redis::IntoConnectionInfo;
    let info = url.as_str().into_connection_info().unwrap();
    let redis::ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
        eprintln!("SKIPPED stall_and_cut_connections_then_recover: not a plain TCP URL");
        return;
    };
    let proxy = proxy(format!("{host}:{port}")).await;
    let options = fast();
    let p = options.key_prefix.clone();
    let _cleanup = DropKeys(url.clone(), p);
    let store = RedisSessionStore::connect(&format!("redis://127.0.0.1:{}/", proxy.port), options)
        .await
        .unwrap();
    let s = create(&store, new_session(UserId::new(), 10)).await;

    proxy.stalled.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let err = store.session(s.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let err = store.revoke(s.id, RevokeReason::Logout).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    proxy.stalled.store(false, Ordering::SeqCst);
    assert_eq!(
        eventually(&store, s.id).await.revoke_reason,
        Some(RevokeReason::Logout),
        "the revoke sent during the stall was applied once it arrived: \
         a timed-out call may still have happened, it is never half-done"
    );

    proxy.cut.notify_waiters();
    let back = eventually(&store, s.id).await;
    assert_eq!(back.id, s.id);
}

/// Reads a session until the store answers again (at most ~5 s).
async fn eventually(store: &RedisSessionStore, id: SessionId) -> sesame_core::Session {
    for _ in 0..50 {
        if let Ok(Some(s)) = store.session(id).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store did not recover");
}
