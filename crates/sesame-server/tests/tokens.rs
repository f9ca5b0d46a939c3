//! Access-token rejections through the real routes: every one answers 401
//! `invalid_token` with `WWW-Authenticate`, whatever the reason (the client
//! is not told which check failed).

mod common;

use common::jwt::{minter, rejected, unsigned};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

#[tokio::test]
async fn harness_minted_tokens_prove_each_check() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("tok@example.com").await;
    let m = minter(&srv, &d).await;
    // The minter itself is right: an unmodified token is accepted.
    let mut ok = d.clone();
    ok.access = Some(m.mint(|_, _| {}));
    assert_eq!(ok.me().await.status, 200);

    let now = T0;
    rejected(
        &d,
        &m.mint(|_, c| c["exp"] = json!(now - 61)),
        "expired beyond leeway",
    )
    .await;
    let mut within = d.clone();
    within.access = Some(m.mint(|_, c| c["exp"] = json!(now - 30)));
    assert_eq!(within.me().await.status, 200, "within the 60 s leeway");
    rejected(
        &d,
        &m.mint(|_, c| c["iat"] = json!(now + 120)),
        "iat in the future",
    )
    .await;
    rejected(
        &d,
        &m.mint(|_, c| c["nbf"] = json!(now + 120)),
        "not yet valid",
    )
    .await;
    rejected(
        &d,
        &m.mint(|_, c| c["iss"] = json!("https://evil.example")),
        "wrong iss",
    )
    .await;
    rejected(
        &d,
        &m.mint(|_, c| c["aud"] = json!("other-service")),
        "wrong aud",
    )
    .await;
    rejected(&d, &m.mint(|h, _| h.typ = Some("JWT".into())), "wrong typ").await;
    rejected(&d, &m.mint(|h, _| h.typ = None), "missing typ").await;
    rejected(
        &d,
        &m.mint(|h, _| h.kid = Some("unknown-kid".into())),
        "unknown kid",
    )
    .await;
    rejected(&d, &m.mint(|h, _| h.kid = None), "no kid").await;
    rejected(
        &d,
        &m.mint(|h, _| h.crit = Some(vec!["exp".into()])),
        "crit",
    )
    .await;
    for claim in [
        "sub",
        "sid",
        "exp",
        "iat",
        "aud",
        "iss",
        "jti",
        "aal",
        "auth_time",
    ] {
        rejected(
            &d,
            &m.mint(|_, c| {
                c.as_object_mut().unwrap().remove(claim);
            }),
            claim,
        )
        .await;
    }

    // alg "none" in every spelling, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{}"}}"#, m.kid);
        rejected(&d, &unsigned(&h, &m.claims, ""), alg).await;
        rejected(&d, &unsigned(&h, &m.claims, "c2ln"), alg).await;
    }
    // HS256 "signed" with the public key (key confusion).
    let mut h = Header::new(Algorithm::HS256);
    h.typ = Some("at+jwt".into());
    h.kid = Some(m.kid.clone());
    let confused =
        jsonwebtoken::encode(&h, &m.claims, &EncodingKey::from_secret(&m.public)).unwrap();
    rejected(&d, &confused, "HS256 with the public key").await;

    // A refresh token is not an access token...
    let rt = d.refresh_cookie.clone().unwrap();
    rejected(&d, &rt, "refresh token as access token").await;
    // ...and an access token is not a refresh token.
    let mut swap = d.clone();
    swap.refresh_cookie = d.access.clone();
    assert_eq!(swap.refresh_raw().await.code(), "refresh_token_invalid");

    // Non-compact and oversize tokens.
    rejected(&d, "a.b", "two segments").await;
    rejected(&d, "a.b.c.d.e", "JWE-shaped").await;
    rejected(&d, &format!("{}.x", "a".repeat(9000)), "oversize").await;
    rejected(&d, r#"{"alg":"none"}.e30."#, "braces").await;
}

#[tokio::test]
async fn missing_or_malformed_authorization() {
    let srv = TestServer::start().await;
    let d = srv.device();
    for auth in ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"] {
        let a = answer(
            d.request(reqwest::Method::GET, "/auth/me")
                .header("authorization", auth)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (401, "invalid_token"),
            "{auth:?}"
        );
    }
    assert_eq!(d.me().await.code(), "invalid_token");
}
