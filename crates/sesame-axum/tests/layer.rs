//! The layer against a stand-in for the Sesame server's two endpoints (the
//! JWKS and a scripted revocation feed), served on 127.0.0.1:0 inside each
//! test, and a protected app driven over real HTTP.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sesame_axum::{
    Authenticated, IpPrefixes, MaybeAuthenticated, OnStale, PublicKeys, SesameAuth,
    SesameAuthBuilder,
};
use sesame_core::binding::{self, BindingKeys};
use sesame_core::keys::initial_records;
use sesame_core::{
    Aal, AccessClaims, Clock, KeyRing, ManualClock, SessionId, SigningAlg, SystemClock, UserId,
    Verifier,
};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const ISSUER: &str = "http://sesame.test";
const AUDIENCE: &str = "sesame";
const SERVICE_KEY: &str = "svc-key";
const APP_ORIGIN: &str = "http://app.example";

// ---------------------------------------------------------------- fake Sesame

#[derive(Default)]
struct FeedCtl {
    accept: AtomicBool,
    on_connect: Mutex<String>,
    afters: Mutex<Vec<Option<String>>>,
    current: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

#[derive(Clone)]
struct Fake {
    jwks: Arc<RwLock<Value>>,
    jwks_hits: Arc<AtomicUsize>,
    jwks_fail: Arc<AtomicBool>,
    feed: Arc<FeedCtl>,
}

impl Fake {
    async fn start(jwks: Value) -> (Self, SocketAddr) {
        let fake = Fake {
            jwks: Arc::new(RwLock::new(jwks)),
            jwks_hits: Arc::default(),
            jwks_fail: Arc::default(),
            feed: Arc::new(FeedCtl {
                accept: AtomicBool::new(true),
                on_connect: Mutex::new("event: ready\ndata: {\"seq\": 0}\n\n".into()),
                ..Default::default()
            }),
        };
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .route("/auth/revocations", get(serve_feed))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (fake, addr)
    }

    /// Sends raw SSE text on the open feed connection.
    fn send(&self, text: &str) {
        let cur = self.feed.current.lock().unwrap();
        cur.as_ref()
            .expect("a feed connection")
            .send(text.into())
            .unwrap();
    }

    fn revoke(&self, seq: i64, sid: SessionId, reason: &str) {
        let data = json!({"seq": seq, "sid": sid, "reason": reason, "not_after": now() + 3600});
        self.send(&format!("event: revoked\nid: {seq}\ndata: {data}\n\n"));
    }

    /// Closes the open connection (the stream ends).
    fn drop_connection(&self) {
        self.feed.current.lock().unwrap().take();
    }

