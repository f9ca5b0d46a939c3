//! The store conformance suite: one set of tests, written once against the
//! [`AccountStore`] and [`SessionStore`] traits, that every backend runs
//! against a real server (the tower-sessions pattern).
//!
//! A backend crate instantiates it in an integration test with
//! [`conformance_tests!`], giving an async factory that returns a fresh,
//! isolated store (its own file, schema, database or key prefix) driven by
//! the [`ManualClock`] it is handed — or `None`, with a message, when the
//! backend is not configured on this machine (then each test says it was
//! skipped, by name, unless `SESAME_REQUIRE_BACKENDS=1`, which makes a
//! missing backend fail).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod proxy;

use sesame_core::ids::{Email, SessionId, UserId};
use sesame_core::keys::{KeyState, SigningAlg, initial_records, rotate_records};
use sesame_core::rotation::{Channel, Presented, ReuseClass, RotationPolicy};
use sesame_core::session::{Aal, RevokeReason, Transport};
use sesame_core::store::*;
use std::collections::HashSet;
use std::sync::Arc;

/// Start time of every test clock.
pub const T0: i64 = 1_800_000_000;

/// A fresh store under test.
#[derive(Debug, Clone)]
pub struct Harness {
    /// Account side.
    pub accounts: Arc<dyn AccountStore>,
    /// Session side.
    pub sessions: Arc<dyn SessionStore>,
    /// The store's clock.
    pub clock: ManualClock,
}

/// Whether a missing backend must fail rather than skip.
pub fn backends_required() -> bool {
    std::env::var("SESAME_REQUIRE_BACKENDS").is_ok_and(|v| v == "1" || v == "true")
}

/// Handles a factory that found no backend: skip (saying so) or fail.
pub fn unavailable(test: &str, why: &str) {
    if backends_required() {
        panic!("{test}: backend required (SESAME_REQUIRE_BACKENDS=1) but unavailable: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// Instantiates every conformance test for a backend.
///
/// `$factory` is an async fn `(ManualClock) -> Result<Harness, String>`
/// (`Err` = backend unavailable, with the reason).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@each $factory;
            users_are_unique_case_insensitively,
            users_update_and_list,
            key_ring_round_trips_atomically,
            audit_appends,
            session_create_and_read,
            rotation_current_grace_stale_reuse,
            rotation_grandparent_and_rollback,
            rotation_transport_and_expiry,
            rotation_race_commits_one_generation,
            grace_answers_are_capped,
            reuse_policy_user_revokes_every_session,
            revoke_one_user_and_all,
            session_cap_evicts_or_refuses,
            replaces_earlier_session,
            list_sessions_shows_live_and_recently_revoked,
            revocation_rows_have_increasing_sequence_numbers,
            external_users_are_shadow_rows,
            one_time_tokens_redeem_once,
            user_claims_reach_live_sessions,
            audit_reads_with_filters_and_purges,
            purge_removes_ended_sessions_and_old_revocations,
            email_change_and_verification,
            totp_factor_lifecycle_and_single_use,
            reauthenticate_touches_live_sessions_only,
        );
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = $crate::ManualClock::new($crate::T0);
                match $factory(clock).await {
                    Ok(h) => $crate::$name(h).await,
                    Err(why) => $crate::unavailable(stringify!($name), &why),
                }
            }
        )*
    };
}

pub use sesame_core::clock::ManualClock;

const POLICY: RotationPolicy = RotationPolicy {
    grace: 30,
    late_retry: 60,
    grace_max_answers: 5,
    idle_ttl: Some(3600),
    reuse_revokes_user: false,
};

