//! The rotation protocol's invariants (SECURITY.md F1–F6, F9–F11, F16),
//! through real sockets with a manual clock. docs/rotation.md names each
//! test here.

mod common;

use common::*;
use sesame_core::ids::SessionId;
use std::collections::HashSet;

async fn generation(srv: &TestServer, d: &Device) -> (u32, Option<String>) {
    let sid = d.me().await.body["session"]["id"]
        .as_str()
        .map(str::to_string);
    let sid = sid.and_then(|s| SessionId::parse(&s));
    let s = srv
        .engine()
        .sessions()
        .session(sid.unwrap())
        .await
        .unwrap()
        .unwrap();
    (
        s.generation,
        s.revoke_reason.map(|r| r.as_str().to_string()),
    )
}

async fn session_of(srv: &TestServer, d: &Device) -> sesame_core::Session {
    let t = sesame_core::refresh::RefreshToken::decode(
        d.refresh_cookie
            .as_deref()
            .or(d.refresh_body.as_deref())
            .unwrap(),
    )
    .unwrap();
    srv.engine()
        .sessions()
        .session(t.session_id())
        .await
        .unwrap()
        .unwrap()
}

/// F1 / F16: N concurrent refreshes of one token inside the grace window all
/// get the same successor; exactly one generation is committed; nothing is
/// revoked; no loser expires the cookie; afterwards the successor works.
#[tokio::test]
async fn f1_concurrent_refreshes_share_one_successor() {
    for n in [2usize, 10, 50] {
        let srv = TestServer::with(|c| c.grace_max_answers = Some(100)).await;
        let mut d = srv.device();
        d.register(&format!("f1-{n}@example.com")).await;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (d, b) = (d.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                d.refresh_raw().await
            }));
        }
        let mut successors = HashSet::new();
        for t in tasks {
            let a = t.await.unwrap();
            assert!(!a.status.is_server_error(), "{}", a.text);
            assert_eq!(a.status, 200, "n={n}: {}", a.text);
            assert!(
                !a.set_cookies().iter().any(|c| c.contains("Max-Age=0")),
                "a loser expired the cookie"
            );
            successors.insert(a.cookie("__Host-sesame_rt").unwrap());
        }
        assert_eq!(
            successors.len(),
            1,
            "n={n}: every success returns the same successor"
        );
        let s = session_of(&srv, &d).await;
        assert_eq!(s.generation, 1, "exactly one generation committed");
        assert!(s.revoked_at.is_none());
        d.refresh_cookie = successors.into_iter().next();
        assert_eq!(
            d.refresh().await.status,
            200,
            "the successor rotates afterwards"
        );
        assert_eq!(d.me().await.status, 200);
    }
}

/// The answer cap: past `grace_max_answers` a replayed parent is reuse.
#[tokio::test]
async fn grace_answers_are_capped() {
    let srv = TestServer::start().await; // grace_max_answers = 5
    let mut d = srv.device();
    d.register("cap@example.com").await;
    let parent = d.clone();
    assert_eq!(d.refresh().await.status, 200);
    for i in 0..5 {
        let a = parent.refresh_raw().await;
        assert_eq!(a.status, 200, "grace answer {i}: {}", a.text);
        assert_eq!(
            a.cookie("__Host-sesame_rt"),
            d.refresh_cookie,
            "grace answers the same successor"
        );
    }
    assert_eq!(parent.refresh_raw().await.code(), "refresh_token_reused");
    assert_eq!(d.me().await.body["reason"], "reuse_detected");
}

/// F2: the parent replayed after the grace window (and late-retry window)
/// is reuse: the family is revoked, nothing is minted, one event logged.
#[tokio::test]
async fn f2_replay_after_window_is_reuse_and_revokes() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("f2@example.com").await;
    let rt0 = d.clone();
    assert_eq!(d.refresh().await.status, 200);
    srv.clock.advance(31);
    // Inside the late-retry window: stale, nothing revoked, cookie untouched.
    let stale = rt0.refresh_raw().await;
    assert_eq!(
        (stale.status.as_u16(), stale.code()),
        (401, "refresh_token_stale")
    );
    assert!(
        stale.cookie("__Host-sesame_rt").is_none(),
        "a stale answer never expires the cookie"
    );
    assert_eq!(d.me().await.status, 200);
    srv.clock.advance(30); // 61 s after the rotation: past 2 × grace.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let r = rt0.clone();
        tasks.push(tokio::spawn(async move { r.refresh_raw().await }));
    }
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, 401, "{}", a.text);
        assert!(a.body.get("access_token").is_none());
        assert!(
            matches!(a.code(), "refresh_token_reused" | "session_revoked"),
            "{}",
            a.text
        );
    }
    assert_eq!(
        d.refresh_raw().await.code(),
        "session_revoked",
        "RT1 dies with the family"
    );
    assert_eq!(d.me().await.body["reason"], "reuse_detected");
    let store = audit_store(&srv).await;
    let events = store.audit_kinds(100).await.unwrap();
    let reuse: Vec<_> = events
        .iter()
        .filter(|e| e.0 == "refresh_reuse_detected")
        .collect();
    assert_eq!(reuse.len(), 1, "exactly one reuse event: {events:?}");
    assert!(reuse[0].2.contains("likely_slow_client"));
}

