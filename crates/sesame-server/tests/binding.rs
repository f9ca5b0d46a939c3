//! Token binding (DESIGN §1) through HTTP: a stolen access token without the
//! `__Host-sesame_fp` cookie, from another user agent, or from another
//! network is refused by the server's own routes; a spoofed
//! `X-Forwarded-For` changes nothing unless it comes through a trusted proxy.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&sesame_core::crypto::b64_decode(part).unwrap()).unwrap()
}

async fn me_with(d: &Device, extra: &[(&str, &str)]) -> Answer {
    let mut rb = d
        .request(Method::GET, "/auth/me")
        .bearer_auth(d.access.as_deref().unwrap());
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    answer(rb.send().await.unwrap()).await
}

#[tokio::test]
async fn cookie_binding_refuses_a_token_without_its_cookie() {
    let srv = TestServer::with(|raw| raw.binding = Some("cookie".into())).await;
    let mut d = srv.device();
    let reg = d.register("fp@example.com").await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let set = reg
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-sesame_fp="))
        .expect("fp cookie set");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let fp = reg.cookie("__Host-sesame_fp").unwrap();
    let claims = payload(d.access.as_deref().unwrap());
    assert_eq!(
        claims["cnf"]["fph"],
        sesame_core::binding::fp_hash(&fp).as_str()
    );

    let cookie = format!("__Host-sesame_fp={fp}");
    assert_eq!(me_with(&d, &[("cookie", &cookie)]).await.status, 200);
    // Stolen: the token alone, or with another value, or twice.
    let stolen = me_with(&d, &[]).await;
    assert_eq!(
        (stolen.status.as_u16(), stolen.code()),
        (401, "invalid_token")
    );
    assert!(stolen.headers.contains_key("www-authenticate"));
    assert_eq!(
        me_with(&d, &[("cookie", "__Host-sesame_fp=forged")])
            .await
            .code(),
        "invalid_token"
    );
    assert_eq!(
        me_with(
            &d,
            &[("cookie", &format!("{cookie}; __Host-sesame_fp=forged"))]
        )
        .await
        .code(),
        "duplicate_cookie"
    );

    // A refreshed token is bound to the same cookie.
    let r = d.refresh().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(payload(d.access.as_deref().unwrap())["cnf"], claims["cnf"]);
    assert_eq!(me_with(&d, &[("cookie", &cookie)]).await.status, 200);
    assert_eq!(me_with(&d, &[]).await.status, 401);

    // Logout expires it with the other cookies.
    let out = answer(
        d.request(Method::POST, "/auth/logout")
            .bearer_auth(d.access.as_deref().unwrap())
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text);
    assert_eq!(out.cookie("__Host-sesame_fp").as_deref(), Some(""));

    // Bearer clients have no cookie jar: their tokens are not cookie-bound.
    let mut app = srv.device();
    let a = app
        .login_as("fp@example.com", PASSWORD, Some("bearer"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.cookie("__Host-sesame_fp").is_none());
    assert!(payload(app.access.as_deref().unwrap())["cnf"].is_null());
    assert_eq!(me_with(&app, &[]).await.status, 200);
}

#[tokio::test]
async fn ip_ua_binding_follows_the_user_agent_and_trusted_proxies_only() {
    let srv = TestServer::with(|raw| {
        raw.binding = Some("ip_ua".into());
        raw.trusted_proxies = Some(vec!["127.0.0.1/32".into()]);
    })
    .await;
    let mut d = srv.device();
    // Through the (trusted) proxy, from 203.0.113.10.
    let reg = answer(
        d.request(Method::POST, "/auth/register")
            .header("x-forwarded-for", "203.0.113.10")
            .json(&serde_json::json!({ "email": "ipua@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    d.absorb(&reg);
    assert!(payload(d.access.as_deref().unwrap())["cnf"]["ipua"].is_string());

    let from = |ip: &'static str| ("x-forwarded-for", ip);
    assert_eq!(me_with(&d, &[from("203.0.113.10")]).await.status, 200);
    // Same /24: still the client (a NAT pool, a DHCP renewal).
    assert_eq!(me_with(&d, &[from("203.0.113.77")]).await.status, 200);
    // Another network, or another browser: refused.
    assert_eq!(
        me_with(&d, &[from("198.51.100.4")]).await.code(),
        "invalid_token"
    );
    let mut other_ua = d.clone();
    other_ua.ua = "curl/8.5".into();
    assert_eq!(
        me_with(&other_ua, &[from("203.0.113.10")]).await.code(),
        "invalid_token"
    );
    // A client-written hop left of the proxy's is not believed: the
    // rightmost untrusted hop (the one the proxy saw) decides.
    assert_eq!(
        me_with(&d, &[from("198.51.100.4, 203.0.113.10")])
            .await
            .status,
        200
    );
    assert_eq!(
        me_with(&d, &[from("203.0.113.10, 198.51.100.4")])
            .await
            .code(),
        "invalid_token"
    );
}

#[tokio::test]
async fn spoofed_forwarded_for_is_ignored_without_trusted_proxies() {
    let srv = TestServer::with(|raw| raw.binding = Some("ip_ua".into())).await;
    let mut d = srv.device();
    assert_eq!(d.register("spoof@example.com").await.status, 201);
    // Bound to the socket address (127.0.0.1); the header is not believed.
    assert_eq!(
        me_with(&d, &[("x-forwarded-for", "198.51.100.4")])
            .await
            .status,
        200
    );
    let sessions = d.get("/auth/sessions").await;
    assert_eq!(sessions.body["sessions"][0]["ip"], "127.0.0.1");
}