async fn user(h: &Harness, email: &str) -> User {
    h.accounts
        .create_user(NewUser {
            id: UserId::new(),
            email: Email::parse(email).unwrap(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            email_verified: false,
        })
        .await
        .unwrap()
}

fn new_session(user: UserId, transport: Transport, first: u8) -> NewSession {
    NewSession {
        id: SessionId::random(),
        user_id: user,
        transport,
        first_hash: [first; 32],
        ua_hash: [7; 32],
        key_version: 1,
        idle_ttl: Some(3600),
        max_age: 7200,
        aal: Aal::Aal1,
        ip: Some("192.0.2.1".into()),
        user_agent: Some("test agent".into()),
        claims: serde_json::Map::from_iter([("role".to_string(), serde_json::json!("admin"))]),
        cap: None,
        replaces: None,
    }
}

async fn session(h: &Harness, new: NewSession) -> sesame_core::Session {
    match h.sessions.create_session(new).await.unwrap() {
        Created::Session { session, .. } => session,
        Created::LimitReached => panic!("unexpected limit"),
    }
}

/// Presenting generation `generation` whose secret hashes to `[s; 32]` and
/// whose successor hashes to `[s + 1; 32]` (the tests' chain: 10, 11, 12…).
fn presented(generation: u32, s: u8) -> Presented {
    Presented {
        generation,
        secret_hash: [s; 32],
        successor_hash: [s + 1; 32],
        ua_hash: [7; 32],
        channel: Channel::Cookie,
    }
}

/// Users: creation, lookup by email (case-insensitive) and id, conflicts.
pub async fn users_are_unique_case_insensitively(h: Harness) {
    let u = user(&h, "Ann@Example.com").await;
    assert_eq!(u.created_at, T0, "store time");
    let again = h
        .accounts
        .create_user(NewUser {
            id: UserId::new(),
            email: Email::parse("ann@EXAMPLE.com").unwrap(),
            password_hash: "x".into(),
            email_verified: false,
        })
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let by_email = h
        .accounts
        .user_by_email(&Email::parse("ANN@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email.user, u);
    assert!(by_email.password_hash.starts_with("$argon2id$"));
    assert_eq!(h.accounts.user_by_id(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(
        h.accounts
            .credential_by_id(u.id)
            .await
            .unwrap()
            .unwrap()
            .user,
        u
    );
    assert_eq!(h.accounts.user_by_id(UserId::new()).await.unwrap(), None);
    assert!(
        h.accounts
            .user_by_email(&Email::parse("nobody@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

/// Users: password hash, disabled flag, paging.
pub async fn users_update_and_list(h: Harness) {
    let a = user(&h, "a@example.com").await;
    h.clock.advance(1);
    let b = user(&h, "b@example.com").await;
    h.accounts
        .set_password_hash(a.id, "new-hash")
        .await
        .unwrap();
    assert_eq!(
        h.accounts
            .credential_by_id(a.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new-hash"
    );
    assert!(h.accounts.set_disabled(b.id, true).await.unwrap());
    assert!(h.accounts.user_by_id(b.id).await.unwrap().unwrap().disabled);
    assert!(!h.accounts.set_disabled(UserId::new(), true).await.unwrap());
    let all = h.accounts.list_users(10, 0).await.unwrap();
    assert_eq!(
        all.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(h.accounts.list_users(1, 1).await.unwrap()[0].id, b.id);
    assert!(h.accounts.ping().await.is_ok());
}

/// Key ring: save, load, replace atomically.
pub async fn key_ring_round_trips_atomically(h: Harness) {
    assert!(h.accounts.load_keys().await.unwrap().is_empty());
    let mk = [9u8; 32];
    let r0 = initial_records(SigningAlg::EdDSA, T0, &mk).unwrap();
    h.accounts.save_keys(&r0).await.unwrap();
    let mut back = h.accounts.load_keys().await.unwrap();
    back.sort_by(|a, b| a.kid.cmp(&b.kid));
    let mut want = r0.clone();
    want.sort_by(|a, b| a.kid.cmp(&b.kid));
    assert_eq!(back, want);
    let r1 = rotate_records(&r0, SigningAlg::EdDSA, T0 + 10, 700, false, &mk).unwrap();
    h.accounts.save_keys(&r1).await.unwrap();
    let back = h.accounts.load_keys().await.unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(
        back.iter().filter(|k| k.state == KeyState::Active).count(),
        1
    );
    assert!(
        back.iter()
            .any(|k| k.state == KeyState::Retired && k.retired_at == Some(T0 + 10))
    );
}

/// Audit rows append.
pub async fn audit_appends(h: Harness) {
    let u = user(&h, "audit@example.com").await;
    for kind in ["login_succeeded", "login_failed"] {
        h.accounts
            .audit(AuditEvent {
                kind,
                user_id: Some(u.id),
                session_id: Some(SessionId::random()),
                ip: Some("192.0.2.9".into()),
                detail: serde_json::json!({ "k": "v" }),
            })
            .await
            .unwrap();
    }
    h.accounts
        .audit(AuditEvent {
            kind: "x",
            user_id: None,
            session_id: None,
            ip: None,
            detail: serde_json::json!({}),
        })
        .await
        .unwrap();
}

/// Sessions: creation at store time, every field read back.
pub async fn session_create_and_read(h: Harness) {
    let u = user(&h, "s@example.com").await;
    let new = new_session(u.id, Transport::Bearer, 10);
    let s = session(&h, new.clone()).await;
    assert_eq!((s.created_at, s.last_seen_at, s.auth_time), (T0, T0, T0));
    assert_eq!(
        (s.idle_expires_at, s.expires_at),
        (Some(T0 + 3600), T0 + 7200)
    );
    let back = h.sessions.session(new.id).await.unwrap().unwrap();
    assert_eq!(back, s);
    assert_eq!(back.transport, Transport::Bearer);
    assert_eq!(back.claims["role"], "admin");
    assert_eq!(back.user_agent.as_deref(), Some("test agent"));
    assert_eq!(back.generation, 0);
    assert!(back.is_live(T0));
    assert_eq!(h.sessions.session(SessionId::random()).await.unwrap(), None);
    assert_eq!(h.sessions.now().await.unwrap(), T0);
}

/// The main path of §2: rotate, grace, stale, reuse.
pub async fn rotation_current_grace_stale_reuse(h: Harness) {
    let u = user(&h, "r@example.com").await;
    let s = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    h.clock.advance(5);
    let RotationOutcome::Rotated(r) = h
        .sessions
        .rotate(s.id, &presented(0, 10), &POLICY)
        .await
        .unwrap()
    else {
        panic!("rotate")
    };
    assert_eq!(
        (r.generation, r.last_seen_at, r.idle_expires_at),
        (1, T0 + 5, Some(T0 + 5 + 3600))
    );
    h.clock.advance(10);
    let RotationOutcome::Grace(g) = h
        .sessions
        .rotate(s.id, &presented(0, 10), &POLICY)
        .await
        .unwrap()
    else {
        panic!("grace")
    };
    assert_eq!(g.generation, 1, "grace commits nothing");
    assert_eq!(
        g.idle_expires_at,
        Some(T0 + 5 + 3600),
        "grace leaves idle expiry alone"
    );
    h.clock.advance(20); // 30 s after the rotation
    assert!(matches!(
        h.sessions
            .rotate(s.id, &presented(0, 10), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::Stale
    ));
    assert!(
        h.sessions
            .session(s.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    h.clock.advance(30); // 60 s
    match h
        .sessions
        .rotate(s.id, &presented(0, 10), &POLICY)
        .await
        .unwrap()
    {
        RotationOutcome::Reused { class, revoked, .. } => {
            assert_eq!(class, ReuseClass::LikelySlowClient);
            assert_eq!(revoked, vec![s.id]);
        }
        other => panic!("{other:?}"),
    }
    let after = h.sessions.session(s.id).await.unwrap().unwrap();
    assert_eq!(
        (after.revoked_at, after.revoke_reason),
        (Some(T0 + 65), Some(RevokeReason::ReuseDetected))
    );
    // The successor is dead too, with the reason.
    assert!(matches!(
        h.sessions
            .rotate(s.id, &presented(1, 11), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::Revoked(RevokeReason::ReuseDetected)
    ));
}

/// Grandparents are reuse at once; a token ahead of the store is rollback.
pub async fn rotation_grandparent_and_rollback(h: Harness) {
    let u = user(&h, "g@example.com").await;
    let s = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    assert!(matches!(
        h.sessions
            .rotate(s.id, &presented(0, 10), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::Rotated(_)
    ));
    assert!(matches!(
        h.sessions
            .rotate(s.id, &presented(1, 11), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::Rotated(_)
    ));
    assert!(matches!(
        h.sessions
            .rotate(s.id, &presented(5, 15), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::RollbackSuspected
    ));
    assert!(matches!(
        h.sessions
            .rotate(s.id, &presented(2, 99), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::RollbackSuspected
    ));
    assert!(
        h.sessions
            .session(s.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none(),
        "rollback revokes nothing"
    );
    match h
        .sessions
        .rotate(s.id, &presented(0, 10), &POLICY)
        .await
        .unwrap()
    {
        RotationOutcome::Reused { class, .. } => assert_eq!(class, ReuseClass::LikelyTheft),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.sessions
            .rotate(SessionId::random(), &presented(0, 10), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::NotFound
    ));
}

/// Transport mismatch changes nothing; idle and absolute expiry use store time.
pub async fn rotation_transport_and_expiry(h: Harness) {
    let u = user(&h, "t@example.com").await;
    let s = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    let body = Presented {
        channel: Channel::Body,
        ..presented(0, 10)
    };
    assert!(matches!(
        h.sessions.rotate(s.id, &body, &POLICY).await.unwrap(),
        RotationOutcome::TransportMismatch
    ));
    assert_eq!(
        h.sessions.session(s.id).await.unwrap().unwrap().generation,
        0
    );
    h.clock.advance(3600);
    assert!(matches!(
        h.sessions
            .rotate(s.id, &presented(0, 10), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::Expired
    ));
    let s2 = session(&h, new_session(u.id, Transport::Bearer, 20)).await;
    let body = Presented {
        channel: Channel::Body,
        ..presented(0, 20)
    };
    h.clock.advance(3000);
    assert!(matches!(
        h.sessions.rotate(s2.id, &body, &POLICY).await.unwrap(),
        RotationOutcome::Rotated(_)
    ));
    h.clock.advance(3000);
    let body = Presented {
        channel: Channel::Body,
        ..presented(1, 21)
    };
    assert!(matches!(
        h.sessions.rotate(s2.id, &body, &POLICY).await.unwrap(),
        RotationOutcome::Rotated(_)
    ));
    h.clock.advance(1200); // past the 2 h absolute lifetime, inside idle
    let body = Presented {
        channel: Channel::Body,
        ..presented(2, 22)
    };
    assert!(matches!(
        h.sessions.rotate(s2.id, &body, &POLICY).await.unwrap(),
        RotationOutcome::Expired
    ));
}

/// 50 concurrent rotations of one token: exactly one generation committed,
/// every other racer answered as grace.
pub async fn rotation_race_commits_one_generation(h: Harness) {
    let u = user(&h, "race@example.com").await;
    let s = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    let policy = RotationPolicy {
        grace_max_answers: 100,
        ..POLICY
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (store, b) = (h.sessions.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            store
                .rotate(s.id, &presented(0, 10), &policy)
                .await
                .unwrap()
        }));
    }
    let (mut rotated, mut grace) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            RotationOutcome::Rotated(s) => {
                rotated += 1;
                assert_eq!(s.generation, 1);
            }
            RotationOutcome::Grace(s) => {
                grace += 1;
                assert_eq!(s.generation, 1);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((rotated, grace), (1, 49));
    let after = h.sessions.session(s.id).await.unwrap().unwrap();
    assert_eq!(after.generation, 1);
    assert!(after.revoked_at.is_none());
}

/// The grace answer cap, counted atomically.
pub async fn grace_answers_are_capped(h: Harness) {
    let u = user(&h, "cap@example.com").await;
    let s = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    assert!(matches!(
        h.sessions
            .rotate(s.id, &presented(0, 10), &POLICY)
            .await
            .unwrap(),
        RotationOutcome::Rotated(_)
    ));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = h.sessions.clone();
        tasks.push(tokio::spawn(async move {
            store
                .rotate(s.id, &presented(0, 10), &POLICY)
                .await
                .unwrap()
        }));
    }
    let mut grace = 0;
    let mut reused = 0;
    for t in tasks {
        match t.await.unwrap() {
            RotationOutcome::Grace(_) => grace += 1,
            RotationOutcome::Reused { .. } => reused += 1,
            RotationOutcome::Revoked(RevokeReason::ReuseDetected) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(grace, 5, "exactly grace_max_answers grace answers");
    assert_eq!(reused, 1, "one reuse event");
}

/// `reuse_policy = "user"` ends every session of the user.
pub async fn reuse_policy_user_revokes_every_session(h: Harness) {
    let u = user(&h, "all@example.com").await;
    let other = user(&h, "other@example.com").await;
    let a = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    let b = session(&h, new_session(u.id, Transport::Hybrid, 20)).await;
    let c = session(&h, new_session(other.id, Transport::Hybrid, 30)).await;
    let policy = RotationPolicy {
        reuse_revokes_user: true,
        ..POLICY
    };
    h.sessions
        .rotate(a.id, &presented(0, 10), &policy)
        .await
        .unwrap();
    h.sessions
        .rotate(a.id, &presented(1, 11), &policy)
        .await
        .unwrap();
    match h
        .sessions
        .rotate(a.id, &presented(0, 10), &policy)
        .await
        .unwrap()
    {
        RotationOutcome::Reused { revoked, .. } => {
            assert_eq!(
                revoked.iter().collect::<HashSet<_>>(),
                [a.id, b.id].iter().collect()
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        h.sessions
            .session(b.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        h.sessions
            .session(c.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
}

/// Revoke one, all of a user's but one, and everything.
pub async fn revoke_one_user_and_all(h: Harness) {
    let u = user(&h, "rv@example.com").await;
    let other = user(&h, "rv2@example.com").await;
    let a = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    let b = session(&h, new_session(u.id, Transport::Hybrid, 20)).await;
    let c = session(&h, new_session(u.id, Transport::Hybrid, 30)).await;
    let d = session(&h, new_session(other.id, Transport::Hybrid, 40)).await;
    h.clock.advance(3);
    let r = h
        .sessions
        .revoke(a.id, RevokeReason::Logout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.revoked_at, r.revoke_reason),
        (Some(T0 + 3), Some(RevokeReason::Logout))
    );
    // Revoking again keeps the first reason.
    let again = h
        .sessions
        .revoke(a.id, RevokeReason::RevokedByAdmin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoke_reason, Some(RevokeReason::Logout));
    assert_eq!(
        h.sessions
            .revoke(SessionId::random(), RevokeReason::Logout)
            .await
            .unwrap(),
        None
    );
    let gone = h
        .sessions
        .revoke_user(u.id, Some(c.id), RevokeReason::PasswordChanged)
        .await
        .unwrap();
    assert_eq!(gone, vec![b.id]);
    assert!(
        h.sessions
            .session(c.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert_eq!(
        h.sessions.revoke_all(RevokeReason::Restored).await.unwrap(),
        2
    );
    for s in [c.id, d.id] {
        assert_eq!(
            h.sessions.session(s).await.unwrap().unwrap().revoke_reason,
            Some(RevokeReason::Restored)
        );
    }
}

/// The session cap, enforced atomically with the insert.
pub async fn session_cap_evicts_or_refuses(h: Harness) {
    let u = user(&h, "cap2@example.com").await;
    let cap = SessionCap {
        max: 2,
        evict_oldest: true,
    };
    let mut ids = Vec::new();
    for i in 0..2u8 {
        let mut n = new_session(u.id, Transport::Hybrid, 10 + i * 10);
        n.cap = Some(cap);
        ids.push(session(&h, n).await.id);
        h.clock.advance(1);
    }
    // Make the first the most recently used.
    h.sessions
        .rotate(ids[0], &presented(0, 10), &POLICY)
        .await
        .unwrap();
    let mut n = new_session(u.id, Transport::Hybrid, 50);
    n.cap = Some(cap);
    match h.sessions.create_session(n).await.unwrap() {
        Created::Session { revoked, .. } => assert_eq!(revoked, vec![ids[1]]),
        Created::LimitReached => panic!("evict_oldest evicts"),
    }
    assert_eq!(
        h.sessions
            .session(ids[1])
            .await
            .unwrap()
            .unwrap()
            .revoke_reason,
        Some(RevokeReason::Evicted)
    );
    let mut n = new_session(u.id, Transport::Hybrid, 60);
    n.cap = Some(SessionCap {
        max: 2,
        evict_oldest: false,
    });
    let before = h
        .sessions
        .list_sessions(u.id, T0 + 100)
        .await
        .unwrap()
        .len();
    assert!(matches!(
        h.sessions.create_session(n.clone()).await.unwrap(),
        Created::LimitReached
    ));
    assert_eq!(
        h.sessions.session(n.id).await.unwrap(),
        None,
        "refused: nothing written"
    );
    assert_eq!(
        h.sessions
            .list_sessions(u.id, T0 + 100)
            .await
            .unwrap()
            .len(),
        before
    );

    // Concurrent logins under a cap of 3 end with exactly 3 live sessions.
    let v = user(&h, "cap3@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let store = h.sessions.clone();
        let mut n = new_session(v.id, Transport::Hybrid, 100 + i);
        n.cap = Some(SessionCap {
            max: 3,
            evict_oldest: true,
        });
        tasks.push(tokio::spawn(async move {
            store.create_session(n).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let live = h.sessions.list_sessions(v.id, i64::MAX).await.unwrap();
    assert_eq!(live.iter().filter(|s| s.revoked_at.is_none()).count(), 3);
}

/// A new login on the same browser ends the earlier session (`replaced`).
pub async fn replaces_earlier_session(h: Harness) {
    let u = user(&h, "rep@example.com").await;
    let old = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    let mut n = new_session(u.id, Transport::Hybrid, 20);
    n.replaces = Some(old.id);
    match h.sessions.create_session(n).await.unwrap() {
        Created::Session { revoked, .. } => assert_eq!(revoked, vec![old.id]),
        Created::LimitReached => panic!(),
    }
    assert_eq!(
        h.sessions
            .session(old.id)
            .await
            .unwrap()
            .unwrap()
            .revoke_reason,
        Some(RevokeReason::Replaced)
    );
}

/// Listing: live sessions, most recently used first, then recently revoked.
pub async fn list_sessions_shows_live_and_recently_revoked(h: Harness) {
    let u = user(&h, "ls@example.com").await;
    let a = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    h.clock.advance(1);
    let b = session(&h, new_session(u.id, Transport::Hybrid, 20)).await;
    h.clock.advance(1);
    let c = session(&h, new_session(u.id, Transport::Hybrid, 30)).await;
    h.sessions
        .revoke(c.id, RevokeReason::RevokedByUser)
        .await
        .unwrap();
    h.clock.advance(1);
    h.sessions
        .rotate(a.id, &presented(0, 10), &POLICY)
        .await
        .unwrap();
    let list = h.sessions.list_sessions(u.id, T0).await.unwrap();
    assert_eq!(
        list.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![a.id, b.id, c.id]
    );
    let later = h.sessions.list_sessions(u.id, T0 + 10).await.unwrap();
    assert_eq!(
        later.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![a.id, b.id],
        "old revocations drop out"
    );
    let other = user(&h, "ls2@example.com").await;
    assert!(
        h.sessions
            .list_sessions(other.id, T0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Revocation rows: one per revocation, sequence numbers strictly
/// increasing, `not_after` in the future, paging with `after`.
pub async fn revocation_rows_have_increasing_sequence_numbers(h: Harness) {
    let u = user(&h, "seq@example.com").await;
    let start = h
        .sessions
        .revocations_after(0, 1000)
        .await
        .unwrap()
        .last()
        .map_or(0, |r| r.seq);
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.push(
            session(&h, new_session(u.id, Transport::Hybrid, 10 + 10 * i))
                .await
                .id,
        );
    }
    h.sessions
        .revoke(ids[0], RevokeReason::Logout)
        .await
        .unwrap();
    h.sessions
        .revoke(ids[0], RevokeReason::Logout)
        .await
        .unwrap(); // no second row
    h.sessions
        .revoke_user(u.id, Some(ids[4]), RevokeReason::PasswordChanged)
        .await
        .unwrap();
    let rows = h.sessions.revocations_after(start, 1000).await.unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(rows[0].session_id, ids[0]);
    assert_eq!(rows[0].reason, RevokeReason::Logout);
    assert!(rows.iter().all(|r| r.not_after > T0));
    let page = h.sessions.revocations_after(rows[1].seq, 2).await.unwrap();
    assert_eq!(page, rows[2..4].to_vec());
}

/// Shadow users of external ids: created once, never found by email (not
/// even an address that spells the shadow key), deletable.
pub async fn external_users_are_shadow_rows(h: Harness) {
    let x = ExternalId::parse("auth0|1234@example.com").unwrap();
    let first = h.accounts.external_user(&x, UserId::new()).await.unwrap();
    assert_eq!(first.external_id(), Some(&x));
    assert_eq!(first.email(), None);
    // Asking again returns the same user, whatever id is offered.
    let again = h.accounts.external_user(&x, UserId::new()).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(
        h.accounts.user_by_id(first.id).await.unwrap(),
        Some(first.clone())
    );
    // A local account whose address looks like the shadow key is another user.
    let local = user(&h, "external:auth0|1234@example.com").await;
    assert_ne!(local.id, first.id);
    assert!(
        h.accounts
            .user_by_email(&Email::parse("auth0|1234@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(ExternalId::parse("").is_none());
    assert!(ExternalId::parse("a\nb").is_none());
    assert!(ExternalId::parse(&"x".repeat(201)).is_none());
    // Deleting the user deletes it (and only it); its audit rows stay,
    // without the client IP.
    h.accounts
        .audit(AuditEvent {
            kind: "login_succeeded",
            user_id: Some(first.id),
            session_id: None,
            ip: Some("203.0.113.9".into()),
            detail: serde_json::json!({}),
        })
        .await
        .unwrap();
    assert!(h.accounts.delete_user(first.id).await.unwrap());
    let rows = h
        .accounts
        .read_audit(&AuditFilter {
            user: Some(first.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "audit rows are kept");
    assert_eq!(rows[0].ip, None, "and pseudonymised");
    assert!(!h.accounts.delete_user(first.id).await.unwrap());
    assert_eq!(h.accounts.user_by_id(first.id).await.unwrap(), None);
    assert!(h.accounts.user_by_id(local.id).await.unwrap().is_some());
}

/// One-time tokens: redeemed once, never after expiry (store time), only for
/// their kind, and concurrent redeemers get it exactly once.
pub async fn one_time_tokens_redeem_once(h: Harness) {
    let u = user(&h, "ott@example.com").await;
    let token = |b: u8, expires_at| OneTimeToken {
        kind: "handoff",
        hash: [b; 32],
        user_id: u.id,
        payload: serde_json::json!({"claims": {"role": "x"}}),
        expires_at,
    };
    h.accounts.put_one_time(token(1, T0 + 60)).await.unwrap();
    assert_eq!(
        h.accounts.take_one_time("verify", &[1; 32]).await.unwrap(),
        None
    );
    let got = h.accounts.take_one_time("handoff", &[1; 32]).await.unwrap();
    assert_eq!(got, Some(token(1, T0 + 60)));
    assert_eq!(
        h.accounts.take_one_time("handoff", &[1; 32]).await.unwrap(),
        None
    );

    h.accounts.put_one_time(token(2, T0 + 60)).await.unwrap();
    h.clock.advance(60);
    assert_eq!(
        h.accounts.take_one_time("handoff", &[2; 32]).await.unwrap(),
        None
    );

    h.accounts.put_one_time(token(3, T0 + 600)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let a = h.accounts.clone();
        tasks.push(tokio::spawn(async move {
            a.take_one_time("handoff", &[3; 32]).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().is_some() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

/// `set_user_claims` changes the claims of the user's live sessions only.
pub async fn user_claims_reach_live_sessions(h: Harness) {
    let u = user(&h, "claims@example.com").await;
    let other = user(&h, "claims-other@example.com").await;
    let a = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    let b = session(&h, new_session(u.id, Transport::Bearer, 20)).await;
    let c = session(&h, new_session(other.id, Transport::Hybrid, 30)).await;
    h.sessions.revoke(b.id, RevokeReason::Logout).await.unwrap();
    let claims = serde_json::Map::from_iter([("plan".to_string(), serde_json::json!("pro"))]);
    assert_eq!(h.sessions.set_user_claims(u.id, &claims).await.unwrap(), 1);
    let read = |id| {
        let s = h.sessions.clone();
        async move { s.session(id).await.unwrap().unwrap().claims }
    };
    assert_eq!(read(a.id).await, claims);
    assert_eq!(read(b.id).await, b.claims);
    assert_eq!(read(c.id).await, c.claims);
}

/// The audit log reads back with every filter, newest first, paged by id;
/// a purge removes old rows and expired one-time tokens only.
pub async fn audit_reads_with_filters_and_purges(h: Harness) {
    let a = user(&h, "audit-a@example.com").await;
    let b = user(&h, "audit-b@example.com").await;
    let sid = SessionId::random();
    let ev = |kind: &'static str, u: Option<UserId>, s: Option<SessionId>| AuditEvent {
        kind,
        user_id: u,
        session_id: s,
        ip: Some("192.0.2.1".into()),
        detail: serde_json::json!({ "n": 1 }),
    };
    h.accounts
        .audit(ev("login_failed", Some(a.id), None))
        .await
        .unwrap();
    h.clock.advance(10);
    h.accounts
        .audit(ev("login_succeeded", Some(a.id), Some(sid)))
        .await
        .unwrap();
    h.clock.advance(10);
    h.accounts
        .audit(ev("login_failed", Some(b.id), None))
        .await
        .unwrap();
    let read = |f: AuditFilter| {
        let acc = h.accounts.clone();
        async move { acc.read_audit(&f).await.unwrap() }
    };
    let all = read(AuditFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    let ours: Vec<_> = all
        .iter()
        .filter(|r| r.user_id == Some(a.id) || r.user_id == Some(b.id))
        .collect();
    assert_eq!(ours.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(ours[0].kind, "login_failed");
    assert_eq!(ours[0].user_id, Some(b.id));
    assert_eq!(ours[0].detail["n"], 1);
    assert_eq!(ours[0].ip.as_deref(), Some("192.0.2.1"));

    let by_user = read(AuditFilter {
        user: Some(a.id),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(by_user.len(), 2);
    let by_session = read(AuditFilter {
        session: Some(sid),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(by_session.len(), 1);
    assert_eq!(by_session[0].kind, "login_succeeded");
    let by_kind = read(AuditFilter {
        kind: Some("login_failed".into()),
        user: Some(a.id),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(by_kind.len(), 1);
    let window = read(AuditFilter {
        since: Some(T0 + 5),
        until: Some(T0 + 15),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].kind, "login_succeeded");
    let page = read(AuditFilter {
        user: Some(a.id),
        limit: 1,
        ..Default::default()
    })
    .await;
    let next = read(AuditFilter {
        user: Some(a.id),
        before_id: Some(page[0].id),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(
        (page[0].kind.as_str(), next[0].kind.as_str()),
        ("login_succeeded", "login_failed")
    );

    h.accounts
        .put_one_time(OneTimeToken {
            kind: "handoff",
            hash: [9; 32],
            user_id: a.id,
            payload: serde_json::json!({}),
            expires_at: T0 + 30,
        })
        .await
        .unwrap();
    h.accounts
        .put_one_time(OneTimeToken {
            kind: "handoff",
            hash: [8; 32],
            user_id: a.id,
            payload: serde_json::json!({}),
            expires_at: T0 + 3600,
        })
        .await
        .unwrap();
    h.clock.advance(20); // now T0 + 40
    let purged = h.accounts.purge_accounts(T0 + 15).await.unwrap();
    assert_eq!(purged.one_time_tokens, 1);
    assert!(purged.audit >= 2, "{purged:?}");
    let left = read(AuditFilter {
        user: Some(b.id),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(left.len(), 1, "rows after the cut stay");
    assert!(
        read(AuditFilter {
            user: Some(a.id),
            limit: 100,
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert!(
        h.accounts
            .take_one_time("handoff", &[8; 32])
            .await
            .unwrap()
            .is_some()
    );
}

/// A session purge removes sessions that ended before the cut (revoked or
/// expired) and revocation rows past `not_after`; live sessions stay.
pub async fn purge_removes_ended_sessions_and_old_revocations(h: Harness) {
    let u = user(&h, "purge@example.com").await;
    let live = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    let revoked = session(&h, new_session(u.id, Transport::Hybrid, 20)).await;
    h.sessions
        .revoke(revoked.id, RevokeReason::Logout)
        .await
        .unwrap();
    session(
        &h,
        NewSession {
            idle_ttl: Some(60),
            ..new_session(u.id, Transport::Hybrid, 30)
        },
    )
    .await;
    assert_eq!(
        h.sessions.count_live().await.unwrap(),
        2,
        "the long and the short one; not the revoked one"
    );
    let start = h.sessions.revocations_after(0, 10_000).await.unwrap().len();
    assert!(start >= 1);
    // Nothing has ended long enough ago yet.
    h.sessions.purge_sessions(T0 - 1).await.unwrap();
    assert!(h.sessions.session(revoked.id).await.unwrap().is_some());
    // Later: the revoked one goes, its revocation row too (past not_after);
    // the live one (idle ttl 3600, max age 7200) stays.
    h.clock.advance(1800);
    assert_eq!(
        h.sessions.count_live().await.unwrap(),
        1,
        "the short one expired"
    );
    let p = h.sessions.purge_sessions(T0 + 1).await.unwrap();
    let redis = p == Purged::default();
    if !redis {
        assert_eq!(p.sessions, 1, "{p:?}");
        assert!(p.revocations >= 1, "{p:?}");
        assert!(h.sessions.session(revoked.id).await.unwrap().is_none());
        assert!(h.sessions.revocations_after(0, 10_000).await.unwrap().len() < start);
    }
    assert!(h.sessions.session(live.id).await.unwrap().is_some());
}

/// Email change keeps uniqueness; verification only holds for the address
/// the account still has.
pub async fn email_change_and_verification(h: Harness) {
    let a = user(&h, "old@example.com").await;
    let b = user(&h, "taken@example.com").await;
    let new = Email::parse("New@Example.com").unwrap();
    let old = Email::parse("old@example.com").unwrap();
    // A link for the old address no longer verifies once the address changed.
    assert!(h.accounts.set_email(a.id, &new, false).await.unwrap());
    assert!(!h.accounts.mark_email_verified(a.id, &old).await.unwrap());
    let got = h.accounts.user_by_id(a.id).await.unwrap().unwrap();
    assert_eq!(got.email().map(Email::as_str), Some("New@example.com"));
    assert!(!got.email_verified);
    assert!(h.accounts.user_by_email(&old).await.unwrap().is_none());
    assert!(h.accounts.mark_email_verified(a.id, &new).await.unwrap());
    assert!(
        h.accounts
            .user_by_id(a.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    // Taken, case-insensitively: a conflict, nothing changes.
    let taken = Email::parse("TAKEN@example.com").unwrap();
    assert!(matches!(
        h.accounts.set_email(a.id, &taken, false).await,
        Err(StoreError::Conflict)
    ));
    assert!(
        h.accounts
            .user_by_id(a.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    assert_eq!(
        h.accounts
            .user_by_email(&taken)
            .await
            .unwrap()
            .unwrap()
            .user
            .id,
        b.id
    );
    // Shadow users have no email to change.
    let x = ExternalId::parse("ext-email").unwrap();
    let shadow = h.accounts.external_user(&x, UserId::new()).await.unwrap();
    let other = Email::parse("shadow@example.com").unwrap();
    assert!(!h.accounts.set_email(shadow.id, &other, true).await.unwrap());
}

/// TOTP: pending → confirmed (with recovery codes) → steps used once and
/// in order, also under concurrency → recovery codes consumed once →
/// removed with its codes.
pub async fn totp_factor_lifecycle_and_single_use(h: Harness) {
    let u = user(&h, "totp@example.com").await;
    assert_eq!(h.accounts.totp_factor(u.id).await.unwrap(), None);
    assert!(
        !h.accounts.use_totp_step(u.id, 1).await.unwrap(),
        "no factor"
    );
    assert!(
        h.accounts
            .put_pending_totp(u.id, b"sealed-1")
            .await
            .unwrap()
    );
    // A pending factor may be replaced; it does not guard login yet.
    assert!(
        h.accounts
            .put_pending_totp(u.id, b"sealed-2")
            .await
            .unwrap()
    );
    let f = h.accounts.totp_factor(u.id).await.unwrap().unwrap();
    assert_eq!(
        (f.sealed_secret.as_slice(), f.confirmed),
        (&b"sealed-2"[..], false)
    );
    assert!(
        !h.accounts
            .user_by_id(u.id)
            .await
            .unwrap()
            .unwrap()
            .mfa_enabled
    );
    assert!(
        !h.accounts.use_totp_step(u.id, 100).await.unwrap(),
        "pending"
    );

    let codes: Vec<[u8; 32]> = (0..10u8).map(|i| [i; 32]).collect();
    assert!(h.accounts.confirm_totp(u.id, 100, &codes).await.unwrap());
    assert!(
        !h.accounts.confirm_totp(u.id, 101, &codes).await.unwrap(),
        "twice"
    );
    assert!(
        h.accounts
            .user_by_id(u.id)
            .await
            .unwrap()
            .unwrap()
            .mfa_enabled
    );
    let cred = h
        .accounts
        .user_by_email(&Email::parse("totp@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(cred.user.mfa_enabled);
    assert!(
        !h.accounts
            .put_pending_totp(u.id, b"sealed-3")
            .await
            .unwrap(),
        "confirmed stays"
    );
    assert_eq!(h.accounts.recovery_codes_left(u.id).await.unwrap(), 10);

    // The confirming step is spent; older steps never work again.
    assert!(!h.accounts.use_totp_step(u.id, 100).await.unwrap());
    assert!(!h.accounts.use_totp_step(u.id, 99).await.unwrap());
    // Eight concurrent uses of one step: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let a = h.accounts.clone();
        let id = u.id;
        tasks.push(tokio::spawn(async move { a.use_totp_step(id, 101).await }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert!(h.accounts.use_totp_step(u.id, 103).await.unwrap());
    assert!(!h.accounts.use_totp_step(u.id, 102).await.unwrap());

    assert!(h.accounts.use_recovery_code(u.id, &[3; 32]).await.unwrap());
    assert!(!h.accounts.use_recovery_code(u.id, &[3; 32]).await.unwrap());
    assert!(!h.accounts.use_recovery_code(u.id, &[42; 32]).await.unwrap());
    let other = user(&h, "other-totp@example.com").await;
    assert!(
        !h.accounts
            .use_recovery_code(other.id, &[4; 32])
            .await
            .unwrap(),
        "not theirs"
    );
    assert_eq!(h.accounts.recovery_codes_left(u.id).await.unwrap(), 9);

    assert!(h.accounts.remove_totp(u.id).await.unwrap());
    assert!(!h.accounts.remove_totp(u.id).await.unwrap());
    assert_eq!(h.accounts.totp_factor(u.id).await.unwrap(), None);
    assert_eq!(h.accounts.recovery_codes_left(u.id).await.unwrap(), 0);
    assert!(
        !h.accounts
            .user_by_id(u.id)
            .await
            .unwrap()
            .unwrap()
            .mfa_enabled
    );
    // Enrolling again starts from scratch: old steps count again.
    assert!(
        h.accounts
            .put_pending_totp(u.id, b"sealed-4")
            .await
            .unwrap()
    );
    assert!(
        h.accounts
            .confirm_totp(u.id, 50, &codes[..2])
            .await
            .unwrap()
    );
    assert!(h.accounts.use_totp_step(u.id, 51).await.unwrap());
    assert_eq!(h.accounts.recovery_codes_left(u.id).await.unwrap(), 2);
}

/// Re-authentication moves `auth_time` to store time and sets `aal`, on
/// live sessions only.
pub async fn reauthenticate_touches_live_sessions_only(h: Harness) {
    let u = user(&h, "reauth@example.com").await;
    let s = session(&h, new_session(u.id, Transport::Hybrid, 10)).await;
    assert_eq!((s.auth_time, s.aal), (T0, Aal::Aal1));
    h.clock.advance(120);
    let r = h
        .sessions
        .reauthenticate(s.id, Aal::Aal2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.auth_time, r.aal), (T0 + 120, Aal::Aal2));
    let read = h.sessions.session(s.id).await.unwrap().unwrap();
    assert_eq!(
        (read.auth_time, read.aal, read.generation),
        (T0 + 120, Aal::Aal2, 0)
    );
    h.sessions.revoke(s.id, RevokeReason::Logout).await.unwrap();
    assert_eq!(
        h.sessions.reauthenticate(s.id, Aal::Aal1).await.unwrap(),
        None
    );
    assert_eq!(
        h.sessions
            .reauthenticate(SessionId::random(), Aal::Aal1)
            .await
            .unwrap(),
        None
    );
}
