//! Published test vectors for the primitives and the access-token verifier.
//!
//! * RFC 7515 A.1 (HS256), RFC 7515 A.5 / RFC 7519 §6.1 (unsecured) and
//!   RFC 8037 A.4 (Ed25519): each signature is checked against our primitive
//!   ("valid signature"), then the very same JWS is shown to be refused by
//!   [`Verifier`] even with the RFC's key in the ring ("invalid token": no
//!   `typ: at+jwt`, no `kid`, not our claims). SECURITY.md JWT-02, JWT-09,
//!   JWT-10.
//! * Wycheproof (Ed25519, ECDSA P-256/SHA-256 in the IEEE P1363 encoding JOSE
//!   uses, HMAC-SHA256) through aws-lc-rs, through the `jsonwebtoken` verifier
//!   the [`Verifier`] calls, and through [`crypto::hmac_sha256`].
//! * Property tests of the access-token codec: round trip of arbitrary
//!   claims, and rejection of every single-byte change.

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use proptest::prelude::*;
use sesame_core::access::{Aal, AccessClaims, Rejection, Verifier};
use sesame_core::crypto;
use sesame_core::keys::{KeyRecord, KeyRing, KeyState, SigningAlg, initial_records};
use sesame_core::{SessionId, UserId};
use std::sync::LazyLock;

const MK: [u8; 32] = [0x5e; 32];
const ISS: &str = "https://auth.example";
const AUD: &str = "sesame";

fn b64d(s: &str) -> Vec<u8> {
    crypto::b64_decode(s).unwrap_or_else(|| panic!("test vector is not base64url: {s}"))
}

/// A ring holding one active key built from raw material, the way the store
/// would hold it (sealed with the master key, `kid` as associated data).
fn ring_with(kid: &str, alg: SigningAlg, private: &[u8], public: &[u8]) -> KeyRing {
    let rec = KeyRecord {
        kid: kid.to_string(),
        alg,
        state: KeyState::Active,
        sealed_private: crypto::seal(&MK, kid.as_bytes(), private),
        public: public.to_vec(),
        created_at: 0,
        retired_at: None,
    };
    KeyRing::open(&[rec], &MK).unwrap()
}

fn generated_ring(alg: SigningAlg) -> KeyRing {
    KeyRing::open(&initial_records(alg, 0, &MK).unwrap(), &MK).unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(ISS, AUD, 60)
}

fn sesame_claims(now: i64) -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: UserId::new(),
        sid: SessionId::random(),
        iat: now,
        exp: now + 600,
        jti: "jti-1".into(),
        auth_time: now,
        aal: Aal::Aal1,
        cnf: None,
        ext: Default::default(),
    }
}

/// `header_json` and `payload` as a signing input (`b64(h).b64(p)`).
fn signing_input(header_json: &str, payload: &[u8]) -> String {
    format!(
        "{}.{}",
        crypto::b64(header_json.as_bytes()),
        crypto::b64(payload)
    )
}

// ---------------------------------------------------------------------------
// RFC 7515 Appendix A.1: HS256.

/// The JWK `k` of RFC 7515 A.1 (64 bytes).
const RFC7515_A1_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
/// `{"typ":"JWT",\r\n "alg":"HS256"}`
const RFC7515_A1_HEADER: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
/// `{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}`
/// (shared by A.1 and A.5).
const RFC7515_PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const RFC7515_A1_SIG: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

