//! Rate limits through HTTP: per IP and per account on login, per IP on
//! register, per IP and per session on refresh — 429 `rate_limited` with
//! `Retry-After`; the progressive delay per account and network, which
//! never locks the owner out from elsewhere; and two instances enforcing one
//! limit through Redis.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use sesame_server::config::RawConfig;
use std::time::Duration;

fn limited(raw: &mut RawConfig) {
    raw.rate_limits = Some(true);
    raw.trusted_proxies = Some(vec!["127.0.0.1/32".into()]);
}

async fn login_from(d: &Device, ip: &str, email: &str, password: &str) -> Answer {
    answer(
        d.request(Method::POST, "/auth/login")
            .header("x-forwarded-for", ip)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn assert_limited(a: &Answer) -> u64 {
    assert_eq!(
        (a.status.as_u16(), a.code()),
        (429, "rate_limited"),
        "{}",
        a.text
    );
    assert!(a.is_problem());
    let secs: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&secs), "{secs}");
    secs
}

#[tokio::test]
async fn login_per_ip_then_per_account() {
    let srv = TestServer::with(|raw| {
        limited(raw);
        raw.rate_limit_login_ip = Some("3/1m".into());
        raw.rate_limit_login_account = Some("5/1m".into());
        raw.login_delay_after = Some(100);
    })
    .await;
    let mut d = srv.device();
    assert_eq!(d.register("ann@example.com").await.status, 201);

    // Per IP: three attempts, then 429 — whatever the account.
    for _ in 0..3 {
        let a = login_from(&d, "203.0.113.1", "nobody@example.com", "wrong password").await;
        assert_eq!(a.code(), "invalid_credentials");
    }
    let secs = assert_limited(&login_from(&d, "203.0.113.1", "ann@example.com", PASSWORD).await);
    assert!(secs <= 20, "{secs}");
    // Another IP is not affected.
    assert_eq!(
        login_from(&d, "203.0.113.2", "ann@example.com", PASSWORD)
            .await
            .status,
        200
    );

    // Per account, across IPs: five attempts on ann (one above), then 429
    // from any address, while another account still works.
    for i in 0..4 {
        let a = login_from(
            &d,
            &format!("198.51.100.{i}"),
            "ann@example.com",
            "wrong password",
        )
        .await;
        assert_eq!(a.code(), "invalid_credentials", "{i}");
    }
    assert_limited(&login_from(&d, "192.0.2.50", "ANN@example.com", PASSWORD).await);
    let mut bob = srv.device();
    assert_eq!(bob.register("bob@example.com").await.status, 201);
    assert_eq!(
        login_from(&d, "192.0.2.51", "bob@example.com", PASSWORD)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn progressive_delay_is_per_network_bounded_and_cleared_by_success() {
    let srv = TestServer::with(|raw| {
        limited(raw);
        raw.login_delay_after = Some(2);
        raw.login_delay_max = Some("2s".into());
    })
    .await;
    let mut d = srv.device();
    d.register("cy@example.com").await;
    let attacker = "203.0.113.7";
    for _ in 0..2 {
        assert_eq!(
            login_from(&d, attacker, "cy@example.com", "wrong password")
                .await
                .code(),
            "invalid_credentials"
        );
    }
    // Delayed: even the right password waits (else the delay would not slow
    // guessing), and the whole /24 shares it.
    assert_eq!(
        assert_limited(&login_from(&d, attacker, "cy@example.com", PASSWORD).await),
        1
    );
    assert_limited(&login_from(&d, "203.0.113.99", "cy@example.com", PASSWORD).await);
    // The owner, elsewhere, is not delayed at all.
    assert_eq!(
        login_from(&d, "198.51.100.20", "cy@example.com", PASSWORD)
            .await
            .status,
        200
    );
    // More failures double the delay, up to the cap (2 s).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        login_from(&d, attacker, "cy@example.com", "wrong password")
            .await
            .code(),
        "invalid_credentials"
    );
    assert_eq!(
        assert_limited(&login_from(&d, attacker, "cy@example.com", PASSWORD).await),
        2
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // After the wait a correct password works and clears the record.
    assert_eq!(
        login_from(&d, attacker, "cy@example.com", PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(
        login_from(&d, attacker, "cy@example.com", "wrong password")
            .await
            .code(),
        "invalid_credentials"
    );
}

#[tokio::test]
async fn register_per_ip_and_refresh_per_session() {
    let srv = TestServer::with(|raw| {
        limited(raw);
        raw.rate_limit_register_ip = Some("2/1h".into());
        raw.rate_limit_refresh_session = Some("3/1m".into());
    })
    .await;
    let mut a = srv.device();
    assert_eq!(a.register("r1@example.com").await.status, 201);
    assert_eq!(srv.device().register("r2@example.com").await.status, 201);
    let third = srv.device().register("r3@example.com").await;
    assert_limited(&third);
    // Per address, across IPs (the per-account limit, 10/1m by default).
    for i in 0..9 {
        let taken = answer(
            srv.device()
                .request(Method::POST, "/auth/register")
                .header("x-forwarded-for", format!("192.0.2.{i}"))
                .json(&json!({ "email": "r1@example.com", "password": PASSWORD }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(taken.code(), "email_taken", "{i}");
    }
    let probed = answer(
        srv.device()
            .request(Method::POST, "/auth/register")
            .header("x-forwarded-for", "192.0.2.200")
            .json(&json!({ "email": "R1@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_limited(&probed);
    // Nothing was created: the address is still free once allowed.
    let elsewhere = answer(
        srv.device()
            .request(Method::POST, "/auth/register")
            .header("x-forwarded-for", "198.51.100.3")
            .json(&json!({ "email": "r3@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.text);

    // A forged token naming a's session (valid shape, bad tag) does not
    // spend a's budget.
    let real = a.refresh_cookie.clone().unwrap();
    let mut forged = real.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let mut thief = srv.device();
    thief.refresh_cookie = Some(forged);
    for _ in 0..5 {
        assert_eq!(thief.refresh_raw().await.code(), "refresh_token_invalid");
    }
    for _ in 0..3 {
        assert_eq!(a.refresh().await.status, 200);
    }
    let before = a.refresh_cookie.clone();
    assert_limited(&a.refresh_raw().await);
    // Refused before anything rotated: the current token still works later.
    assert_eq!(a.refresh_cookie, before);
    assert_eq!(a.me().await.status, 200);
}

#[tokio::test]
async fn limits_are_validated_at_start() {
    for bad in ["0/1m", "ten/1m", "5", "5/0s"] {
        let raw = RawConfig {
            master_key: Some(MASTER_KEY.to_string().into()),
            refresh_key: Some(REFRESH_KEY.to_string().into()),
            metrics_bind: Some("none".into()),
            rate_limit_login_ip: Some(bad.into()),
            ..Default::default()
        };
        let e = sesame_server::config::validate(raw)
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains("rate_limit_login_ip"), "{e}");
    }
}

/// Two instances on one Redis enforce one limit.
#[tokio::test]
async fn two_instances_share_limits_through_redis() {
    let Some(url) = std::env::var("SESAME_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        sesame_store_tests::unavailable(
            "two_instances_share_limits_through_redis",
            "SESAME_TEST_REDIS_URL not set",
        );
        return;
    };
    let prefix = format!(
        "sesame-rl-{:016x}:",
        u64::from_le_bytes(sesame_core::crypto::random::<8>())
    );
    let a = TestServer::try_on_backend(
        move |raw| {
            limited(raw);
            raw.rate_limit_login_ip = Some("4/1m".into());
            raw.session_store_url = Some(url.clone().into());
            raw.session_store_prefix = Some(prefix.clone());
        },
        None,
    )
    .await
    .expect("a server on Redis sessions starts");
    let b = a.sibling().await;
    let mut d = a.device();
    d.register("shared@example.com").await;
    let mut on_b = d.clone();
    on_b.base = b.base.clone();
    for dev in [&d, &on_b, &d, &on_b] {
        assert_eq!(
            login_from(dev, "203.0.113.40", "shared@example.com", PASSWORD)
                .await
                .status,
            200
        );
    }
    assert_limited(&login_from(&d, "203.0.113.40", "shared@example.com", PASSWORD).await);
    assert_limited(&login_from(&on_b, "203.0.113.40", "shared@example.com", PASSWORD).await);
    b.stop().await;
    a.stop().await;
}