async fn audit_store(srv: &TestServer) -> sesame_store_sqlx::SqliteStore {
    sesame_store_sqlx::SqliteStore::connect(
        &sesame_store_sqlx::SqliteStoreOptions::new(format!("sqlite://{}", srv.db.display())),
        std::sync::Arc::new(srv.clock.clone()),
    )
    .await
    .unwrap()
}

/// Grace replay from another user agent is theft, even inside the window.
#[tokio::test]
async fn grace_replay_from_another_user_agent_is_reuse() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("ua@example.com").await;
    let mut thief = d.clone();
    thief.ua = "curl/8.5.0".into();
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(thief.refresh_raw().await.code(), "refresh_token_reused");
    assert_eq!(d.refresh_raw().await.code(), "session_revoked");
    let events = audit_store(&srv).await.audit_kinds(50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.0 == "refresh_reuse_detected" && e.2.contains("likely_theft"))
    );
}

/// F3 / F4: a grandparent, even within a second, is reuse at once: the
/// generation counter decides, not timestamps.
#[tokio::test]
async fn f3_f4_grandparent_is_reuse_even_in_the_same_second() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("f3@example.com").await;
    let rt0 = d.clone();
    assert_eq!(d.refresh().await.status, 200);
    let rt1 = d.clone();
    assert_eq!(d.refresh().await.status, 200);
    // Same clock second throughout.
    assert_eq!(rt0.refresh_raw().await.code(), "refresh_token_reused");
    assert_eq!(d.refresh_raw().await.code(), "session_revoked");
    assert_eq!(rt1.refresh_raw().await.code(), "session_revoked");

    // F4: RT0→RT1→RT2 in one second, RT1 replayed after grace is reuse.
    let mut e = srv.device();
    e.login("f3@example.com", PASSWORD).await;
    e.refresh().await;
    let rt1 = e.clone();
    e.refresh().await;
    srv.clock.advance(61);
    assert_eq!(rt1.refresh_raw().await.code(), "refresh_token_reused");
    assert_eq!(e.me().await.body["reason"], "reuse_detected");
}

/// A forged or corrupted token never revokes anything and never reaches reuse.
#[tokio::test]
async fn forged_tag_never_revokes() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("forge@example.com").await;
    let real = d.refresh_cookie.clone().unwrap();
    let t = sesame_core::refresh::RefreshToken::decode(&real).unwrap();
    // Same session, generation and layout, signed by another key: a valid-looking forgery.
    let other = sesame_core::RefreshKeys::single(&[42u8; 32]).unwrap();
    let forged = other.mint_first(t.session_id()).encode();
    let mut flipped = real.clone().into_bytes();
    let i = flipped.len() - 3;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    for bad in [
        forged,
        String::from_utf8(flipped).unwrap(),
        "srt_".into(),
        "garbage".into(),
    ] {
        let mut f = d.clone();
        f.refresh_cookie = Some(bad);
        let a = f.refresh_raw().await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (401, "refresh_token_invalid"),
            "{}",
            a.text
        );
        assert!(
            a.cookie("__Host-sesame_rt").is_none(),
            "an invalid token does not touch the cookie"
        );
    }
    assert_eq!(generation(&srv, &d).await, (0, None), "nothing changed");
    assert_eq!(d.refresh().await.status, 200);
}

/// F5: sessions, generations and keys survive a restart; a rotated-away
/// token replayed after the restart is still reuse.
#[tokio::test]
async fn f5_restart_keeps_sessions_and_detects_replay() {
    let mut srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("f5@example.com").await;
    let rt0 = d.clone();
    assert_eq!(d.refresh().await.status, 200);
    let jwks_before = d.get("/.well-known/jwks.json").await.body;
    srv.restart().await;
    d.base = srv.base.clone();
    let mut rt0 = rt0;
    rt0.base = srv.base.clone();
    assert_eq!(
        d.me().await.status,
        200,
        "access tokens survive the restart (signing key kept)"
    );
    assert_eq!(d.get("/.well-known/jwks.json").await.body, jwks_before);
    let mut e = d.clone();
    assert_eq!(e.refresh().await.status, 200, "RT1 keeps working");
    srv.clock.advance(61);
    assert_eq!(rt0.refresh_raw().await.code(), "refresh_token_reused");
    assert_eq!(e.me().await.body["reason"], "reuse_detected");
}