#[test]
fn rfc7515_a1_hs256_valid_mac_invalid_token() {
    let k = b64d(RFC7515_A1_K);
    assert_eq!(k.len(), 64);
    let input = format!("{RFC7515_A1_HEADER}.{RFC7515_PAYLOAD}");
    let token = format!("{input}.{RFC7515_A1_SIG}");

    // The decoded segments are what the RFC prints (CRLF and all).
    assert_eq!(
        b64d(RFC7515_A1_HEADER),
        b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}"
    );
    assert_eq!(
        b64d(RFC7515_PAYLOAD),
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
    );

    // Valid signature: our HMAC primitive reproduces the RFC's MAC exactly.
    let mac = crypto::hmac_sha256(&k, &[input.as_bytes()]);
    assert_eq!(mac.to_vec(), b64d(RFC7515_A1_SIG));
    assert_eq!(crypto::b64(&mac), RFC7515_A1_SIG);
    // And it is a MAC over the exact text: one more byte breaks it.
    assert_ne!(
        crypto::hmac_sha256(&k, &[input.as_bytes(), b" "]).to_vec(),
        b64d(RFC7515_A1_SIG)
    );

    // Invalid token, even though the ring holds an HS256 key with that secret.
    let kid = "rfc7515-a1-hs256-key0";
    let ring = ring_with(kid, SigningAlg::HS256, &k, &[]);
    let v = verifier();
    assert_eq!(v.verify(&ring, &token, 1_300_819_000), Err(Rejection::Typ));

    // With `typ: at+jwt` but still no `kid` (re-MACed with the RFC key, so
    // the signature stays valid): nothing selects a key.
    let h = r#"{"typ":"at+jwt","alg":"HS256"}"#;
    let input = signing_input(h, &b64d(RFC7515_PAYLOAD));
    let t = format!(
        "{input}.{}",
        crypto::b64(&crypto::hmac_sha256(&k, &[input.as_bytes()]))
    );
    assert_eq!(
        v.verify(&ring, &t, 1_300_819_000),
        Err(Rejection::UnknownKid)
    );

    // A kid the ring does not hold.
    let h =
        r#"{"typ":"at+jwt","alg":"HS256","kid":"HMAC key used in JWS spec Appendix A.1 example"}"#;
    let input = signing_input(h, &b64d(RFC7515_PAYLOAD));
    let t = format!(
        "{input}.{}",
        crypto::b64(&crypto::hmac_sha256(&k, &[input.as_bytes()]))
    );
    assert_eq!(
        v.verify(&ring, &t, 1_300_819_000),
        Err(Rejection::UnknownKid)
    );

    // Right typ, right kid, valid MAC: the RFC's claims are still not ours.
    let h = format!(r#"{{"typ":"at+jwt","alg":"HS256","kid":"{kid}"}}"#);
    let input = signing_input(&h, &b64d(RFC7515_PAYLOAD));
    let t = format!(
        "{input}.{}",
        crypto::b64(&crypto::hmac_sha256(&k, &[input.as_bytes()]))
    );
    assert_eq!(v.verify(&ring, &t, 1_300_819_000), Err(Rejection::Claims));

    // Control: the same ring does accept a proper Sesame token it signed,
    // and that token's MAC is the RFC key's HMAC over its signing input.
    let c = sesame_claims(1000);
    let t = v.sign(&ring, &c).unwrap();
    let (input, sig) = t.rsplit_once('.').unwrap();
    assert_eq!(
        crypto::b64(&crypto::hmac_sha256(&k, &[input.as_bytes()])),
        sig
    );
    let ok = v.verify(&ring, &t, 1000).unwrap();
    assert_eq!(ok.claims(), &c);
    assert_eq!(ok.kid(), kid);
}

// ---------------------------------------------------------------------------
// RFC 7515 Appendix A.5 / RFC 7519 §6.1: unsecured JWS (`alg: none`).

/// `{"alg":"none"}`
const RFC7515_A5_HEADER: &str = "eyJhbGciOiJub25lIn0";

