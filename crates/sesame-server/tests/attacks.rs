//! Known JWT attacks through the real routes (RFC 8725 §2–3, DESIGN §1),
//! beyond the per-check proofs in tokens.rs: `kid` injection, `jku`/`jwk`/
//! `x5u` headers, stripped and spliced signatures, non-canonical base64,
//! JSON-serialised and JWE forms, unknown `crit`, psychic ECDSA signatures,
//! and token-kind confusion. Each answer is the same 401 `invalid_token`.

mod common;

use common::jwt::{minter, rejected};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use sesame_core::crypto::b64;

/// `header.payload.signature` with a hand-written header, signed by `key`.
fn signed_raw(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
    format!("{msg}.{sig}")
}

async fn signed_in(srv: &TestServer) -> Device {
    let mut d = srv.device();
    let a = d.register("victim@example.com").await;
    assert_eq!(a.status, 201, "{}", a.text);
    d
}

#[tokio::test]
async fn kid_injection_and_key_bearing_headers_are_ignored() {
    let srv = TestServer::start().await;
    let d = signed_in(&srv).await;
    let m = minter(&srv, &d).await;
    assert_eq!(
        {
            let mut ok = d.clone();
            ok.access = Some(m.mint(|_, _| {}));
            ok.me().await.status
        },
        200,
        "the minter's tokens are good"
    );
    for kid in [
        "../../../../../../dev/null",
        "' OR '1'='1",
        "\u{0}",
        "",
        &"k".repeat(4000),
    ] {
        rejected(
            &d,
            &m.mint(|h, _| h.kid = Some(kid.to_string())),
            "kid injection",
        )
        .await;
    }

    // An attacker's own Ed25519 key, offered in the header three ways.
    let attacker = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let pkcs8 = attacker.to_pkcs8().unwrap();
    let key = EncodingKey::from_ed_der(pkcs8.as_ref());
    use aws_lc_rs::signature::KeyPair as _;
    let x = b64(attacker.public_key().as_ref());
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "evil" });
    for (kid, extra) in [
        ("evil", json!({ "jwk": jwk })),
        (m.kid.as_str(), json!({ "jwk": jwk })),
        ("evil", json!({ "jku": "http://127.0.0.1:9/jwks.json" })),
        (
            m.kid.as_str(),
            json!({ "jku": "http://127.0.0.1:9/jwks.json" }),
        ),
        (
            m.kid.as_str(),
            json!({ "x5u": "http://127.0.0.1:9/cert.pem" }),
        ),
        (m.kid.as_str(), json!({ "x5c": ["MIIB"] })),
    ] {
        let mut h = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid });
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        rejected(
            &d,
            &signed_raw(&h, &m.claims, &key, Algorithm::EdDSA),
            "attacker key in header",
        )
        .await;
    }
}

#[tokio::test]
async fn stripped_spliced_and_non_canonical_signatures() {
    let srv = TestServer::start().await;
    let d = signed_in(&srv).await;
    let m = minter(&srv, &d).await;
    // The standard-alphabet case below only tests something if the
    // signature has a `-` or `_` to translate; about 1 in 15 has neither,
    // and then the "altered" token was the valid one (a flaky failure).
    let good = (0..64)
        .map(|i| m.mint(|_, c| c["jti"] = json!(format!("canonical-{i}"))))
        .find(|t| t.rsplit('.').next().is_some_and(|s| s.contains(['-', '_'])))
        .expect("one of 64 signatures has a - or _");
    let mut valid = d.clone();
    valid.access = Some(good.clone());
    assert_eq!(valid.me().await.status, 200, "the base token is valid");
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();

    rejected(&d, &format!("{head}.{payload}."), "stripped signature").await;
    rejected(&d, &format!("{head}.{payload}"), "stripped, two segments").await;
    // Spliced: another token's signature on these claims, and these claims
    // changed under the original signature.
    let other = m.mint(|_, c| c["jti"] = json!("other"));
    let other_sig = other.rsplit('.').next().unwrap();
    rejected(
        &d,
        &format!("{head}.{payload}.{other_sig}"),
        "spliced signature",
    )
    .await;
    let mut claims = m.claims.clone();
    claims["sub"] = json!("01900000-0000-7000-8000-000000000000");
    rejected(
        &d,
        &format!("{head}.{}.{sig}", b64(claims.to_string().as_bytes())),
        "claims changed under the signature",
    )
    .await;

    // Non-canonical base64url: padding, standard-alphabet characters, and a
    // last character whose unused low bits are set (same bytes to a lax decoder).
    rejected(&d, &format!("{good}="), "padding").await;
    rejected(
        &d,
        &format!(
            "{head}.{payload}.{}",
            sig.replace('-', "+").replace('_', "/")
        ),
        "standard alphabet",
    )
    .await;
    let mut chars: Vec<char> = sig.chars().collect();
    let last = chars.pop().unwrap();
    const ALPHA: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = ALPHA.find(last).unwrap();
    // 64 bytes → 86 characters; the last carries 4 bits, its low 2 unused.
    let twin = ALPHA.chars().nth(idx ^ 1).unwrap();
    chars.push(twin);
    let lax: String = chars.into_iter().collect();
    rejected(
        &d,
        &format!("{head}.{payload}.{lax}"),
        "non-canonical trailing bits",
    )
    .await;
    let mut hchars = head.to_string();
    hchars.push('A');
    rejected(
        &d,
        &format!("{hchars}.{payload}.{sig}"),
        "header with a stray character",
    )
    .await;
}