/// F6: the client sent a refresh and lost the answer; its retry within the
/// grace window gets the same successor and revokes nothing.
#[tokio::test]
async fn f6_lost_response_retry_gets_the_same_successor() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("f6@example.com").await;
    let cookie = d.refresh_cookie.clone().unwrap();
    // Send the request on a raw socket and close it without reading.
    {
        use tokio::io::AsyncWriteExt;
        let addr = srv.base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST /auth/refresh HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\nUser-Agent: {UA}\r\nCookie: __Host-sesame_rt={cookie}\r\nContent-Length: 0\r\n\r\n",
            srv.origin()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        // Wait until the server committed the rotation, then drop the socket unread.
        for _ in 0..1000 {
            if session_of(&srv, &d).await.generation == 1 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    assert_eq!(session_of(&srv, &d).await.generation, 1);
    let retry = d.refresh_raw().await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    let again = d.refresh_raw().await;
    assert_eq!(
        retry.cookie("__Host-sesame_rt"),
        again.cookie("__Host-sesame_rt")
    );
    let s = session_of(&srv, &d).await;
    assert_eq!(s.generation, 1);
    assert!(s.revoked_at.is_none());
}

/// F9: a refresh racing a logout leaves nothing alive, whichever wins.
#[tokio::test]
async fn f9_refresh_racing_logout_leaves_nothing_alive() {
    let srv = TestServer::start().await;
    let mut setup = srv.device();
    setup.register("f9@example.com").await;
    for _ in 0..30 {
        let mut d = srv.device();
        d.login("f9@example.com", PASSWORD).await;
        let (a, b) = (d.clone(), d.clone());
        let (r, l) = tokio::join!(a.refresh_raw(), b.post("/auth/logout", None));
        assert!(!r.status.is_server_error() && !l.status.is_server_error());
        assert_eq!(l.status, 204, "{}", l.text);
        let mut after = d.clone();
        after.absorb(&r);
        assert_eq!(
            after.me().await.status,
            401,
            "no access token survives the logout"
        );
        assert_eq!(
            after.refresh_raw().await.status,
            401,
            "no refresh token survives the logout"
        );
    }
}

/// F10: refreshes starting after logout-all (or a password change) has
/// answered all fail; no token minted before it survives it.
#[tokio::test]
async fn f10_refresh_after_logout_all_or_password_change_fails() {
    let srv = TestServer::start().await;
    let mut main = srv.device();
    main.register("f10@example.com").await;
    let mut others = Vec::new();
    for _ in 0..4 {
        let mut d = srv.device();
        d.login("f10@example.com", PASSWORD).await;
        others.push(d);
    }
    // Refreshes in flight while logout-all runs.
    let mut racing = Vec::new();
    for d in &others {
        let d = d.clone();
        racing.push(tokio::spawn(async move { d.refresh_raw().await }));
    }
    let out = main.post("/auth/logout-all", None).await;
    assert_eq!(out.status, 204);
    for (t, d) in racing.into_iter().zip(&others) {
        let raced = t.await.unwrap();
        let mut d = d.clone();
        d.absorb(&raced);
        assert_eq!(d.refresh_raw().await.status, 401);
        assert_eq!(d.me().await.status, 401);
    }

    // Password change: every other device, and every token they held.
    let mut a = srv.device();
    a.login("f10@example.com", PASSWORD).await;
    let mut b = srv.device();
    b.login("f10@example.com", PASSWORD).await;
    let ok = a
        .post("/auth/password", Some(serde_json::json!({ "current_password": PASSWORD, "new_password": "another long secret" })))
        .await;
    assert_eq!(ok.status, 204);
    assert_eq!(b.refresh_raw().await.code(), "session_revoked");
    assert_eq!(b.me().await.body["reason"], "password_changed");
}

/// F11: 20 parallel logins give 20 distinct sessions with unique tokens.
#[tokio::test]
async fn f11_concurrent_logins_are_distinct_sessions() {
    let srv = TestServer::start().await;
    srv.device().register("f11@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut d = srv.device();
        tasks.push(tokio::spawn(async move {
            let a = d.login("f11@example.com", PASSWORD).await;
            (
                a.status,
                a.body["session_id"].as_str().unwrap_or("").to_string(),
                d.refresh_cookie.clone(),
            )
        }));
    }
    let mut sids = HashSet::new();
    let mut tokens = HashSet::new();
    for t in tasks {
        let (status, sid, rt) = t.await.unwrap();
        assert_eq!(status, 200);
        assert!(sids.insert(sid));
        assert!(tokens.insert(rt.unwrap()));
    }
    assert_eq!(sids.len(), 20, "all logins fit the hashing queue");
}
