//! The parsers of untrusted input, as the fuzz targets in `fuzz/` drive them
//! and as `tests/fuzz_corpus.rs` replays their committed corpora. Each
//! function takes arbitrary bytes and must neither panic nor accept what it
//! should not; the assertions here are the properties a crash would break.
#![doc(hidden)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{HeaderMap, HeaderValue, header};
use secrecy::SecretBox;
use sesame_core::access::Verifier;
use sesame_core::ids::{Email, SessionId};
use sesame_core::keys::{KeyRing, PublicKeys, SigningAlg, initial_records};
use sesame_core::password::Password;
use sesame_core::refresh::RefreshKeys;
use std::sync::LazyLock;

const NOW: i64 = 1_800_000_000;

struct Fixture {
    ring: KeyRing,
    public: PublicKeys,
    verifier: Verifier,
    refresh: RefreshKeys,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mk = [7u8; 32];
    let ring = KeyRing::open(&initial_records(SigningAlg::EdDSA, NOW, &mk).unwrap(), &mk).unwrap();
    let (public, _) = PublicKeys::from_jwks(&ring.jwks());
    Fixture {
        ring,
        public,
        verifier: Verifier::new("https://auth.example", "sesame", 60),
        refresh: RefreshKeys::new(vec![(1, SecretBox::new(Box::from(&[9u8; 32][..])))]).unwrap(),
    }
});

/// An access token (the whole `Authorization` value's token part): the
/// verifier must reject everything the fixture's key did not sign, and the
/// ring and a JWKS-built key set must agree.
pub fn access_token(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let f = &*FIXTURE;
    let by_ring = f.verifier.verify(&f.ring, s, NOW);
    let by_jwks = f.verifier.verify(&f.public, s, NOW);
    assert_eq!(
        by_ring.is_ok(),
        by_jwks.is_ok(),
        "ring and JWKS disagree on {s:?}"
    );
    if let Ok(v) = by_ring {
        // Only a token the fixture signed verifies: re-signing its claims
        // must reproduce a verifying token (the fuzzer cannot forge one).
        let again = f.verifier.sign(&f.ring, v.claims()).unwrap();
        assert!(f.verifier.verify(&f.ring, &again, NOW).is_ok());
    }
    // A JWKS document from the same bytes never panics either.
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = PublicKeys::from_jwks(&json);
    }
}

/// A refresh token (`srt_…`): parsing and the tag check.
pub fn refresh_token(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let f = &*FIXTURE;
    if let Some(t) = f.refresh.verify(s) {
        // A token that passes carries a tag made with the fixture's key:
        // the fuzzer can only get here with a seed it was given.
        assert_eq!(t.encode(), s, "a passing token re-encodes to itself");
    }
    let _ = SessionId::parse(s);
}

/// A `Cookie` header: exact-name lookup and duplicate detection.
pub fn cookie_header(data: &[u8]) {
    let Ok(v) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = HeaderMap::new();
    h.append(header::COOKIE, v.clone());
    for name in [
        crate::http::cookies::REFRESH,
        crate::http::cookies::ACCESS,
        crate::http::cookies::FP,
    ] {
        let once = crate::http::cookies::get(&h, name);
        // The same header twice: a cookie present once becomes a duplicate.
        let mut twice = h.clone();
        twice.append(header::COOKIE, v.clone());
        let again = crate::http::cookies::get(&twice, name);
        if let Ok(Some(_)) = once {
            assert!(again.is_err(), "a repeated cookie must be a duplicate");
        }
    }
}

/// A JSON request body and the query strings the server parses: the field
/// checks of register/login, the audit filter.
pub fn request_body(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        for field in ["email", "password", "user_id", "handoff_code"] {
            if let Some(s) = v.get(field).and_then(|x| x.as_str()) {
                if let Ok(e) = Email::parse(s) {
                    assert_eq!(
                        Email::parse(e.as_str()).ok().as_ref(),
                        Some(&e),
                        "normalising twice changes nothing"
                    );
                }
                let _ = Password::new_checked(s.to_owned());
                let _ = sesame_core::store::ExternalId::parse(s);
            }
        }
        if let Some(cnf) = v.get("cnf") {
            let _ = sesame_core::binding::check(
                Some(cnf),
                &sesame_core::binding::RequestFacts::default(),
                None,
                sesame_core::binding::IpPrefixes::default(),
            );
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::http::admin::audit_filter(s);
    }
}

/// Seeds for the corpora: inputs the fixture accepts, so the fuzzer starts
/// from the valid shapes and mutates towards the edges.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let f = &*FIXTURE;
    let claims = sesame_core::access::AccessClaims {
        iss: "https://auth.example".into(),
        aud: "sesame".into(),
        sub: sesame_core::ids::UserId::from_bytes([1; 16]),
        sid: SessionId::from_bytes([2; 16]),
        iat: NOW,
        exp: NOW + 600,
        jti: "seed".into(),
        auth_time: NOW,
        aal: sesame_core::access::Aal::Aal1,
        cnf: Some(serde_json::json!({ "fph": "abc" })),
        ext: serde_json::Map::from_iter([("role".into(), serde_json::json!("admin"))]),
    };
    let token = f.verifier.sign(&f.ring, &claims).unwrap();
    let rt = f
        .refresh
        .mint_first(SessionId::from_bytes([3; 16]))
        .encode();
    vec![
        ("access_token", token.clone().into_bytes()),
        ("access_token", format!("{token}x").into_bytes()),
        ("access_token", b"eyJhbGciOiJub25lIn0.e30.".to_vec()),
        ("access_token", f.ring.jwks().to_string().into_bytes()),
        ("refresh_token", rt.clone().into_bytes()),
        ("refresh_token", rt.as_bytes()[..rt.len() - 2].to_vec()),
        ("refresh_token", b"srt_".to_vec()),
        (
            "cookie_header",
            format!("a=1; __Host-sesame_rt={rt}; b=2").into_bytes(),
        ),
        (
            "cookie_header",
            b"__Host-sesame_rt=\"x\"; __host-sesame_rt=y".to_vec(),
        ),
        (
            "cookie_header",
            b"__Host-sesame_fp=a;__Host-sesame_fp=b".to_vec(),
        ),
        (
            "request_body",
            br#"{"email":"Ann@EXAMPLE.com","password":"correct horse battery"}"#.to_vec(),
        ),
        (
            "request_body",
            br#"{"user_id":"auth0|1","cnf":{"ipua":"x"},"handoff_code":"shc_x"}"#.to_vec(),
        ),
        (
            "request_body",
            b"user=01900000-0000-7000-8000-000000000000&event=login_failed&limit=5".to_vec(),
        ),
    ]
}
