//! Access tokens (JWT, modelled on RFC 9068): issuing and verifying.
//!
//! Verification is written defensively, in this order, before any claim is
//! trusted: size (≤ 8 KiB) and strict compact form (three base64url segments,
//! nothing else); a header parsed into a struct (duplicate members are an
//! error), `typ` exactly `at+jwt`, no `crit`; the `kid` looked up in the ring
//! and the *key's* algorithm required of the header; the signature; then
//! `iss`, `aud`, `exp`, `iat` and `nbf` against our own clock with a leeway of
//! at most 60 s. A [`VerifiedClaims`] can only be made here.

use crate::clock::UnixTime;
use crate::crypto;
use crate::ids::{SessionId, UserId};
use crate::keys::{KeyLookup, KeyRing};
pub use crate::session::Aal;
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Largest clock leeway allowed.
pub const MAX_LEEWAY: i64 = 60;
/// The `typ` header value of Sesame access tokens.
pub const TYP: &str = "at+jwt";
/// Claim names the engine sets; application claims may not use them.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "aud",
    "sub",
    "sid",
    "iat",
    "exp",
    "nbf",
    "jti",
    "auth_time",
    "aal",
    "cnf",
    "typ",
    "scope",
    "client_id",
];

/// The claims of a Sesame access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer (`public_url` by default).
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user.
    pub sub: UserId,
    /// The session.
    pub sid: SessionId,
    /// Issued at.
    pub iat: i64,
    /// Expiry; never later than the session's absolute expiry.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// When the user last proved a credential.
    pub auth_time: i64,
    /// Assurance level.
    pub aal: Aal,
    /// Binding confirmation (`{"fp": …}` for cookie binding), when configured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cnf: Option<serde_json::Value>,
    /// Application claims set at session creation.
    #[serde(flatten)]
    pub ext: serde_json::Map<String, serde_json::Value>,
}

/// Proof that a token passed every check. Only [`Verifier::verify`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedClaims {
    claims: AccessClaims,
    kid: String,
}

impl VerifiedClaims {
    /// The verified claims.
    pub fn claims(&self) -> &AccessClaims {
        &self.claims
    }

    /// The user.
    pub fn user_id(&self) -> UserId {
        self.claims.sub
    }

    /// The session.
    pub fn session_id(&self) -> SessionId {
        self.claims.sid
    }

    /// The key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Why a token was rejected. Clients only ever see `invalid_token`; this
/// detail is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Not three base64url segments, or too long.
    #[error("malformed token")]
    Malformed,
    /// Header unparseable, duplicate members, or unknown `crit`.
    #[error("bad header")]
    Header,
    /// `typ` is not `at+jwt`.
    #[error("wrong typ")]
    Typ,
    /// `kid` absent or not in the ring.
    #[error("unknown kid")]
    UnknownKid,
    /// Header `alg` is not the key's algorithm.
    #[error("algorithm not allowed for this key")]
    Algorithm,
    /// Signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Claims missing or malformed.
    #[error("bad claims")]
    Claims,
    /// Wrong issuer.
    #[error("wrong issuer")]
    Issuer,
    /// Wrong audience.
    #[error("wrong audience")]
    Audience,
    /// Expired.
    #[error("expired")]
    Expired,
    /// Issued in the future (beyond leeway) or not yet valid.
    #[error("not yet valid")]
    NotYetValid,
}

#[derive(Deserialize)]
struct StrictHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// Issues and verifies access tokens for one issuer and audience.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuer: String,
    audience: String,
    leeway: i64,
}

impl Verifier {
    /// A verifier for `issuer` and `audience`; leeway is capped at 60 s.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, leeway: i64) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: leeway.clamp(0, MAX_LEEWAY),
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Signs `claims` with the ring's active key.
    pub fn sign(
        &self,
        ring: &KeyRing,
        claims: &AccessClaims,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let key = ring.active();
        let mut header = Header::new(key.alg().jwt());
        header.typ = Some(TYP.into());
        header.kid = Some(key.kid().into());
        jsonwebtoken::encode(&header, claims, key.encoding())
    }

