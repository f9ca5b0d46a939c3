//! A resource server protected by `sesame-axum`, beside a real `sesame`
//! server, through HTTP on both sides: a revocation made at Sesame reaches
//! the resource server's still-unexpired token within a second; a cut feed
//! is reported stale and, with `on_stale = closed`, refuses; a Sesame restart
//! in the middle of the stream loses no revocation; binding and key rotation
//! work across the two.

mod common;

use axum::Router;
use axum::routing::get;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sesame_axum::{Authenticated, IpPrefixes, OnStale, SesameAuth, SesameAuthBuilder};
use sesame_server::server::new_api_key;
use sesame_store_tests::proxy::FaultProxy;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A running resource server.
struct Api {
    base: String,
    auth: SesameAuth,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hello(a: Authenticated) -> axum::Json<Value> {
    axum::Json(json!({ "user_id": a.user_id, "session_id": a.session_id, "claims": &*a.claims }))
}

/// The layer pointed at `srv` (JWKS direct; the feed at `feed_base`).
fn builder(srv: &TestServer, feed_base: &str, key: &str) -> SesameAuthBuilder {
    SesameAuth::builder()
        .issuer(srv.origin())
        .audience("sesame")
        .jwks_url(format!("{}/.well-known/jwks.json", srv.base))
        .revocation_feed(format!("{feed_base}/auth/revocations"), key.to_string())
        .clock(srv.clock.clone())
}

async fn api(auth: SesameAuth) -> Api {
    let app = Router::new()
        .route("/api/hello", get(hello))
        .layer(auth.layer().required());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Api { base, auth, task }
}

async fn call(api: &Api, token: &str, extra: &[(&str, &str)]) -> Answer {
    let mut rb = reqwest::Client::new()
        .get(format!("{}/api/hello", api.base))
        .header("user-agent", UA)
        .bearer_auth(token);
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    answer(rb.send().await.unwrap()).await
}

async fn sesame(
    extra: impl Fn(&mut sesame_server::config::RawConfig) + Send + Sync + 'static,
) -> (TestServer, String) {
    let k = new_api_key();
    let hash = k.hash.clone();
    let srv = TestServer::with(move |raw| {
        raw.service_api_keys = Some(vec![hash.clone()]);
        raw.revocation_feed_heartbeat = Some("1s".into());
        extra(raw);
    })
    .await;
    (srv, k.key)
}

/// Polls the resource server until it refuses `token`.
async fn until_refused(api: &Api, token: &str, limit: Duration) -> (Duration, Answer) {
    let t = Instant::now();
    loop {
        let a = call(api, token, &[]).await;
        if a.status != 200 {
            return (t.elapsed(), a);
        }
        assert!(t.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_revocation_reaches_the_resource_server_within_a_second() {
    let (srv, key) = sesame(|_| {}).await;
    let api = api(builder(&srv, &srv.base, &key).build().await.unwrap()).await;
    let mut latencies = Vec::new();
    for i in 0..20 {
        let mut d = srv.device();
        assert_eq!(d.register(&format!("rs{i}@example.com")).await.status, 201);
        let token = d.access.clone().unwrap();
        let ok = call(&api, &token, &[]).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.body["session_id"], d.me().await.body["session"]["id"]);
        // Cached now: a second call is a cache hit.
        assert_eq!(call(&api, &token, &[]).await.status, 200);

        let t = Instant::now();
        assert_eq!(d.post("/auth/logout", None).await.status, 204);
        let (_, refused) = until_refused(&api, &token, Duration::from_secs(3)).await;
        latencies.push(t.elapsed());
        assert_eq!(
            (refused.status.as_u16(), refused.code()),
            (401, "session_revoked")
        );
        assert_eq!(refused.body["reason"], "logout");
        assert!(refused.is_problem());
    }
    latencies.sort();
    eprintln!(
        "revoke at Sesame → refused by the resource server: p50 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(1),
        "{latencies:?}"
    );
    let stats = api.auth.stats();
    assert!(stats.cache_hits >= 20, "{stats:?}");
    assert!(stats.feed_connected && !stats.feed_stale, "{stats:?}");
    assert!(stats.revoked_sessions >= 20, "{stats:?}");
}

#[tokio::test]
async fn a_cut_feed_is_stale_and_closed_refuses_until_it_is_back() {
    let (srv, key) = sesame(|_| {}).await;
    let proxy = FaultProxy::start(srv.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let auth = builder(&srv, &format!("http://{}", proxy.addr()), &key)
        .revocation_max_staleness(Duration::from_secs(2))
        .on_stale(OnStale::Closed)
        .build()
        .await
        .unwrap();
    let api = api(auth).await;
    let mut d = srv.device();
    d.register("stale@example.com").await;
    let token = d.access.clone().unwrap();
    assert_eq!(call(&api, &token, &[]).await.status, 200);

    proxy.cut();
    let (took, a) = until_refused(&api, &token, Duration::from_secs(6)).await;
    assert_eq!(
        (a.status.as_u16(), a.code()),
        (503, "revocation_feed_stale"),
        "{}",
        a.text
    );
    assert!(
        took >= Duration::from_secs(1),
        "stale only past max_staleness: {took:?}"
    );
    let s = api.auth.stats();
    assert!(s.feed_stale && !s.feed_connected, "{s:?}");

    // A revocation while the feed is down arrives when it is back.
    assert_eq!(d.post("/auth/logout", None).await.status, 204);
    proxy.restore();
    let t = Instant::now();
    loop {
        let a = call(&api, &token, &[]).await;
        if a.code() == "session_revoked" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{}", a.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!api.auth.stats().feed_stale);
}

#[tokio::test]
async fn a_sesame_restart_mid_stream_loses_no_revocation() {
    let (mut srv, key) = sesame(|_| {}).await;
    let api = api(builder(&srv, &srv.base, &key).build().await.unwrap()).await;
    let mut d = srv.device();
    d.register("restart@example.com").await;
    let token = d.access.clone().unwrap();
    assert_eq!(call(&api, &token, &[]).await.status, 200);
    let before = api.auth.stats().last_seq;

    // Another instance takes the revocation while this one is down.
    let other = srv.sibling().await;
    srv.halt().await;
    let mut d_other = d.clone();
    d_other.base = other.base.clone();
    assert_eq!(d_other.post("/auth/logout", None).await.status, 204);
    srv.resume().await;

    let (took, a) = until_refused(&api, &token, Duration::from_secs(10)).await;
    assert_eq!(a.code(), "session_revoked", "{}", a.text);
    eprintln!(
        "revocation during a Sesame restart reached the resource server {took:?} after it was back"
    );
    assert!(api.auth.stats().last_seq > before);
    other.stop().await;
}

#[tokio::test]
async fn cookie_binding_reaches_the_resource_server() {
    let (srv, key) = sesame(|raw| raw.binding = Some("cookie".into())).await;
    let api = api(builder(&srv, &srv.base, &key).build().await.unwrap()).await;
    let mut d = srv.device();
    let reg = d.register("bind@example.com").await;
    let fp = reg.cookie("__Host-sesame_fp").unwrap();
    let token = d.access.clone().unwrap();
    let cookie = format!("__Host-sesame_fp={fp}");
    assert_eq!(call(&api, &token, &[("cookie", &cookie)]).await.status, 200);
    // Stolen without the cookie, or with a forged one: refused (also on a cache hit).
    let stolen = call(&api, &token, &[]).await;
    assert_eq!(
        (stolen.status.as_u16(), stolen.code()),
        (401, "invalid_token")
    );
    assert_eq!(
        call(&api, &token, &[("cookie", "__Host-sesame_fp=x")])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn ip_ua_binding_with_the_shared_key() {
    let binding_key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80";
    let (srv, key) = sesame(move |raw| {
        raw.binding = Some("ip_ua".into());
        raw.binding_key = Some(binding_key.to_string().into());
    })
    .await;
    let bytes = sesame_core::crypto::b64_decode(binding_key).unwrap();
    let auth = builder(&srv, &srv.base, &key)
        .binding_ip_ua(&bytes, IpPrefixes::default())
        .build()
        .await
        .unwrap();
    let api = api(auth).await;
    let mut d = srv.device();
    d.register("ipua-rs@example.com").await;
    let token = d.access.clone().unwrap();
    assert_eq!(call(&api, &token, &[]).await.status, 200);
    // A spoofed X-Forwarded-For from an untrusted peer is ignored by both.
    assert_eq!(
        call(&api, &token, &[("x-forwarded-for", "198.51.100.9")])
            .await
            .status,
        200
    );
    // Another user agent: refused.
    let moved = answer(
        reqwest::Client::new()
            .get(format!("{}/api/hello", api.base))
            .header("user-agent", "curl/8.5")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (moved.status.as_u16(), moved.code()),
        (401, "invalid_token")
    );

    // A layer without the key cannot check ip_ua tokens and refuses them.
    let keyless = api_keyless(&srv, &key).await;
    assert_eq!(call(&keyless, &token, &[]).await.status, 401);
}

async fn api_keyless(srv: &TestServer, key: &str) -> Api {
    api(builder(srv, &srv.base, key).build().await.unwrap()).await
}

#[tokio::test]
async fn a_key_rotation_at_sesame_is_picked_up_on_the_unknown_kid() {
    let admin = new_api_key();
    let hash = admin.hash.clone();
    let (srv, key) = sesame(move |raw| raw.admin_api_keys = Some(vec![hash.clone()])).await;
    let api = api(builder(&srv, &srv.base, &key).build().await.unwrap()).await;
    let mut d = srv.device();
    d.register("rot@example.com").await;
    assert_eq!(
        call(&api, d.access.as_deref().unwrap(), &[]).await.status,
        200
    );
    let fetches = api.auth.stats().jwks_fetches;
    let rotate = || async {
        let r = answer(
            reqwest::Client::new()
                .request(Method::POST, format!("{}/admin/keys/rotate", srv.base))
                .bearer_auth(&admin.key)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    };
    // One rotation: the new active key was published as `next` before it
    // signed, so the layer already has it — no fetch needed.
    rotate().await;
    assert_eq!(
        call(&api, d.access.as_deref().unwrap(), &[]).await.status,
        200
    );
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(
        call(&api, d.access.as_deref().unwrap(), &[]).await.status,
        200
    );
    assert_eq!(api.auth.stats().jwks_fetches, fetches);
    // Two rotations in a row (faster than a JWKS cache lifetime): the
    // signing key is one the layer never saw; the unknown kid makes it
    // refetch once, and the token is accepted.
    rotate().await;
    assert_eq!(d.refresh().await.status, 200);
    let a = call(&api, d.access.as_deref().unwrap(), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(api.auth.stats().jwks_fetches, fetches + 1);
}