#[tokio::test]
async fn json_serialisation_jwe_crit_and_whitespace_forms() {
    let srv = TestServer::start().await;
    let d = signed_in(&srv).await;
    let m = minter(&srv, &d).await;
    let good = m.mint(|_, _| {});
    let parts: Vec<&str> = good.split('.').collect();
    let general = json!({
        "payload": parts[1],
        "signatures": [{ "protected": parts[0], "signature": parts[2] }]
    })
    .to_string();
    let flat =
        json!({ "payload": parts[1], "protected": parts[0], "signature": parts[2] }).to_string();
    for (t, why) in [
        (general.as_str(), "JWS general JSON"),
        (flat.as_str(), "JWS flattened JSON"),
    ] {
        rejected(&d, t, why).await;
    }
    let jwe = format!(
        "{}.{}.{}.{}.{}",
        b64(br#"{"alg":"dir","enc":"A256GCM","kid":"x"}"#),
        "",
        "AAAA",
        parts[1],
        "AAAA"
    );
    rejected(&d, &jwe, "JWE compact").await;
    // (Spaces between `Bearer` and the token are allowed by RFC 6750's
    // `1*SP`; whitespace inside the token is not.)
    rejected(
        &d,
        &format!("{}.\t{}.{}", parts[0], parts[1], parts[2]),
        "tab inside",
    )
    .await;
    rejected(
        &d,
        &format!("{}. {}.{}", parts[0], parts[1], parts[2]),
        "space inside",
    )
    .await;

    // crit: a header parameter we do not understand must fail the token.
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
        let h = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": m.kid, "crit": crit, "b64": false, "exp": 1 });
        rejected(
            &d,
            &signed_raw(&h, &m.claims, &m.key, Algorithm::EdDSA),
            "crit",
        )
        .await;
    }
    // Duplicate header members (parsers disagree on which wins).
    let dup = format!(
        "{}.{}.{}",
        b64(format!(
            r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}","alg":"none"}}"#,
            m.kid
        )
        .as_bytes()),
        parts[1],
        parts[2]
    );
    rejected(&d, &dup, "duplicate header member").await;
}

#[tokio::test]
async fn psychic_ecdsa_signatures_are_refused() {
    let srv = TestServer::with(|raw| raw.signing_alg = Some("ES256".into())).await;
    let mut d = srv.device();
    assert_eq!(d.register("p256@example.com").await.status, 201);
    assert_eq!(d.me().await.status, 200, "ES256 tokens work");
    let token = d.access.clone().unwrap();
    let (msg, _) = token.rsplit_once('.').unwrap();
    // r = s = 0 (CVE-2022-21449), and r = s = n (the curve order).
    let zero = b64(&[0u8; 64]);
    let n = hex_n();
    let order = b64(&[n.clone(), n].concat());
    rejected(&d, &format!("{msg}.{zero}"), "r = s = 0").await;
    rejected(&d, &format!("{msg}.{order}"), "r = s = n").await;
    // DER-encoded instead of the fixed 64-byte form.
    let der = b64(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
    rejected(&d, &format!("{msg}.{der}"), "DER signature").await;
}

/// The P-256 group order.
fn hex_n() -> Vec<u8> {
    let s = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn token_kinds_do_not_substitute_for_each_other() {
    let srv = TestServer::start().await;
    let mut app = srv.device();
    let a = app
        .login_as("nobody@example.com", PASSWORD, Some("bearer"))
        .await;
    assert_eq!(a.status, 401);
    let mut app = srv.device();
    assert_eq!(app.register("kinds@example.com").await.status, 201);
    let mut bearer = srv.device();
    let l = bearer
        .login_as("kinds@example.com", PASSWORD, Some("bearer"))
        .await;
    let refresh = l.body["refresh_token"].as_str().unwrap().to_string();
    let access = l.body["access_token"].as_str().unwrap().to_string();
    // A refresh token, a handoff-code-shaped string or an API key as an
    // access token; an access token as a refresh token.
    for t in [
        refresh.clone(),
        "shc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        sesame_server::server::new_api_key().key,
    ] {
        rejected(&app, &t, "another kind of token").await;
    }
    let mut confused = bearer.clone();
    confused.refresh_body = Some(access.clone());
    assert_eq!(confused.refresh_raw().await.code(), "refresh_token_invalid");
    // A token from another Sesame (its own keys, same issuer and audience).
    let other = TestServer::start().await;
    let mut elsewhere = other.device();
    elsewhere.register("kinds@example.com").await;
    rejected(
        &app,
        elsewhere.access.as_deref().unwrap(),
        "another deployment's token",
    )
    .await;
    app.access = Some(access);
    assert_eq!(app.me().await.status, 200);
}
