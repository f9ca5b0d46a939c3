//! Every route's happy path and documented failures, through real sockets.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    let a = d.register("Alice@Example.com").await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["expires_in"], 600);
    assert_eq!(a.body["user"]["email"], "Alice@example.com");
    assert!(
        a.body.get("refresh_token").is_none(),
        "hybrid: refresh token only in the cookie"
    );
    assert_eq!(a.headers["cache-control"], "no-store");
    let cookie = a
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-sesame_rt="))
        .unwrap();
    for attr in [
        "Path=/",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Max-Age=2592000",
    ] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Domain"),
        "__Host- cookies carry no Domain"
    );

    let me = d.me().await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["user"]["email"], "Alice@example.com");
    assert_eq!(me.body["session"]["current"], true);
    assert_eq!(me.body["session"]["device"], "Firefox on Linux");

    // Same address, other case: taken.
    let mut other = srv.device();
    let taken = other.register("alice@EXAMPLE.com").await;
    assert_eq!((taken.status.as_u16(), taken.code()), (409, "email_taken"));

    let mut d2 = srv.device();
    let l = d2.login("alice@example.com", PASSWORD).await;
    assert_eq!(l.status, 200, "{}", l.text);
    let before = d2.refresh_cookie.clone().unwrap();
    let r = d2.refresh().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(
        d2.refresh_cookie.clone().unwrap(),
        before,
        "refresh rotates the cookie"
    );
    assert_eq!(d2.me().await.status, 200);

    let out = d2.post("/auth/logout", None).await;
    assert_eq!(out.status, 204, "{}", out.text);
    assert_eq!(
        out.cookie("__Host-sesame_rt").as_deref(),
        Some(""),
        "logout expires the cookie"
    );
    let after = d2.me().await;
    assert_eq!(
        (after.status.as_u16(), after.code()),
        (401, "session_revoked")
    );
    assert_eq!(after.body["reason"], "logout");
    assert_eq!(d2.refresh_raw().await.code(), "session_revoked");
    // The first device is untouched.
    assert_eq!(d.me().await.status, 200);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_answer_alike() {
    let srv = TestServer::start().await;
    srv.device().register("bob@example.com").await;
    let mut d = srv.device();
    let wrong = d.login("bob@example.com", "not the password").await;
    let unknown = d.login("nobody@example.com", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.code(), "invalid_credentials");
    // Both ran a hash verification and left a failed-login audit row.
    let store = sesame_store_sqlx::SqliteStore::connect(
        &sesame_store_sqlx::SqliteStoreOptions::new(format!("sqlite://{}", srv.db.display())),
        std::sync::Arc::new(srv.clock.clone()),
    )
    .await
    .unwrap();
    let rows = store.audit_kinds(10).await.unwrap();
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "login_failed")
        .map(|r| r.2.clone())
        .collect();
    assert_eq!(failed.len(), 2, "{rows:?}");
    assert!(failed.iter().any(|d| d.contains("unknown_email")));
}