    fn afters(&self) -> Vec<Option<String>> {
        self.feed.afters.lock().unwrap().clone()
    }
}

async fn serve_jwks(State(f): State<Fake>) -> Response {
    f.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if f.jwks_fail.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = f.jwks.read().unwrap().clone();
    (
        [(
            header::CACHE_CONTROL,
            "public, max-age=300, must-revalidate",
        )],
        Json(body),
    )
        .into_response()
}

async fn serve_feed(
    State(f): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {SERVICE_KEY}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if !f.feed.accept.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    f.feed.afters.lock().unwrap().push(q.get("after").cloned());
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    tx.send(f.feed.on_connect.lock().unwrap().clone()).unwrap();
    *f.feed.current.lock().unwrap() = Some(tx);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|s| (Ok::<_, Infallible>(bytes::Bytes::from(s)), rx))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

// ---------------------------------------------------------------- the app

async fn me(a: Authenticated) -> Json<Value> {
    Json(json!({
        "user_id": a.user_id, "session_id": a.session_id, "aal": a.aal, "claims": &*a.claims,
    }))
}

async fn maybe(MaybeAuthenticated(a): MaybeAuthenticated) -> Json<Value> {
    Json(json!({ "user_id": a.map(|a| a.user_id) }))
}

struct Harness {
    fake: Fake,
    app: SocketAddr,
    ring: KeyRing,
    auth: SesameAuth,
    http: reqwest::Client,
}

fn ring() -> KeyRing {
    let mk = [3u8; 32];
    KeyRing::open(
        &initial_records(SigningAlg::EdDSA, now(), &mk).unwrap(),
        &mk,
    )
    .unwrap()
}

fn now() -> i64 {
    SystemClock.now()
}

impl Harness {
    /// A fake Sesame (JWKS + feed), a `SesameAuth` built against it with
    /// `configure` applied, and the app served with connect info.
    async fn start(configure: impl FnOnce(SesameAuthBuilder) -> SesameAuthBuilder) -> Self {
        let ring = ring();
        let (fake, fake_addr) = Fake::start(ring.jwks()).await;
        let builder = SesameAuth::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .jwks_url(format!("http://{fake_addr}/.well-known/jwks.json"))
            .revocation_feed(format!("http://{fake_addr}/auth/revocations"), SERVICE_KEY);
        let auth = configure(builder).build().await.unwrap();
        let app = Router::new()
            .route("/me", get(me).post(me))
            .route("/maybe", get(maybe))
            .layer(auth.layer())
            .merge(
                Router::new()
                    .route("/required", get(|| async { "in" }))
                    .layer(auth.layer().required()),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Harness {
            fake,
            app: addr,
            ring,
            auth,
            http: reqwest::Client::new(),
        }
    }

    fn token(&self, c: &AccessClaims) -> String {
        sign(&self.ring, c)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("http://{}{path}", self.app))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("http://{}{path}", self.app))
    }

    async fn bearer(&self, token: &str) -> reqwest::Response {
        self.get("/me").bearer_auth(token).send().await.unwrap()
    }
}

fn sign(ring: &KeyRing, c: &AccessClaims) -> String {
    Verifier::new(ISSUER, AUDIENCE, 60).sign(ring, c).unwrap()
}

fn claims() -> AccessClaims {
    let now = now();
    let mut ext = serde_json::Map::new();
    ext.insert("role".into(), json!("admin"));
    AccessClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: UserId::new(),
        sid: SessionId::random(),
        iat: now,
        exp: now + 600,
        jti: "jti".into(),
        auth_time: now,
        aal: Aal::Aal1,
        cnf: None,
        ext,
    }
}

