//! The admin API and the handoff exchange, through HTTP: sessions for
//! externally authenticated users, claims, disable/enable/delete, key
//! rotation, and API keys (hashed in the configuration, two valid at once).

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sesame_server::server::new_api_key;

struct Keys {
    admin: String,
    admin_next: String,
    service: String,
}

async fn server() -> (TestServer, Keys) {
    let (a, b, s) = (new_api_key(), new_api_key(), new_api_key());
    let keys = Keys {
        admin: a.key,
        admin_next: b.key,
        service: s.key,
    };
    let (ha, hb, hs) = (a.hash, b.hash, s.hash);
    let srv = TestServer::with(move |raw| {
        raw.admin_api_keys = Some(vec![ha.clone(), hb.clone()]);
        raw.service_api_keys = Some(vec![hs.clone()]);
    })
    .await;
    (srv, keys)
}

async fn admin(
    srv: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut rb = reqwest::Client::new()
        .request(method, format!("{}{path}", srv.base))
        .bearer_auth(key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    answer(rb.send().await.unwrap()).await
}

/// Redeems a handoff code as a browser would (hybrid transport).
async fn exchange(d: &mut Device, code: &str) -> Answer {
    let a = answer(
        d.request(Method::POST, "/auth/session/exchange")
            .json(&json!({ "handoff_code": code }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    d.absorb(&a);
    a
}

#[tokio::test]
async fn external_user_session_via_handoff_code() {
    let (srv, k) = server().await;
    let created = admin(
        &srv,
        &k.admin,
        Method::POST,
        "/admin/sessions",
        Some(json!({ "user_id": "auth0|42", "claims": { "role": "editor", "org": 7 } })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.headers["cache-control"], "no-store");
    assert_eq!(created.body["user"]["external_id"], "auth0|42");
    assert_eq!(created.body["user"]["email"], Value::Null);
    assert_eq!(created.body["expires_in"], 60);
    let code = created.body["handoff_code"].as_str().unwrap().to_string();
    let uid = created.body["user"]["id"].as_str().unwrap().to_string();

    // The same external id maps to the same shadow user.
    let again = admin(
        &srv,
        &k.admin,
        Method::POST,
        "/admin/sessions",
        Some(json!({ "user_id": "auth0|42" })),
    )
    .await;
    assert_eq!(again.body["user"]["id"], uid.as_str());

    let mut browser = srv.device();
    let a = exchange(&mut browser, &code).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        browser.refresh_cookie.is_some(),
        "hybrid: refresh cookie set"
    );
    let me = browser.me().await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["user"]["id"], uid.as_str());
    assert_eq!(me.body["claims"]["role"], "editor");
    assert_eq!(me.body["claims"]["org"], 7);
    // The session records the browser that redeemed the code.
    assert_eq!(me.body["session"]["user_agent"], UA);

    // One-time: a second redemption, by anyone, fails and changes nothing.
    let mut thief = srv.device_with_ua("curl/8");
    let b = exchange(&mut thief, &code).await;
    assert_eq!((b.status.as_u16(), b.code()), (401, "handoff_code_invalid"));
    assert!(b.is_problem());
    assert!(thief.access.is_none());
    // Expired: a fresh code, 61 s later.
    let late = admin(
        &srv,
        &k.admin,
        Method::POST,
        "/admin/sessions",
        Some(json!({ "user_id": "auth0|42" })),
    )
    .await;
    srv.clock.advance(61);
    let c = exchange(
        &mut srv.device(),
        late.body["handoff_code"].as_str().unwrap(),
    )
    .await;
    assert_eq!(c.code(), "handoff_code_invalid");
    // Garbage codes are the same answer, and the exchange needs an allowed Origin.
    assert_eq!(
        exchange(&mut srv.device(), "shc_nope").await.code(),
        "handoff_code_invalid"
    );
    let mut foreign = srv.device();
    foreign.origin = Some("https://evil.example".into());
    assert_eq!(exchange(&mut foreign, &code).await.code(), "csrf_rejected");
}

#[tokio::test]
async fn claims_change_at_next_refresh_or_at_once() {
    let (srv, k) = server().await;
    let created = admin(
        &srv,
        &k.admin,
        Method::POST,
        "/admin/sessions",
        Some(json!({ "user_id": "u-1", "claims": { "plan": "free" } })),
    )
    .await;
    let uid = created.body["user"]["id"].as_str().unwrap().to_string();
    let mut d = srv.device();
    exchange(&mut d, created.body["handoff_code"].as_str().unwrap()).await;
    assert_eq!(d.me().await.body["claims"]["plan"], "free");

    let changed = admin(
        &srv,
        &k.admin,
        Method::PUT,
        &format!("/admin/users/{uid}/claims"),
        Some(json!({ "claims": { "plan": "pro" } })),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.body["sessions"], 1);
    // The current access token still says "free"; the next refresh says "pro".
    assert_eq!(d.me().await.body["claims"]["plan"], "free");
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(d.me().await.body["claims"]["plan"], "pro");

    // Reserved names and oversized claims are refused, nothing changes.
    for bad in [json!({ "sub": "x" }), json!({ "big": "x".repeat(2000) })] {
        let a = admin(
            &srv,
            &k.admin,
            Method::PUT,
            &format!("/admin/users/{uid}/claims"),
            Some(json!({ "claims": bad })),
        )
        .await;
        assert_eq!((a.status.as_u16(), a.code()), (400, "invalid_request"));
    }
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(d.me().await.body["claims"]["plan"], "pro");

    // revoke = true ends the sessions now.
    let a = admin(
        &srv,
        &k.admin,
        Method::PUT,
        &format!("/admin/users/{uid}/claims"),
        Some(json!({ "claims": { "plan": "none" }, "revoke": true })),
    )
    .await;
    assert_eq!(a.body["revoked"], true);
    let me = d.me().await;
    assert_eq!((me.status.as_u16(), me.code()), (401, "session_revoked"));
    assert_eq!(me.body["reason"], "revoked_by_admin");
}

#[tokio::test]
async fn list_revoke_disable_enable_delete() {
    let (srv, k) = server().await;
    let mut d = srv.device();
    assert_eq!(d.register("ann@example.com").await.status, 201);
    let uid = d.me().await.body["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut d2 = srv.device_with_ua("Phone");
    assert_eq!(d2.login("ann@example.com", PASSWORD).await.status, 200);

    let list = admin(
        &srv,
        &k.admin,
        Method::GET,
        &format!("/admin/users/{uid}/sessions"),
        None,
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.text);
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let phone = sessions
        .iter()
        .find(|s| s["user_agent"] == "Phone")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Revoke one session.
    let a = admin(
        &srv,
        &k.admin,
        Method::DELETE,
        &format!("/admin/sessions/{phone}"),
        None,
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert_eq!(d2.me().await.body["reason"], "revoked_by_admin");
    assert_eq!(d.me().await.status, 200);
    let missing = admin(
        &srv,
        &k.admin,
        Method::DELETE,
        "/admin/sessions/AAAAAAAAAAAAAAAAAAAAAA",
        None,
    )
    .await;
    assert_eq!(missing.code(), "not_found");

    // Disable ends every session and blocks login; enable lets it back in.
    let dis = admin(
        &srv,
        &k.admin,
        Method::POST,
        &format!("/admin/users/{uid}/disable"),
        None,
    )
    .await;
    assert_eq!(dis.status, 204, "{}", dis.text);
    assert_eq!(d.me().await.body["reason"], "account_disabled");
    assert_eq!(
        d.login("ann@example.com", PASSWORD).await.code(),
        "account_disabled"
    );
    admin(
        &srv,
        &k.admin,
        Method::POST,
        &format!("/admin/users/{uid}/enable"),
        None,
    )
    .await;
    assert_eq!(d.login("ann@example.com", PASSWORD).await.status, 200);

    // Revoke all, then delete.
    let all = admin(
        &srv,
        &k.admin,
        Method::DELETE,
        &format!("/admin/users/{uid}/sessions"),
        None,
    )
    .await;
    assert_eq!(all.body["revoked"], 1);
    assert_eq!(d.login("ann@example.com", PASSWORD).await.status, 200);
    let del = admin(
        &srv,
        &k.admin,
        Method::DELETE,
        &format!("/admin/users/{uid}"),
        None,
    )
    .await;
    assert_eq!(del.status, 204, "{}", del.text);
    let me = d.me().await;
    assert_eq!(me.status, 401);
    assert_eq!(
        d.login("ann@example.com", PASSWORD).await.code(),
        "invalid_credentials"
    );
    let again = admin(
        &srv,
        &k.admin,
        Method::DELETE,
        &format!("/admin/users/{uid}"),
        None,
    )
    .await;
    assert_eq!(again.code(), "not_found");
    let bad = admin(
        &srv,
        &k.admin,
        Method::GET,
        "/admin/users/not-a-uuid/sessions",
        None,
    )
    .await;
    assert_eq!(bad.code(), "invalid_request");
}

#[tokio::test]
async fn key_rotation_logs_nobody_out() {
    let (srv, k) = server().await;
    let mut d = srv.device();
    d.register("kim@example.com").await;
    let before = srv.device().get("/.well-known/jwks.json").await.body["keys"]
        .as_array()
        .unwrap()
        .len();
    let a = admin(&srv, &k.admin, Method::POST, "/admin/keys/rotate", None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let states: Vec<_> = a.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap().to_string())
        .collect();
    assert!(states.contains(&"active".to_string()) && states.contains(&"retired".to_string()));
    assert!(
        srv.device().get("/.well-known/jwks.json").await.body["keys"]
            .as_array()
            .unwrap()
            .len()
            > before
    );
    // The old token still verifies; a refresh signs with the new key.
    assert_eq!(d.me().await.status, 200);
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(d.me().await.status, 200);
}

#[tokio::test]
async fn api_keys_hashed_two_at_once_and_scoped() {
    let (srv, k) = server().await;
    for key in [&k.admin, &k.admin_next] {
        let a = admin(
            &srv,
            key,
            Method::POST,
            "/admin/sessions",
            Some(json!({ "user_id": "x" })),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    // The service key opens the feed, not the admin API; unknown keys nothing.
    for key in [k.service.clone(), new_api_key().key, String::new()] {
        let a = admin(
            &srv,
            &key,
            Method::POST,
            "/admin/sessions",
            Some(json!({ "user_id": "x" })),
        )
        .await;
        assert_eq!((a.status.as_u16(), a.code()), (401, "invalid_api_key"));
        assert!(a.is_problem());
        assert!(a.headers.contains_key("www-authenticate"));
    }
    let feed = admin(&srv, &k.admin, Method::GET, "/auth/revocations", None).await;
    assert_eq!(feed.code(), "invalid_api_key");
    // Bad bodies are 4xx problems and change nothing.
    for body in [
        json!({}),
        json!({ "user_id": "" }),
        json!({ "user_id": "a\u{0}b" }),
        json!({ "user_id": "x", "extra": 1 }),
    ] {
        let a = admin(&srv, &k.admin, Method::POST, "/admin/sessions", Some(body)).await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (400, "invalid_request"),
            "{}",
            a.text
        );
    }
    // Without any configured key the admin API opens for nobody.
    let bare = TestServer::start().await;
    let a = admin(
        &bare,
        &k.admin,
        Method::POST,
        "/admin/sessions",
        Some(json!({ "user_id": "x" })),
    )
    .await;
    assert_eq!(a.code(), "invalid_api_key");
}

#[tokio::test]
async fn audit_log_reads_with_filters_and_pages() {
    let (srv, k) = server().await;
    let mut d = srv.device();
    d.register("aud@example.com").await;
    let uid = d.me().await.body["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(
            d.login("aud@example.com", "wrong password").await.code(),
            "invalid_credentials"
        );
    }
    assert_eq!(d.login("aud@example.com", PASSWORD).await.status, 200);
    let get = |q: String| {
        let (srv, key) = (&srv, k.admin.clone());
        async move { admin(srv, &key, Method::GET, &format!("/admin/audit{q}"), None).await }
    };

    let failed = get(format!("?user={uid}&event=login_failed")).await;
    assert_eq!(failed.status, 200, "{}", failed.text);
    let events = failed.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|e| e["event"] == "login_failed" && e["user_id"] == uid.as_str())
    );
    assert_eq!(events[0]["detail"]["why"], "password");
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");

    // Paging: two pages of two cover the user's first four events in order.
    let p1 = get(format!("?user={uid}&limit=2")).await;
    let next = p1.body["next_before"].as_i64().unwrap();
    let p2 = get(format!("?user={uid}&limit=2&before={next}")).await;
    let all = get(format!("?user={uid}&limit=4")).await;
    let cat: Vec<_> = p1.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2.body["events"].as_array().unwrap())
        .map(|e| e["id"].clone())
        .collect();
    let direct: Vec<_> = all.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(cat, direct);

    // Time window: nothing before the server's clock started.
    let none = get(format!("?user={uid}&until={}", T0)).await;
    assert!(none.body["events"].as_array().unwrap().is_empty());

    for bad in [
        "?user=x",
        "?limit=0",
        "?limit=1001",
        "?since=soon",
        "?event=DROP%20TABLE",
        "?colour=red",
    ] {
        let a = get(bad.to_string()).await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (400, "invalid_request"),
            "{bad}: {}",
            a.text
        );
    }
    assert_eq!(
        admin(&srv, &k.service, Method::GET, "/admin/audit", None)
            .await
            .code(),
        "invalid_api_key"
    );
}

#[tokio::test]
async fn purge_removes_what_retention_allows_and_keeps_the_rest() {
    let srv = TestServer::start().await;
    let mut old = srv.device();
    old.register("old@example.com").await;
    assert_eq!(old.post("/auth/logout", None).await.status, 204);
    let mut live = srv.device();
    live.register("live@example.com").await;
    // Within the visibility window nothing that a device list shows goes.
    let p = srv.engine().purge(90 * 86_400).await.unwrap();
    assert_eq!(p.sessions, 0, "{p:?}");
    // Eight days later (visibility 7 d): the logged-out session and its
    // revocation row go; the live session stays and still works.
    // (The live device refreshes meanwhile, as a client in use does: the
    // idle lifetime is 7 days.)
    srv.clock.advance(4 * 86_400);
    assert_eq!(live.refresh().await.status, 200);
    srv.clock.advance(4 * 86_400);
    let p = srv.engine().purge(90 * 86_400).await.unwrap();
    assert_eq!(p.sessions, 1, "{p:?}");
    assert!(p.revocations >= 1, "{p:?}");
    assert_eq!(p.audit, 0, "audit rows are younger than the retention");
    let p = srv.engine().purge(86_400).await.unwrap();
    assert!(p.audit >= 2, "{p:?}");
    assert_eq!(live.refresh().await.status, 200);
    assert_eq!(live.me().await.status, 200);
}