/// Enumeration by code path: a login for an unknown email takes the same
/// road as a wrong password — through the bounded hashing pool (a dummy
/// verification) — which shows when the pool is full: with one worker and
/// no queue, concurrent unknown-email logins are refused as `overloaded`,
/// exactly as real ones would be.
#[tokio::test]
async fn unknown_emails_go_through_the_hashing_pool_too() {
    let srv = TestServer::with(|raw| {
        raw.hash_workers = Some(1);
        raw.hash_queue = Some(0);
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut d = srv.device();
        tasks.push(tokio::spawn(async move {
            d.login(&format!("ghost{i}@example.com"), "not the password")
                .await
                .code()
                .to_string()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert!(codes.iter().any(|c| c == "overloaded"), "{codes:?}");
    assert!(
        codes.iter().any(|c| c == "invalid_credentials"),
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| c == "overloaded" || c == "invalid_credentials"),
        "{codes:?}"
    );
}

#[tokio::test]
async fn register_validation_errors() {
    let srv = TestServer::start().await;
    let d = srv.device();
    for (body, field) in [
        (
            json!({ "email": "not-an-email", "password": PASSWORD }),
            "email",
        ),
        (
            json!({ "email": "a@example.com", "password": "short" }),
            "password",
        ),
        (
            json!({ "email": "a@example.com", "password": "password123" }),
            "password",
        ),
        (
            json!({ "email": "a@example.com", "password": "x".repeat(1025) }),
            "password",
        ),
    ] {
        let a = d.post("/auth/register", Some(body)).await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (400, "invalid_request"),
            "{}",
            a.text
        );
        assert!(a.is_problem());
        assert_eq!(a.body["errors"][0]["field"], field, "{}", a.text);
    }
    // Unknown members are refused rather than ignored.
    let a = d
        .post(
            "/auth/register",
            Some(json!({ "email": "a@example.com", "password": PASSWORD, "admin": true })),
        )
        .await;
    assert_eq!(a.code(), "invalid_request");
    // Nothing was created: the address is still free.
    let mut d2 = srv.device();
    assert_eq!(d2.register("a@example.com").await.status, 201);
}

#[tokio::test]
async fn require_verified_email_hides_existence() {
    let srv = TestServer::with(|c| c.require_verified_email = Some(true)).await;
    let mut d = srv.device();
    let first = d.register("carol@example.com").await;
    let again = d.register("carol@example.com").await;
    assert_eq!(first.status, 202);
    assert_eq!(first.status, again.status);
    assert_eq!(first.body, again.body);
    assert!(
        first.cookie("__Host-sesame_rt").is_none(),
        "no session before verification"
    );
    // The right password on an unverified account says so; a wrong one does not.
    assert_eq!(
        d.login("carol@example.com", PASSWORD).await.code(),
        "email_not_verified"
    );
    assert_eq!(
        d.login("carol@example.com", "wrong password!").await.code(),
        "invalid_credentials"
    );
}

#[tokio::test]
async fn bearer_transport_keeps_tokens_in_bodies() {
    let srv = TestServer::start().await;
    srv.device().register("dan@example.com").await;
    let mut app = srv.device();
    let l = app
        .login_as("dan@example.com", PASSWORD, Some("bearer"))
        .await;
    assert_eq!(l.status, 200, "{}", l.text);
    assert!(
        l.body["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("srt_")
    );
    assert_eq!(l.body["refresh_expires_in"], 604_800);
    assert!(l.set_cookies().is_empty(), "bearer sets no cookies");
    let r = app.refresh().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.body["refresh_token"], l.body["refresh_token"]);

    // A bearer session's token in the cookie is the wrong channel.
    let mut wrong = app.clone();
    wrong.refresh_cookie = wrong.refresh_body.take();
    let a = wrong.refresh_raw().await;
    assert_eq!((a.status.as_u16(), a.code()), (400, "transport_mismatch"));
    // ... and it did not rotate: the right channel still works.
    assert_eq!(app.refresh().await.status, 200);
}

#[tokio::test]
async fn hybrid_token_in_body_or_both_channels_is_transport_mismatch() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("erin@example.com").await;
    let token = d.refresh_cookie.clone().unwrap();
    let mut body_only = d.clone();
    body_only.refresh_cookie = None;
    body_only.refresh_body = Some(token.clone());
    let a = body_only.refresh_raw().await;
    assert_eq!((a.status.as_u16(), a.code()), (400, "transport_mismatch"));
    let mut both = d.clone();
    both.refresh_body = Some(token);
    assert_eq!(both.refresh_raw().await.code(), "transport_mismatch");
    // Nothing rotated.
    let ok = d.refresh().await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn cookie_transport_sets_access_cookie_and_accepts_it() {
    let srv = TestServer::start().await;
    srv.device().register("fay@example.com").await;
    let mut d = srv.device();
    let l = d
        .login_as("fay@example.com", PASSWORD, Some("cookie"))
        .await;
    assert_eq!(l.status, 200);
    let at = l
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-sesame_at="))
        .unwrap();
    assert!(
        at.contains("SameSite=Lax") && at.contains("HttpOnly") && at.contains("Secure"),
        "{at}"
    );
    let value = l.cookie("__Host-sesame_at").unwrap();
    let me = common::answer(
        d.request(reqwest::Method::GET, "/auth/me")
            .header("cookie", format!("__Host-sesame_at={value}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.text);
    // With Authorization present the cookie is ignored.
    let ignored = common::answer(
        d.request(reqwest::Method::GET, "/auth/me")
            .header("cookie", format!("__Host-sesame_at={value}"))
            .header("authorization", "Bearer garbage")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ignored.code(), "invalid_token");
    // An unknown transport is refused.
    let bad = d
        .login_as("fay@example.com", PASSWORD, Some("carrier-pigeon"))
        .await;
    assert_eq!(bad.code(), "invalid_request");
}

#[tokio::test]
async fn sessions_list_revoke_logout_others_and_all() {
    let srv = TestServer::start().await;
    let mut laptop = srv.device();
    laptop.register("gus@example.com").await;
    let mut phone =
        srv.device_with_ua("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1");
    phone.login("gus@example.com", PASSWORD).await;
    let mut tablet = srv.device();
    tablet.login("gus@example.com", PASSWORD).await;

    let list = laptop.get("/auth/sessions").await;
    assert_eq!(list.status, 200, "{}", list.text);
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(sessions.iter().any(|s| s["device"] == "Safari on iOS"));
    assert!(sessions.iter().all(|s| s["ip"] == "127.0.0.1"));

    // Revoke the phone from the laptop.
    let phone_sid = phone.me().await.body["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let del = laptop.delete(&format!("/auth/sessions/{phone_sid}")).await;
    assert_eq!(del.status, 204, "{}", del.text);
    let dead = phone.me().await;
    assert_eq!(
        (dead.code(), dead.body["reason"].as_str()),
        ("session_revoked", Some("revoked_by_user"))
    );
    assert_eq!(phone.refresh_raw().await.code(), "session_revoked");
    // The list still shows it, with why it ended.
    let list = laptop.get("/auth/sessions").await;
    let ended: Vec<_> = list.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["active"] == false)
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["revoke_reason"], "revoked_by_user");

    // Someone else's session, or nonsense, is 404.
    let mut stranger = srv.device();
    stranger.register("hal@example.com").await;
    let laptop_sid = laptop.me().await.body["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        stranger
            .delete(&format!("/auth/sessions/{laptop_sid}"))
            .await
            .status,
        404
    );
    assert_eq!(
        stranger.delete("/auth/sessions/not-a-session").await.code(),
        "not_found"
    );
    assert_eq!(laptop.me().await.status, 200);

    // Logout-others keeps only the laptop.
    assert_eq!(laptop.post("/auth/logout-others", None).await.status, 204);
    assert_eq!(tablet.me().await.code(), "session_revoked");
    assert_eq!(laptop.me().await.status, 200);

    // Logout-all ends the laptop too, and says so with the cookies.
    let all = laptop.post("/auth/logout-all", None).await;
    assert_eq!(all.status, 204);
    assert_eq!(all.cookie("__Host-sesame_rt").as_deref(), Some(""));
    assert_eq!(laptop.me().await.body["reason"], "logout");
    assert_eq!(stranger.me().await.status, 200, "other users are untouched");
}

#[tokio::test]
async fn password_change_needs_current_and_revokes_others() {
    let srv = TestServer::start().await;
    let mut a = srv.device();
    a.register("ida@example.com").await;
    let mut b = srv.device();
    b.login("ida@example.com", PASSWORD).await;

    let wrong = a
        .post("/auth/password", Some(json!({ "current_password": "nope nope nope", "new_password": "a brand new secret" })))
        .await;
    assert_eq!(wrong.code(), "invalid_credentials");
    assert_eq!(b.me().await.status, 200, "a failed change revokes nothing");
    let weak = a
        .post(
            "/auth/password",
            Some(json!({ "current_password": PASSWORD, "new_password": "short" })),
        )
        .await;
    assert_eq!(weak.code(), "invalid_request");

    let ok = a
        .post(
            "/auth/password",
            Some(json!({ "current_password": PASSWORD, "new_password": "a brand new secret" })),
        )
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(a.me().await.status, 200, "the changing session survives");
    let other = b.me().await;
    assert_eq!(
        (other.code(), other.body["reason"].as_str()),
        ("session_revoked", Some("password_changed"))
    );
    assert_eq!(b.refresh_raw().await.code(), "session_revoked");
    let mut c = srv.device();
    assert_eq!(
        c.login("ida@example.com", PASSWORD).await.code(),
        "invalid_credentials"
    );
    assert_eq!(
        c.login("ida@example.com", "a brand new secret")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn login_with_live_cookie_replaces_the_earlier_session() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("jo@example.com").await;
    let old = d.clone();
    let l = d.login("jo@example.com", PASSWORD).await; // sends the live refresh cookie
    assert_eq!(l.status, 200);
    let gone = old.me().await;
    assert_eq!(
        (gone.code(), gone.body["reason"].as_str()),
        ("session_revoked", Some("replaced"))
    );
    assert_eq!(d.me().await.status, 200);
}

#[tokio::test]
async fn session_cap_evicts_least_recently_used_or_refuses() {
    let srv = TestServer::with(|c| c.max_sessions_per_user = Some(2)).await;
    let mut first = srv.device();
    first.register("kim@example.com").await;
    let mut second = srv.device();
    second.login("kim@example.com", PASSWORD).await;
    srv.clock.advance(10);
    assert_eq!(
        first.refresh().await.status,
        200,
        "first is now the most recently used"
    );
    let mut third = srv.device();
    assert_eq!(third.login("kim@example.com", PASSWORD).await.status, 200);
    assert_eq!(second.me().await.body["reason"], "evicted");
    assert_eq!(first.me().await.status, 200);

    let strict = TestServer::with(|c| {
        c.max_sessions_per_user = Some(1);
        c.session_limit_policy = Some("refuse".into());
    })
    .await;
    let mut a = strict.device();
    a.register("lee@example.com").await;
    let mut b = strict.device();
    let refused = b.login("lee@example.com", PASSWORD).await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (409, "session_limit_reached")
    );
    assert_eq!(a.me().await.status, 200);
}

#[tokio::test]
async fn disabled_user_loses_sessions_and_cannot_log_in() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    let r = d.register("max@example.com").await;
    let uid = sesame_core::ids::UserId::parse(r.body["user"]["id"].as_str().unwrap()).unwrap();
    srv.engine().set_user_disabled(uid, true).await.unwrap();
    assert_eq!(d.me().await.body["reason"], "account_disabled");
    let mut e = srv.device();
    assert_eq!(
        e.login("max@example.com", "wrong password!").await.code(),
        "invalid_credentials"
    );
    assert_eq!(
        e.login("max@example.com", PASSWORD).await.code(),
        "account_disabled"
    );
}

#[tokio::test]
async fn idle_and_absolute_expiry() {
    let srv = TestServer::with(|c| {
        c.refresh_ttl = Some("1h".into());
        c.session_max_age = Some("2h".into());
    })
    .await;
    let mut d = srv.device();
    d.register("ned@example.com").await;
    srv.clock.advance(3599);
    assert_eq!(
        d.refresh().await.status,
        200,
        "idle expiry slides with each refresh"
    );
    srv.clock.advance(3599);
    assert_eq!(d.refresh().await.status, 200);
    srv.clock.advance(3600);
    let idle = d.refresh_raw().await;
    assert_eq!(
        (idle.status.as_u16(), idle.code()),
        (401, "session_expired")
    );
    assert_eq!(idle.cookie("__Host-sesame_rt").as_deref(), Some(""));

    let mut e = srv.device();
    e.login("ned@example.com", PASSWORD).await;
    for _ in 0..3 {
        srv.clock.advance(1800);
        assert_eq!(e.refresh().await.status, 200);
    }
    srv.clock.advance(1799);
    assert_eq!(
        e.refresh().await.status,
        200,
        "one second before the absolute expiry"
    );
    srv.clock.advance(1);
    assert_eq!(
        e.refresh_raw().await.code(),
        "session_expired",
        "absolute lifetime wins over sliding"
    );
}

/// The engine remembers verified access tokens (a cache hit skips the
/// signature check): a hit must still expire with the token and still see
/// its session revoked.
#[tokio::test]
async fn remembered_access_tokens_still_expire_and_revoke() {
    let srv = TestServer::with(|c| {
        c.access_ttl = Some("10m".into());
        c.leeway = Some("0s".into());
    })
    .await;
    let mut d = srv.device();
    d.register("vera@example.com").await;
    for _ in 0..3 {
        assert_eq!(d.me().await.status, 200);
    }
    srv.clock.advance(599);
    assert_eq!(d.me().await.status, 200, "one second before expiry");
    srv.clock.advance(1);
    let expired = d.me().await;
    assert_eq!(
        (expired.status.as_u16(), expired.code()),
        (401, "invalid_token")
    );

    let mut e = srv.device();
    e.login("vera@example.com", PASSWORD).await;
    assert_eq!(e.me().await.status, 200);
    assert_eq!(e.me().await.status, 200);
    let ended = e.post("/auth/logout", None).await;
    assert_eq!(ended.status, 204);
    let revoked = e.me().await;
    assert_eq!(
        revoked.status, 401,
        "a remembered token of an ended session"
    );
}

#[tokio::test]
async fn jwks_health_and_readiness() {
    let srv = TestServer::start().await;
    let d = srv.device();
    let j = d.get("/.well-known/jwks.json").await;
    assert_eq!(j.status, 200);
    assert!(
        j.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let keys = j.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "active and next keys are published");
    for k in keys {
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["alg"], "EdDSA");
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none(), "no private material");
    }
    assert_eq!(d.get("/healthz").await.status, 200);
    assert_eq!(d.get("/readyz").await.body["status"], "ready");
    assert_eq!(d.get("/nope").await.code(), "not_found");
    let m = common::answer(
        d.request(reqwest::Method::PUT, "/auth/login")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(m.status, 405);
    assert!(m.is_problem());
}

#[tokio::test]
async fn hs256_keys_are_never_published() {
    let srv = TestServer::with(|c| c.signing_alg = Some("HS256".into())).await;
    let mut d = srv.device();
    d.register("oli@example.com").await;
    assert_eq!(d.me().await.status, 200);
    assert_eq!(
        d.get("/.well-known/jwks.json").await.body["keys"],
        json!([])
    );
}

#[tokio::test]
async fn key_rotation_logs_nobody_out_and_revoke_old_forces_refresh() {
    let srv = TestServer::with(|c| c.signing_alg = Some("ES256".into())).await;
    let mut d = srv.device();
    d.register("pam@example.com").await;
    srv.engine().rotate_keys(false).await.unwrap();
    assert_eq!(
        d.me().await.status,
        200,
        "tokens of the retired key still verify"
    );
    let jwks = d.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 3);
    assert_eq!(jwks.body["keys"][0]["kty"], "EC");
    srv.engine().rotate_keys(true).await.unwrap();
    assert_eq!(
        d.me().await.code(),
        "invalid_token",
        "--revoke-old kills the old key's tokens"
    );
    assert_eq!(
        d.refresh().await.status,
        200,
        "... and the client refreshes transparently"
    );
    assert_eq!(d.me().await.status, 200);
}