/// Asserts a problem+json answer with `status` and `code`; returns the body.
async fn problem(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let h = res.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    if code == "invalid_token" {
        assert_eq!(
            h[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    } else {
        assert!(h.get(header::WWW_AUTHENTICATE).is_none());
    }
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("https://sesame.dev/problems/{code}"));
    assert!(body["title"].is_string());
    body
}

/// Polls `f` every 20 ms until it is true or `within` passes.
async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f().await
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn valid_token_gives_user_session_and_claims() {
    let h = Harness::start(|b| b).await;
    let c = claims();
    let res = h.bearer(&h.token(&c)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user_id"], json!(c.sub));
    assert_eq!(body["session_id"], json!(c.sid));
    assert_eq!(body["aal"], "aal1");
    assert_eq!(body["claims"]["role"], "admin");
    // The required layer lets it through too.
    let res = h
        .get("/required")
        .bearer_auth(h.token(&c))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn every_token_failure_is_the_same_401() {
    let h = Harness::start(|b| b).await;
    let other_ring = ring();
    let mut expired = claims();
    expired.iat -= 3600;
    expired.exp = now() - 120;
    let mut wrong_aud = claims();
    wrong_aud.aud = "other".into();
    let mut wrong_iss = claims();
    wrong_iss.iss = "http://evil.test".into();
    let valid = h.token(&claims());
    let mut tampered = valid.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("Bearer abc".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("basic scheme", Some(format!("Basic {valid}"))),
        ("expired", Some(format!("Bearer {}", h.token(&expired)))),
        ("wrong aud", Some(format!("Bearer {}", h.token(&wrong_aud)))),
        ("wrong iss", Some(format!("Bearer {}", h.token(&wrong_iss)))),
        (
            "unknown kid",
            Some(format!("Bearer {}", sign(&other_ring, &claims()))),
        ),
        (
            "bad signature",
            Some(format!("Bearer {}", String::from_utf8(tampered).unwrap())),
        ),
    ];
    for (name, authz) in cases {
        for path in ["/me", "/required"] {
            let mut req = h.get(path);
            if let Some(a) = &authz {
                req = req.header(header::AUTHORIZATION, a);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{name} on {path}");
            problem(res, 401, "invalid_token").await;
        }
    }
}

#[tokio::test]
async fn optional_extractor_none_without_token_401_with_a_bad_one() {
    let h = Harness::start(|b| b).await;
    let res = h.get("/maybe").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["user_id"], Value::Null);
    let res = h
        .get("/maybe")
        .bearer_auth("abc.def.ghi")
        .send()
        .await
        .unwrap();
    problem(res, 401, "invalid_token").await;
    let c = claims();
    let res = h
        .get("/maybe")
        .bearer_auth(h.token(&c))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["user_id"], json!(c.sub));
}

#[tokio::test]
async fn given_keys_verify_without_a_jwks() {
    let ring = ring();
    let (keys, _) = PublicKeys::from_jwks(&ring.jwks());
    let auth = SesameAuth::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(keys)
        .build()
        .await
        .unwrap();
    let app = Router::new().route("/me", get(me)).layer(auth.layer());
    let call = |token: String| {
        let app = app.clone();
        async move {
            use tower::ServiceExt;
            let req = axum::http::Request::get("/me")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    };
    assert_eq!(call(sign(&ring, &claims())).await, 200);
    assert_eq!(call(sign(&self::ring(), &claims())).await, 401);
    assert_eq!(auth.stats().jwks_fetches, 0);
}

#[tokio::test]
async fn build_refuses_missing_required_settings() {
    let err = SesameAuth::builder()
        .audience(AUDIENCE)
        .keys(PublicKeys::new())
        .build()
        .await;
    assert!(err.unwrap_err().to_string().starts_with("issuer:"));
    let err = SesameAuth::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .await;
    assert!(err.unwrap_err().to_string().starts_with("jwks_url:"));
    // An unreachable JWKS fails the build rather than starting blind.
    let err = SesameAuth::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url("http://127.0.0.1:9/jwks.json")
        .build()
        .await;
    assert!(matches!(err, Err(sesame_axum::Error::Jwks { .. })));
}

#[tokio::test]
async fn unknown_kid_triggers_a_refetch_and_the_rotated_key_is_accepted() {
    let h = Harness::start(|b| b).await;
    assert_eq!(h.fake.jwks_hits.load(Ordering::SeqCst), 1);
    // Rotate: the fake now publishes a new key as well.
    let next = ring();
    let mut keys = h.ring.jwks()["keys"].as_array().unwrap().clone();
    keys.extend(next.jwks()["keys"].as_array().unwrap().iter().cloned());
    *h.fake.jwks.write().unwrap() = json!({ "keys": keys });
    let res = h.bearer(&sign(&next, &claims())).await;
    assert_eq!(res.status(), 200);
    assert_eq!(h.fake.jwks_hits.load(Ordering::SeqCst), 2);
    assert_eq!(h.auth.stats().jwks_fetches, 2);
    assert_eq!(h.auth.stats().cache_misses, 1, "one request, one miss");
    // The old key still works, without another fetch.
    assert_eq!(h.bearer(&h.token(&claims())).await.status(), 200);
    assert_eq!(h.fake.jwks_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_jwks_fetch_keeps_the_old_keys() {
    let h = Harness::start(|b| b).await;
    h.fake.jwks_fail.store(true, Ordering::SeqCst);
    // An unknown kid makes it refetch, which fails...
    assert_eq!(h.bearer(&sign(&ring(), &claims())).await.status(), 401);
    assert_eq!(h.fake.jwks_hits.load(Ordering::SeqCst), 2);
    // ...and a new token of the old key (a cache miss) still verifies.
    assert_eq!(h.bearer(&h.token(&claims())).await.status(), 200);
}

#[tokio::test]
async fn a_withdrawn_key_stops_its_cached_tokens() {
    let h = Harness::start(|b| b).await;
    let old = h.token(&claims());
    assert_eq!(h.bearer(&old).await.status(), 200);
    // `keys rotate --revoke-old`: the JWKS now has only the new key.
    let next = ring();
    *h.fake.jwks.write().unwrap() = next.jwks();
    assert_eq!(h.bearer(&sign(&next, &claims())).await.status(), 200);
    problem(h.bearer(&old).await, 401, "invalid_token").await;
}

#[tokio::test]
async fn a_burst_of_garbage_kids_costs_at_most_one_fetch_per_interval() {
    let h = Harness::start(|b| b.jwks_refetch_interval(Duration::from_secs(5))).await;
    let stranger = ring();
    let burst = |n: usize| {
        let tokens: Vec<String> = (0..n).map(|_| sign(&stranger, &claims())).collect();
        let h = &h;
        async move {
            let futs = tokens
                .iter()
                .map(|t| async move { h.bearer(t).await.status() });
            futures_util::future::join_all(futs).await
        }
    };
    let statuses = burst(30).await;
    assert!(statuses.iter().all(|s| *s == 401));
    assert_eq!(
        h.fake.jwks_hits.load(Ordering::SeqCst),
        2,
        "one refetch for the burst"
    );
    let statuses = burst(30).await;
    assert!(statuses.iter().all(|s| *s == 401));
    assert_eq!(
        h.fake.jwks_hits.load(Ordering::SeqCst),
        2,
        "none within the interval"
    );
}

#[tokio::test]
async fn cache_counts_hits_and_misses() {
    let h = Harness::start(|b| b).await;
    let t = h.token(&claims());
    assert_eq!(h.bearer(&t).await.status(), 200);
    assert_eq!(h.bearer(&t).await.status(), 200);
    let s = h.auth.stats();
    assert_eq!((s.cache_misses, s.cache_hits), (1, 1));
    // A refused token is never cached: each try is a miss.
    assert_eq!(h.bearer("a.b.c").await.status(), 401);
    assert_eq!(h.bearer("a.b.c").await.status(), 401);
    let s = h.auth.stats();
    assert_eq!((s.cache_misses, s.cache_hits), (3, 1));
    assert_eq!(s.cached_tokens, 1);
}

#[tokio::test]
async fn an_expired_token_is_refused_on_a_cache_hit() {
    let clock = ManualClock::new(now());
    let h = Harness::start({
        let clock = clock.clone();
        |b| b.clock(clock).leeway(0)
    })
    .await;
    let c = claims();
    let t = h.token(&c);
    assert_eq!(h.bearer(&t).await.status(), 200);
    clock.set(c.exp - 1);
    assert_eq!(h.bearer(&t).await.status(), 200);
    clock.set(c.exp);
    problem(h.bearer(&t).await, 401, "invalid_token").await;
    let s = h.auth.stats();
    assert_eq!(
        (s.cache_misses, s.cache_hits),
        (1, 2),
        "the refusal came from the cache"
    );
}

#[tokio::test]
async fn a_revocation_on_the_feed_refuses_the_cached_token_within_a_second() {
    let h = Harness::start(|b| b).await;
    let c = claims();
    let t = h.token(&c);
    assert_eq!(h.bearer(&t).await.status(), 200);
    let started = Instant::now();
    h.fake.revoke(1, c.sid, "logout");
    assert!(
        eventually(Duration::from_secs(1), async || h.bearer(&t).await.status()
            == 401)
        .await,
        "still accepted after 1 s"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    let body = problem(h.bearer(&t).await, 401, "session_revoked").await;
    assert_eq!(body["reason"], "logout");
    // Another session is unaffected.
    assert_eq!(h.bearer(&h.token(&claims())).await.status(), 200);
    // An unknown reason still revokes.
    let c2 = claims();
    h.fake.revoke(2, c2.sid, "some_future_reason");
    let t2 = h.token(&c2);
    assert!(
        eventually(Duration::from_secs(1), async || h
            .bearer(&t2)
            .await
            .status()
            == 401)
        .await
    );
    let body = problem(h.bearer(&t2).await, 401, "session_revoked").await;
    assert_eq!(body["reason"], "revoked");
    assert_eq!(h.auth.stats().revoked_sessions, 2);
}

#[tokio::test]
async fn heartbeats_prune_revocations_past_not_after() {
    let clock = ManualClock::new(now());
    let h = Harness::start({
        let clock = clock.clone();
        |b| b.clock(clock)
    })
    .await;
    let t0 = clock.now();
    for (seq, ttl) in [(1, 10), (2, 100)] {
        let data = json!({"seq": seq, "sid": SessionId::random(), "reason": "logout", "not_after": t0 + ttl});
        h.fake.send(&format!("event: revoked\ndata: {data}\n\n"));
    }
    assert!(
        eventually(Duration::from_secs(1), async || h
            .auth
            .stats()
            .revoked_sessions
            == 2)
        .await
    );
    clock.set(t0 + 10);
    h.fake
        .send("event: heartbeat\ndata: {\"seq\": 2, \"now\": 0}\n\n");
    assert!(
        eventually(Duration::from_secs(1), async || h
            .auth
            .stats()
            .revoked_sessions
            == 1)
        .await
    );
}

#[tokio::test]
async fn an_extractor_without_the_layer_refuses_with_500() {
    use tower::ServiceExt;
    let app = Router::new().route("/me", get(me));
    let req = axum::http::Request::get("/me")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 500);
}

#[tokio::test]
async fn the_snapshot_before_ready_is_applied() {
    let ring = ring();
    let c = claims();
    let (fake, addr) = Fake::start(ring.jwks()).await;
    *fake.feed.on_connect.lock().unwrap() = format!(
        "event: revoked\r\nid: 4\r\ndata: {}\r\n\r\n: comment\r\nevent: something_new\r\ndata: x\r\n\r\nevent: ready\r\ndata: {{\"seq\": 4}}\r\n\r\n",
        json!({"seq": 4, "sid": c.sid, "reason": "reuse_detected", "not_after": now() + 600})
    );
    let auth = SesameAuth::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url(format!("http://{addr}/.well-known/jwks.json"))
        .revocation_feed(format!("http://{addr}/auth/revocations"), SERVICE_KEY)
        .build()
        .await
        .unwrap();
    // `build` waited for `ready`, so the snapshot is in before any request.
    let s = auth.stats();
    assert!(s.feed_connected);
    assert_eq!(s.last_seq, Some(4));
    assert_eq!(s.revoked_sessions, 1);
    assert_eq!(fake.afters(), vec![None], "first connect has no `after`");
}

#[tokio::test]
async fn a_dropped_feed_reconnects_after_the_last_seq() {
    let h = Harness::start(|b| b).await;
    assert_eq!(h.fake.afters(), vec![None]);
    h.fake.revoke(7, SessionId::random(), "logout");
    assert!(
        eventually(Duration::from_secs(1), async || h.auth.stats().last_seq
            == Some(7))
        .await
    );
    h.fake.drop_connection();
    assert!(
        eventually(Duration::from_secs(2), async || h.fake.afters().len() == 2).await,
        "no reconnect"
    );
    assert_eq!(h.fake.afters()[1].as_deref(), Some("7"));
    assert!(
        eventually(Duration::from_secs(1), async || h
            .auth
            .stats()
            .feed_connected)
        .await
    );
}

#[tokio::test]
async fn a_wrong_service_key_never_connects() {
    let ring = ring();
    let (fake, addr) = Fake::start(ring.jwks()).await;
    let auth = SesameAuth::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url(format!("http://{addr}/.well-known/jwks.json"))
        .revocation_feed(format!("http://{addr}/auth/revocations"), "wrong")
        .build()
        .await
        .unwrap();
    let s = auth.stats();
    assert!(!s.feed_connected);
    assert!(fake.afters().is_empty());
}

async fn stale_harness(on_stale: OnStale) -> Harness {
    let h = Harness::start(|b| {
        b.revocation_max_staleness(Duration::from_secs(1))
            .on_stale(on_stale)
    })
    .await;
    // Heartbeats keep it fresh past the allowance.
    for seq in 0..8 {
        h.fake.send(&format!(
            "event: heartbeat\ndata: {{\"seq\": 0, \"now\": {}}}\n\n",
            now() + seq
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!h.auth.stats().feed_stale);
    assert_eq!(h.bearer(&h.token(&claims())).await.status(), 200);
    assert_eq!(h.auth.stats().stale_open, 0);
    // Now the feed goes away and refuses reconnections.
    h.fake.feed.accept.store(false, Ordering::SeqCst);
    h.fake.drop_connection();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(h.auth.stats().feed_stale);
    h
}

#[tokio::test]
async fn stale_feed_closed_answers_503() {
    let h = stale_harness(OnStale::Closed).await;
    let t = h.token(&claims());
    problem(h.bearer(&t).await, 503, "revocation_feed_stale").await;
    let res = h.get("/required").bearer_auth(&t).send().await.unwrap();
    problem(res, 503, "revocation_feed_stale").await;
    // A request without a token is not about revocation: still 401.
    problem(h.get("/me").send().await.unwrap(), 401, "invalid_token").await;
}

#[tokio::test]
async fn stale_feed_open_allows_and_counts() {
    let h = stale_harness(OnStale::Open).await;
    assert_eq!(h.bearer(&h.token(&claims())).await.status(), 200);
    assert!(h.auth.stats().stale_open > 0);
}

#[tokio::test]
async fn cookie_mode_and_the_origin_rule() {
    let h = Harness::start(|b| b.cookies([APP_ORIGIN])).await;
    let t = h.token(&claims());
    let cookie = format!("__Host-sesame_at={t}");
    let res = h
        .get("/me")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Unsafe methods need an allowed Origin (or Referer).
    let post = |origin: Option<(&'static str, &'static str)>| {
        let mut r = h.post("/me").header(header::COOKIE, &cookie);
        if let Some((k, v)) = origin {
            r = r.header(k, v);
        }
        r.send()
    };
    problem(post(None).await.unwrap(), 403, "csrf_rejected").await;
    problem(
        post(Some(("origin", "http://evil.example"))).await.unwrap(),
        403,
        "csrf_rejected",
    )
    .await;
    problem(
        post(Some(("origin", "null"))).await.unwrap(),
        403,
        "csrf_rejected",
    )
    .await;
    assert_eq!(
        post(Some(("origin", APP_ORIGIN))).await.unwrap().status(),
        200
    );
    assert_eq!(
        post(Some(("referer", "http://app.example/page")))
            .await
            .unwrap()
            .status(),
        200
    );
    // Bearer requests need no Origin.
    let res = h.post("/me").bearer_auth(&t).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // With Authorization present the cookie is ignored (even a bad one).
    let res = h
        .get("/me")
        .bearer_auth(&t)
        .header(header::COOKIE, "__Host-sesame_at=garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The same cookie twice: 400, on any route.
    let twice = format!("{cookie}; __Host-sesame_at={t}");
    let res = h
        .get("/me")
        .header(header::COOKIE, &twice)
        .send()
        .await
        .unwrap();
    problem(res, 400, "duplicate_cookie").await;
    let res = h
        .get("/maybe")
        .header(header::COOKIE, &twice)
        .send()
        .await
        .unwrap();
    problem(res, 400, "duplicate_cookie").await;
}

#[tokio::test]
async fn cookies_are_ignored_unless_enabled() {
    let h = Harness::start(|b| b).await;
    let t = h.token(&claims());
    let res = h
        .get("/me")
        .header(header::COOKIE, format!("__Host-sesame_at={t}"))
        .send()
        .await
        .unwrap();
    problem(res, 401, "invalid_token").await;
}

#[tokio::test]
async fn cookie_bound_token_needs_the_fingerprint_cookie() {
    let h = Harness::start(|b| b).await;
    let fp = "fingerprint-value-0123456789";
    let mut c = claims();
    c.cnf = Some(binding::cnf_fp(fp));
    let t = h.token(&c);
    problem(h.bearer(&t).await, 401, "invalid_token").await;
    let with = |cookie: String| {
        h.get("/me")
            .bearer_auth(&t)
            .header(header::COOKIE, cookie)
            .send()
    };
    problem(
        with("__Host-sesame_fp=wrong".into()).await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    assert_eq!(
        with(format!("__Host-sesame_fp={fp}"))
            .await
            .unwrap()
            .status(),
        200
    );
    let res = with(format!("__Host-sesame_fp={fp}; __Host-sesame_fp={fp}"))
        .await
        .unwrap();
    problem(res, 400, "duplicate_cookie").await;
    // Binding is checked on cache hits too.
    assert!(h.auth.stats().cache_hits >= 3);
}

#[tokio::test]
async fn ip_ua_bound_token_follows_the_socket_address_and_user_agent() {
    let key = [9u8; 32];
    let tag = BindingKeys::derive(&key).ip_ua_tag(
        Some("127.0.0.1".parse().unwrap()),
        "test-agent",
        IpPrefixes::default(),
    );
    let mut c = claims();
    c.cnf = Some(binding::cnf_ip_ua(&tag));

    let h = Harness::start(|b| b.binding_ip_ua(&key, IpPrefixes::default())).await;
    let t = h.token(&c);
    let req = |ua: &'static str| h.get("/me").bearer_auth(&t).header(header::USER_AGENT, ua);
    assert_eq!(req("test-agent").send().await.unwrap().status(), 200);
    problem(
        req("other-agent").send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    // 127.0.0.1 is not a trusted proxy: a spoofed X-Forwarded-For is ignored.
    let res = req("test-agent")
        .header("x-forwarded-for", "203.0.113.9")
        .header("forwarded", "for=203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // When the peer is a trusted proxy, the forwarded address counts.
    let h2 = Harness::start(|b| {
        b.binding_ip_ua(&key, IpPrefixes::default())
            .trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()])
    })
    .await;
    let t2 = h2.token(&c);
    let res = h2
        .get("/me")
        .bearer_auth(&t2)
        .header(header::USER_AGENT, "test-agent")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    problem(res, 401, "invalid_token").await;

    // Without the binding key an ip_ua-bound token cannot be checked: refused.
    let h3 = Harness::start(|b| b).await;
    let res = h3
        .get("/me")
        .bearer_auth(h3.token(&c))
        .header(header::USER_AGENT, "test-agent")
        .send()
        .await
        .unwrap();
    problem(res, 401, "invalid_token").await;
}

#[tokio::test]
async fn background_tasks_stop_when_the_last_clone_is_dropped() {
    let ring = ring();
    let (fake, addr) = Fake::start(ring.jwks()).await;
    let auth = SesameAuth::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url(format!("http://{addr}/.well-known/jwks.json"))
        .revocation_feed(format!("http://{addr}/auth/revocations"), SERVICE_KEY)
        .build()
        .await
        .unwrap();
    let layer = auth.layer();
    drop(auth);
    let open = || {
        fake.feed
            .current
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(open(), "a layer still holds it: the feed stays connected");
    drop(layer);
    assert!(
        eventually(Duration::from_secs(2), async || !open()).await,
        "the feed connection outlived the last SesameAuth"
    );
}