    /// Verifies a presented token at `now`.
    pub fn verify(
        &self,
        ring: &(impl KeyLookup + ?Sized),
        token: &str,
        now: UnixTime,
    ) -> Result<VerifiedClaims, Rejection> {
        if token.len() > MAX_TOKEN_LEN
            || token.split('.').count() != 3
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(Rejection::Malformed);
        }
        let header_b64 = token.split('.').next().unwrap_or("");
        let header_json = crypto::b64_decode(header_b64).ok_or(Rejection::Malformed)?;
        let header: StrictHeader =
            serde_json::from_slice(&header_json).map_err(|_| Rejection::Header)?;
        if header.crit.is_some() {
            return Err(Rejection::Header);
        }
        if header.typ.as_deref() != Some(TYP) {
            return Err(Rejection::Typ);
        }
        let kid = header.kid.ok_or(Rejection::UnknownKid)?;
        let key = ring.verifying_key(&kid).ok_or(Rejection::UnknownKid)?;
        if header.alg != key.alg().as_str() {
            return Err(Rejection::Algorithm);
        }

        // jsonwebtoken checks the signature with the key's one algorithm. Time
        // claims are checked below against our clock, not the system's.
        let mut v = Validation::new(key.alg().jwt());
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims = HashSet::new();
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, key.decoding(), &v).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => Rejection::Algorithm,
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => Rejection::Signature,
                    _ => Rejection::Claims,
                }
            })?;
        let raw = data.claims;
        let nbf = raw
            .get("nbf")
            .map(|v| v.as_i64().ok_or(Rejection::Claims))
            .transpose()?;
        let claims: AccessClaims = serde_json::from_value(raw).map_err(|_| Rejection::Claims)?;
        if claims.iss != self.issuer {
            return Err(Rejection::Issuer);
        }
        if claims.aud != self.audience {
            return Err(Rejection::Audience);
        }
        if now >= claims.exp + self.leeway {
            return Err(Rejection::Expired);
        }
        if claims.iat > now + self.leeway || nbf.is_some_and(|n| n > now + self.leeway) {
            return Err(Rejection::NotYetValid);
        }
        Ok(VerifiedClaims { claims, kid })
    }

    /// Whether a token verified earlier (a cache hit) still passes: its key
    /// is still in `ring` and it has not expired since. The rest of what
    /// [`Verifier::verify`] checked cannot change for the same token.
    pub fn still_valid(
        &self,
        ring: &(impl KeyLookup + ?Sized),
        verified: &VerifiedClaims,
        now: UnixTime,
    ) -> bool {
        ring.verifying_key(&verified.kid).is_some() && now < verified.claims.exp + self.leeway
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyState, SigningAlg, initial_records};

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://auth.example".into(),
            aud: "sesame".into(),
            sub: UserId::new(),
            sid: SessionId::random(),
            iat: now,
            exp: now + 600,
            jti: "j".into(),
            auth_time: now,
            aal: Aal::Aal1,
            cnf: None,
            ext: Default::default(),
        }
    }

    fn forge(header: &str, payload: &serde_json::Value, sig: &str) -> String {
        format!(
            "{}.{}.{}",
            crypto::b64(header.as_bytes()),
            crypto::b64(payload.to_string().as_bytes()),
            sig
        )
    }

    #[test]
    fn still_valid_rechecks_expiry_and_key() {
        let mk = [1u8; 32];
        let ring =
            KeyRing::open(&initial_records(SigningAlg::EdDSA, 0, &mk).unwrap(), &mk).unwrap();
        let other =
            KeyRing::open(&initial_records(SigningAlg::EdDSA, 0, &mk).unwrap(), &mk).unwrap();
        let v = Verifier::new("https://auth.example", "sesame", 10);
        let t = v.sign(&ring, &claims(1000)).unwrap();
        let ok = v.verify(&ring, &t, 1000).unwrap();
        assert!(v.still_valid(&ring, &ok, 1609));
        assert!(!v.still_valid(&ring, &ok, 1610), "exp 1600 + leeway 10");
        assert!(!v.still_valid(&other, &ok, 1000), "its key left the ring");
    }

    #[test]
    fn sign_verify_every_alg_and_reject_the_rest() {
        let mk = [1u8; 32];
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::HS256] {
            let ring = KeyRing::open(&initial_records(alg, 0, &mk).unwrap(), &mk).unwrap();
            let v = Verifier::new("https://auth.example", "sesame", 60);
            let c = claims(1000);
            let t = v.sign(&ring, &c).unwrap();
            assert_eq!(v.verify(&ring, &t, 1000).unwrap().claims(), &c);
            assert_eq!(
                v.verify(&ring, &t, 1659),
                Ok(v.verify(&ring, &t, 1000).unwrap())
            );
            assert_eq!(v.verify(&ring, &t, 1660), Err(Rejection::Expired));
            assert_eq!(v.verify(&ring, &t, 939), Err(Rejection::NotYetValid));
            let other = Verifier::new("https://evil.example", "sesame", 60);
            assert_eq!(other.verify(&ring, &t, 1000), Err(Rejection::Issuer));
            let aud = Verifier::new("https://auth.example", "other", 60);
            assert_eq!(aud.verify(&ring, &t, 1000), Err(Rejection::Audience));
            // A flipped signature byte.
            let mut bad = t.clone().into_bytes();
            let last = bad.len() - 2;
            bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
            assert!(
                v.verify(&ring, std::str::from_utf8(&bad).unwrap(), 1000)
                    .is_err()
            );
        }
    }

    #[test]
    fn header_attacks() {
        let mk = [1u8; 32];
        let ring =
            KeyRing::open(&initial_records(SigningAlg::EdDSA, 0, &mk).unwrap(), &mk).unwrap();
        let kid = ring.active().kid().to_string();
        let v = Verifier::new("https://auth.example", "sesame", 60);
        let payload = serde_json::to_value(claims(1000)).unwrap();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = forge(
                &format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#),
                &payload,
                "",
            );
            assert!(v.verify(&ring, &t, 1000).is_err(), "{alg}");
            let t = forge(
                &format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#),
                &payload,
                "x",
            );
            assert!(v.verify(&ring, &t, 1000).is_err(), "{alg}");
        }
        let cases = [
            (
                format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#),
                Rejection::Typ,
            ),
            (
                format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#),
                Rejection::Typ,
            ),
            (
                r#"{"alg":"EdDSA","typ":"at+jwt","kid":"nope"}"#.to_string(),
                Rejection::UnknownKid,
            ),
            (
                format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#),
                Rejection::Algorithm,
            ),
            (
                format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","crit":["exp"]}}"#),
                Rejection::Header,
            ),
            (
                format!(r#"{{"alg":"EdDSA","alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#),
                Rejection::Header,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(
                v.verify(&ring, &forge(&h, &payload, "c2ln"), 1000),
                Err(want),
                "{h}"
            );
        }
        for malformed in [
            "",
            "a.b",
            "a.b.c.d",
            "a.b.c.d.e",
            "{\"alg\":\"none\"}.e30.",
            "a b.c.d",
        ] {
            assert_eq!(
                v.verify(&ring, malformed, 1000).unwrap_err(),
                Rejection::Malformed,
                "{malformed}"
            );
        }
        assert_eq!(
            v.verify(&ring, &"a".repeat(9000), 1000),
            Err(Rejection::Malformed)
        );
        let _ = KeyState::Active;
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_rejected() {
        // CVE-2015-9235 style key confusion: sign HS256 with the EdDSA public key bytes.
        let mk = [1u8; 32];
        let recs = initial_records(SigningAlg::EdDSA, 0, &mk).unwrap();
        let ring = KeyRing::open(&recs, &mk).unwrap();
        let active = recs.iter().find(|r| r.state == KeyState::Active).unwrap();
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some(TYP.into());
        h.kid = Some(active.kid.clone());
        let t = jsonwebtoken::encode(
            &h,
            &claims(1000),
            &jsonwebtoken::EncodingKey::from_secret(&active.public),
        )
        .unwrap();
        let v = Verifier::new("https://auth.example", "sesame", 60);
        assert_eq!(v.verify(&ring, &t, 1000), Err(Rejection::Algorithm));
    }
}
