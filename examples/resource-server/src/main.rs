//! Run with: `cargo run -p resource-server` beside a running `sesame serve`
//! (see this directory's README.md).
//!
//! A small service protected by `sesame-axum`: `GET /healthz` is public,
//! `GET /api/hello` needs a Sesame access token, `GET /api/bare` is the same
//! handler shape with no authentication (the benchmark baseline), and
//! `GET /api/stats` shows the layer's counters to loopback clients only.
//!
//! Configuration (environment):
//! - `SESAME_URL` (default `http://127.0.0.1:8080`): JWKS at
//!   `{SESAME_URL}/.well-known/jwks.json`, revocation feed at
//!   `{SESAME_URL}/auth/revocations`;
//! - `SESAME_ISSUER` (default: the origin of `SESAME_URL`);
//! - `SESAME_AUDIENCE` (default `sesame`);
//! - `SESAME_SERVICE_API_KEY` (optional; without it there is no revocation
//!   feed and revoked sessions work until their tokens expire);
//! - `BIND` (default `127.0.0.1:3000`).

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{Value, json};
use sesame_axum::{Aal, AccessClaims, Authenticated, SesameAuth, SessionId, UserId};
use std::net::SocketAddr;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sesame_axum=info".into()),
        )
        .init();

    let sesame_url = std::env::var("SESAME_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8080".into())
        .trim_end_matches('/')
        .to_owned();
    let parsed = url::Url::parse(&sesame_url).context("SESAME_URL is not a URL")?;
    let issuer = match std::env::var("SESAME_ISSUER") {
        Ok(i) => i,
        Err(_) => parsed.origin().ascii_serialization(),
    };
    let audience = std::env::var("SESAME_AUDIENCE").unwrap_or_else(|_| "sesame".into());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());

    let mut builder = SesameAuth::builder()
        .issuer(issuer)
        .audience(audience)
        .jwks_url(format!("{sesame_url}/.well-known/jwks.json"));
    match std::env::var("SESAME_SERVICE_API_KEY") {
        Ok(key) if !key.is_empty() => {
            builder = builder.revocation_feed(format!("{sesame_url}/auth/revocations"), key);
        }
        _ => tracing::warn!(
            "SESAME_SERVICE_API_KEY is not set: no revocation feed, revoked sessions work until their tokens expire"
        ),
    }
    let auth = builder
        .build()
        .await
        .context("starting Sesame authentication")?;

    let app = app(auth);
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    println!(
        "resource-server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

fn app(auth: SesameAuth) -> Router {
    let protected = Router::new()
        .route("/api/hello", get(hello))
        .layer(auth.layer().required());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/bare", get(bare))
        .route("/api/stats", get(stats))
        .merge(protected)
        .layer(Extension(auth))
}

async fn hello(a: Authenticated) -> Json<Value> {
    Json(json!({
        "user_id": a.user_id,
        "session_id": a.session_id,
        "aal": a.aal,
        "claims": &*a.claims,
    }))
}

/// The same work as `hello` without authentication, for benchmarks: the
/// same JSON shape serialised from claims of the same size, so the
/// difference between the two routes is the layer alone.
async fn bare() -> Json<Value> {
    let c = &*SAMPLE;
    Json(json!({
        "user_id": c.sub,
        "session_id": c.sid,
        "aal": c.aal,
        "claims": c,
    }))
}

/// Claims shaped like the ones Sesame issues, for `bare`.
static SAMPLE: std::sync::LazyLock<AccessClaims> = std::sync::LazyLock::new(|| AccessClaims {
    iss: "http://127.0.0.1:8080".into(),
    aud: "sesame".into(),
    sub: UserId::from_bytes([1; 16]),
    sid: SessionId::from_bytes([2; 16]),
    iat: 1_790_000_000,
    exp: 1_790_000_600,
    jti: "8TVSlgE0zsret10FDAw14g".into(),
    auth_time: 1_790_000_000,
    aal: Aal::Aal1,
    cnf: None,
    ext: Default::default(),
});

/// The layer's counters, to loopback clients only.
async fn stats(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(auth): Extension<SesameAuth>,
) -> Response {
    if !peer.ip().is_loopback() {
        return StatusCode::NOT_FOUND.into_response();
    }
    Json(auth.stats()).into_response()
}
