//! Sesame as a library: what the npm `session-jwt` package offers an Express
//! app, from Rust — the engine on an embedded SQLite store, no HTTP server.
//! Your program authenticates the user however it likes, then asks Sesame
//! for a session with application claims; Sesame mints the access token and
//! the one-time refresh token, rotates it, detects reuse, and revokes.
//!
//! Run with: `cargo run -p library-mode`
//!
//! In a real program the two keys come from your secret store, and the
//! database file persists; here both are generated for the demonstration.

use anyhow::{Context, bail};
use secrecy::SecretBox;
use sesame_core::clock::SystemClock;
use sesame_core::engine::{Engine, EngineConfig, EngineParts, LoginContext};
use sesame_core::password::{HashParams, InlineHasher};
use sesame_core::refresh::RefreshKeys;
use sesame_core::rotation::Channel;
use sesame_core::session::{DeviceInfo, RevokeReason, Transport};
use sesame_core::{Error, crypto};
use sesame_store_sqlx::{SqliteStore, SqliteStoreOptions};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. A store (SQLite here; sesame-store-sqlx also has PostgreSQL and
    //    MariaDB, sesame-store-redis has Redis sessions).
    let dir = std::env::temp_dir().join(format!("sesame-library-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("sessions.db").display());
    let clock = Arc::new(SystemClock);
    let store = Arc::new(SqliteStore::open(&SqliteStoreOptions::new(url), clock.clone()).await?);

    // 2. The engine: its two secrets, the store, and the defaults of DESIGN §1–§3.
    let refresh_key = SecretBox::new(Box::from(&crypto::random::<32>()[..]));
    let engine = Engine::start(
        EngineParts {
            accounts: store.clone(),
            sessions: store.clone(),
            clock,
            hasher: Arc::new(InlineHasher(HashParams::OWASP)),
            refresh_keys: RefreshKeys::new(vec![(1, refresh_key)])?,
            master_key: zeroize::Zeroizing::new(crypto::random::<32>()),
            generate_missing_keys: true,
            on_revoked: None,
            on_notice: None,
        },
        EngineConfig::new("https://app.example", "my-api"),
    )
    .await
    .context("starting the engine")?;

    // 3. Your code authenticated "customer-42" (OAuth, SSO, magic link…):
    //    open a session for that id, with claims for your other services.
    let browser = LoginContext {
        device: DeviceInfo {
            ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into()),
        },
        transport: Transport::Bearer,
        replaces: None,
    };
    let claims = serde_json::Map::from_iter([
        ("role".to_string(), serde_json::json!("editor")),
        ("tenant".to_string(), serde_json::json!("acme")),
    ]);
    let grant = engine
        .create_external_session("customer-42", claims, &browser)
        .await?;
    println!(
        "session {} for user {} (external id {:?})",
        grant.session.id,
        grant.user.id,
        grant.user.external_id().map(|x| x.as_str())
    );
    println!("access token: {}…", &grant.access_token[..40]);

    // 4. Any service verifies the access token locally (here: the engine;
    //    elsewhere: the JWKS at engine.jwks() and the sesame-axum layer).
    let verified = engine.authenticate(&grant.access_token).await?;
    println!(
        "verified: sub {} sid {} role {}",
        verified.user_id(),
        verified.session_id(),
        verified.claims().ext["role"]
    );

    // 5. Refresh: the refresh token is one-time; each use rotates it.
    let first = grant.refresh_token.clone();
    let rotated = engine
        .refresh(&first, Channel::Body, &browser.device)
        .await?;
    assert_ne!(rotated.refresh_token, first);
    println!("refreshed: a new access token and a new refresh token; the old one is spent");
    // Presenting the old token again from another client is reuse: the
    // session is revoked (a thief and the user cannot both keep it).
    let thief = DeviceInfo {
        ip: Some("198.51.100.9".into()),
        user_agent: Some("curl/8.5".into()),
    };
    match engine.refresh(&first, Channel::Body, &thief).await {
        Err(Error::RefreshTokenReused(class)) => {
            println!(
                "replayed refresh token: reuse detected ({}), session revoked",
                class.as_str()
            );
        }
        other => bail!("expected reuse detection, got {other:?}"),
    }
    match engine.authenticate(&rotated.access_token).await {
        Err(Error::SessionRevoked(RevokeReason::ReuseDetected)) => {
            println!("the session's access tokens now fail: session_revoked (reuse_detected)");
        }
        other => bail!("expected a revoked session, got {other:?}"),
    }

    // 6. A new session, then logout everywhere for that user.
    let again = engine
        .create_external_session("customer-42", Default::default(), &browser)
        .await?;
    let n = engine
        .revoke_user_sessions(again.user.id, None, RevokeReason::Logout, None)
        .await?;
    println!("logout everywhere: {n} session(s) revoked");
    assert!(engine.authenticate(&again.access_token).await.is_err());

    store.close().await;
    std::fs::remove_dir_all(&dir)?;
    println!("ok");
    Ok(())
}