#[test]
fn rfc7515_a5_rfc7519_6_1_unsecured_is_never_accepted() {
    // RFC 7515 A.5 and RFC 7519 §6.1 print the same token.
    let token = format!("{RFC7515_A5_HEADER}.{RFC7515_PAYLOAD}.");
    assert_eq!(b64d(RFC7515_A5_HEADER), br#"{"alg":"none"}"#);

    let v = verifier();
    let hs_ring = ring_with(
        "rfc7515-a1-hs256-key0",
        SigningAlg::HS256,
        &b64d(RFC7515_A1_K),
        &[],
    );
    let rings = [
        hs_ring,
        generated_ring(SigningAlg::EdDSA),
        generated_ring(SigningAlg::ES256),
        generated_ring(SigningAlg::HS256),
    ];
    for ring in &rings {
        let r = v.verify(ring, &token, 1_300_819_000);
        assert!(r.is_err());
        // No `typ` at all: refused before any key is looked up.
        assert_eq!(r, Err(Rejection::Typ));
    }

    // Variants carrying our typ and a kid from the ring, with the RFC's
    // claims and with claims that would otherwise be perfectly valid, with
    // an empty signature and with junk / a real MAC in the signature slot.
    let good = serde_json::to_vec(&sesame_claims(1000)).unwrap();
    for ring in &rings {
        let kid = ring.active().kid();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let h = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#);
            for payload in [b64d(RFC7515_PAYLOAD), good.clone()] {
                let input = signing_input(&h, &payload);
                let macd = crypto::b64(&crypto::hmac_sha256(
                    &b64d(RFC7515_A1_K),
                    &[input.as_bytes()],
                ));
                for sig in ["", "AA", macd.as_str()] {
                    let t = format!("{input}.{sig}");
                    let r = v.verify(ring, &t, 1000);
                    assert!(r.is_err(), "{alg} accepted: {t}");
                    // The key decides the algorithm; "none" is never it.
                    assert_eq!(r, Err(Rejection::Algorithm), "{t}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// RFC 8037 Appendix A.1 / A.4: Ed25519.

const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// `{"alg":"EdDSA"}`
const RFC8037_A4_HEADER: &str = "eyJhbGciOiJFZERTQSJ9";
/// `Example of Ed25519 signing`
const RFC8037_A4_PAYLOAD: &str = "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
const RFC8037_A4_SIG: &str =
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

#[test]
fn rfc8037_a4_ed25519_valid_signature_invalid_token_and_interop() {
    let x = b64d(RFC8037_X);
    let d = b64d(RFC8037_D);
    let input = format!("{RFC8037_A4_HEADER}.{RFC8037_A4_PAYLOAD}");
    let token = format!("{input}.{RFC8037_A4_SIG}");
    assert_eq!(b64d(RFC8037_A4_HEADER), br#"{"alg":"EdDSA"}"#);
    assert_eq!(b64d(RFC8037_A4_PAYLOAD), b"Example of Ed25519 signing");

    // Valid signature: the primitive verifies the RFC's signature with the
    // RFC's public key, and not over anything else.
    let pk = UnparsedPublicKey::new(&signature::ED25519, &x);
    pk.verify(input.as_bytes(), &b64d(RFC8037_A4_SIG)).unwrap();
    assert!(
        pk.verify(format!("{input}.").as_bytes(), &b64d(RFC8037_A4_SIG))
            .is_err()
    );

    // The RFC's private key, as a PKCS#8 v1 document like the ones we store;
    // Ed25519 is deterministic, so it reproduces the RFC signature exactly.
    let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x).unwrap();
    assert_eq!(pair.public_key().as_ref(), x.as_slice());
    assert_eq!(
        crypto::b64(pair.sign(input.as_bytes()).as_ref()),
        RFC8037_A4_SIG
    );
    let pkcs8 = pair.to_pkcs8v1().unwrap();
    let reparsed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    assert_eq!(reparsed.public_key().as_ref(), x.as_slice());

    // Invalid token, even with that key in the ring.
    let kid = "rfc8037-a1-ed25519-k0";
    let ring = ring_with(kid, SigningAlg::EdDSA, pkcs8.as_ref(), &x);
    let v = verifier();
    assert_eq!(v.verify(&ring, &token, 1000), Err(Rejection::Typ));

    // Re-signed with the RFC key under a header naming typ and kid: a valid
    // signature over a payload that is not even JSON.
    let h = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#);
    let input2 = signing_input(&h, b"Example of Ed25519 signing");
    let t = format!(
        "{input2}.{}",
        crypto::b64(pair.sign(input2.as_bytes()).as_ref())
    );
    assert_eq!(v.verify(&ring, &t, 1000), Err(Rejection::Claims));
    // typ but no kid.
    let h = r#"{"alg":"EdDSA","typ":"at+jwt"}"#;
    let input3 = signing_input(h, &serde_json::to_vec(&sesame_claims(1000)).unwrap());
    let t = format!(
        "{input3}.{}",
        crypto::b64(pair.sign(input3.as_bytes()).as_ref())
    );
    assert_eq!(v.verify(&ring, &t, 1000), Err(Rejection::UnknownKid));

    // Interop: a Sesame token signed through the Verifier with the RFC key
    // verifies with the RFC public key alone, is exactly what the RFC key
    // signs, and verifies back through the Verifier.
    let c = sesame_claims(1000);
    let t = v.sign(&ring, &c).unwrap();
    let (signed, sig) = t.rsplit_once('.').unwrap();
    let sig = b64d(sig);
    assert_eq!(sig.len(), 64);
    pk.verify(signed.as_bytes(), &sig).unwrap();
    assert_eq!(pair.sign(signed.as_bytes()).as_ref(), sig.as_slice());
    let header: serde_json::Value =
        serde_json::from_slice(&b64d(signed.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], kid);
    let ok = v.verify(&ring, &t, 1000).unwrap();
    assert_eq!(ok.claims(), &c);
    // The published JWK is the RFC's public JWK.
    let jwks = ring.jwks();
    assert_eq!(jwks["keys"][0]["x"], RFC8037_X);
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}

// ---------------------------------------------------------------------------
// Wycheproof.

#[derive(Debug, Default)]
struct Tally {
    total: usize,
    valid: usize,
    invalid: usize,
    acceptable: usize,
    acceptable_accepted: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(
        &mut self,
        tc_id: usize,
        comment: &str,
        expected: wycheproof::TestResult,
        accepted: bool,
    ) {
        self.total += 1;
        match expected {
            wycheproof::TestResult::Valid => {
                self.valid += 1;
                if !accepted {
                    self.failures
                        .push(format!("tc {tc_id} ({comment}): valid but rejected"));
                }
            }
            wycheproof::TestResult::Invalid => {
                self.invalid += 1;
                if accepted {
                    self.failures
                        .push(format!("tc {tc_id} ({comment}): invalid but accepted"));
                }
            }
            wycheproof::TestResult::Acceptable => {
                self.acceptable += 1;
                if accepted {
                    self.acceptable_accepted += 1;
                }
                eprintln!("tc {tc_id} ({comment}): acceptable, accepted = {accepted}");
            }
        }
    }

    fn finish(self, name: &str, declared: usize) {
        eprintln!(
            "wycheproof {name}: {} cases ({} valid, {} invalid, {} acceptable of which {} accepted)",
            self.total, self.valid, self.invalid, self.acceptable, self.acceptable_accepted
        );
        assert!(self.total > 0, "{name}: no test cases ran");
        assert_eq!(self.total, declared, "{name}: not every case ran");
        assert!(
            self.failures.is_empty(),
            "{name}: {} failures:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// The path the [`Verifier`] takes for a signature: `jsonwebtoken` with the
/// decoding key built the way `keys.rs` builds it from the stored public key.
fn jwt_verify(
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::DecodingKey,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    jsonwebtoken::crypto::verify(&crypto::b64(sig), msg, key, alg).unwrap_or(false)
}

#[test]
fn wycheproof_ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut direct = Tally::default();
    let mut via_jwt = Tally::default();
    for group in &set.test_groups {
        let pk_bytes: &[u8] = &group.key.pk;
        let pk = UnparsedPublicKey::new(&signature::ED25519, pk_bytes);
        let dk = jsonwebtoken::DecodingKey::from_ed_der(pk_bytes);
        for tc in &group.tests {
            let ok = pk.verify(&tc.msg, &tc.sig).is_ok();
            direct.record(tc.tc_id, &tc.comment, tc.result, ok);
            let ok = jwt_verify(jsonwebtoken::Algorithm::EdDSA, &dk, &tc.msg, &tc.sig);
            via_jwt.record(tc.tc_id, &tc.comment, tc.result, ok);
        }
    }
    direct.finish("ed25519 (aws-lc-rs ED25519)", set.number_of_tests);
    via_jwt.finish("ed25519 (jsonwebtoken EdDSA)", set.number_of_tests);
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let mut direct = Tally::default();
    let mut via_jwt = Tally::default();
    for group in &set.test_groups {
        assert_eq!(group.key.curve, wycheproof::EllipticCurve::Secp256r1);
        assert_eq!(group.hash, wycheproof::HashFunction::Sha2_256);
        let point: &[u8] = &group.key.key;
        let pk = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point);
        // keys.rs hands jsonwebtoken the uncompressed point.
        let dk = jsonwebtoken::DecodingKey::from_ec_der(point);
        for tc in &group.tests {
            let ok = pk.verify(&tc.msg, &tc.sig).is_ok();
            direct.record(tc.tc_id, &tc.comment, tc.result, ok);
            let ok = jwt_verify(jsonwebtoken::Algorithm::ES256, &dk, &tc.msg, &tc.sig);
            via_jwt.record(tc.tc_id, &tc.comment, tc.result, ok);
        }
    }
    direct.finish(
        "ecdsa_secp256r1_sha256_p1363 (aws-lc-rs FIXED)",
        set.number_of_tests,
    );
    via_jwt.finish(
        "ecdsa_secp256r1_sha256_p1363 (jsonwebtoken ES256)",
        set.number_of_tests,
    );
}

#[test]
fn wycheproof_hmac_sha256() {
    use wycheproof::mac::{TestName, TestSet};
    let set = TestSet::load(TestName::HmacSha256).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        assert_eq!(group.tag_size % 8, 0);
        let tag_len = group.tag_size / 8;
        assert!(tag_len > 0 && tag_len <= 32, "tag size {}", group.tag_size);
        for tc in &group.tests {
            assert_eq!(tc.key.len() * 8, group.key_size, "tc {}", tc.tc_id);
            let full = crypto::hmac_sha256(&tc.key, &[&tc.msg]);
            let ok = tc.tag.len() == tag_len && crypto::ct_eq(&full[..tag_len], &tc.tag);
            tally.record(tc.tc_id, &tc.comment, tc.result, ok);
        }
    }
    tally.finish("hmac_sha256 (crypto::hmac_sha256)", set.number_of_tests);
}

// ---------------------------------------------------------------------------
// Property tests of the access-token codec.

static RINGS: LazyLock<[KeyRing; 3]> = LazyLock::new(|| {
    [
        generated_ring(SigningAlg::EdDSA),
        generated_ring(SigningAlg::ES256),
        generated_ring(SigningAlg::HS256),
    ]
});

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn ext_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        "\\PC{0,24}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        prop::collection::vec(any::<i32>(), 0..4).prop_map(serde_json::Value::from),
    ]
}

prop_compose! {
    fn arb_claims()(
        iss in "\\PC{0,40}",
        aud in "\\PC{0,40}",
        sub in any::<[u8; 16]>(),
        sid in any::<[u8; 16]>(),
        iat in 0i64..4_000_000_000,
        ttl in 1i64..86_400,
        jti in "[A-Za-z0-9_-]{0,32}|\\PC{0,16}",
        auth_back in 0i64..1_000_000,
        aal2 in any::<bool>(),
        cnf in prop::option::of("[A-Za-z0-9_-]{1,43}"),
        ext in prop::collection::btree_map("x_[a-z0-9_]{0,12}", ext_value(), 0..5),
    ) -> AccessClaims {
        AccessClaims {
            iss,
            aud,
            sub: UserId::from_bytes(sub),
            sid: SessionId::from_bytes(sid),
            iat,
            exp: iat + ttl,
            jti,
            auth_time: iat - auth_back,
            aal: if aal2 { Aal::Aal2 } else { Aal::Aal1 },
            cnf: cnf.map(|fp| serde_json::json!({ "fp": fp })),
            ext: ext.into_iter().collect(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signed_claims_verify_back_equal(alg in 0usize..3, c in arb_claims(), age in 0i64..86_400) {
        let ring = &RINGS[alg];
        let v = Verifier::new(c.iss.clone(), c.aud.clone(), 60);
        let t = v.sign(ring, &c).unwrap();
        let now = c.iat + age.min(c.exp - c.iat - 1);
        let back = v.verify(ring, &t, now).unwrap();
        prop_assert_eq!(back.claims(), &c);
        prop_assert_eq!(back.kid(), ring.active().kid());
        // Another issuer's or audience's verifier refuses the same token.
        let other_iss = Verifier::new(format!("{}#", c.iss), c.aud.clone(), 60);
        prop_assert_eq!(other_iss.verify(ring, &t, now), Err(Rejection::Issuer));
        let other_aud = Verifier::new(c.iss.clone(), format!("{}#", c.aud), 60);
        prop_assert_eq!(other_aud.verify(ring, &t, now), Err(Rejection::Audience));
    }

    #[test]
    fn any_single_byte_change_is_rejected(
        alg in 0usize..3,
        c in arb_claims(),
        at in any::<prop::sample::Index>(),
        pick in 0usize..64,
    ) {
        let ring = &RINGS[alg];
        let v = Verifier::new(c.iss.clone(), c.aud.clone(), 60);
        let good = v.sign(ring, &c).unwrap();
        prop_assert!(v.verify(ring, &good, c.iat).is_ok());
        let mut bytes = good.clone().into_bytes();
        let pos = at.index(bytes.len());
        let mut replacement = B64URL[pick];
        if replacement == bytes[pos] {
            replacement = B64URL[(pick + 1) % B64URL.len()];
        }
        prop_assert_ne!(replacement, bytes[pos]);
        bytes[pos] = replacement;
        let forged = String::from_utf8(bytes).unwrap();
        let r = v.verify(ring, &forged, c.iat);
        prop_assert!(r.is_err(), "accepted after changing byte {} of {}: {}", pos, good, forged);
    }

    #[test]
    fn verify_never_panics_on_junk(s in "[A-Za-z0-9_.-]{0,300}|\\PC{0,300}") {
        for ring in RINGS.iter() {
            prop_assert!(verifier().verify(ring, &s, 1000).is_err());
        }
    }
}

/// Every position of one token, every base64url replacement: exhaustive for
/// one token per algorithm, so the property test above is not the only net.
#[test]
fn exhaustive_single_byte_changes_one_token_per_alg() {
    let v = verifier();
    let mut tried = 0usize;
    for ring in RINGS.iter() {
        let good = v.sign(ring, &sesame_claims(1000)).unwrap();
        let bytes = good.as_bytes();
        for pos in 0..bytes.len() {
            for &r in B64URL {
                if r == bytes[pos] {
                    continue;
                }
                let mut b = bytes.to_vec();
                b[pos] = r;
                let forged = String::from_utf8(b).unwrap();
                assert!(
                    v.verify(ring, &forged, 1000).is_err(),
                    "accepted after changing byte {pos} to {}: {forged}",
                    r as char
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 3 * 300 * 63);
}
